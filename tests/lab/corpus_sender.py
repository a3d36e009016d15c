#!/usr/bin/python3
"""TEST HELPER (not product code): replay a path corpus against a lab frontend, from inside a lab host.

Used only by tests/lab/test_lab_frontend.py, which installs it into a lab host with a corpus file
(JSON: a list of [id, method, path]) and runs it there. Each request goes to the given host and
ports exactly as written (http.client sends the path untouched), carries `X-Corpus-Id: <port>-<id>`
so the test backends' logs tie what they received to the variant, and, for POSTs, a
balancer-manager change (with the nonce and Referer an attacker who had leaked them would send).
Bounded: one request per variant and port, a 10 s timeout each.

    corpus_sender.py --host 10.217.0.41 --ports 80,8088 --corpus FILE --form 'b=...&nonce=...'

Prints one JSON line: per port the count of each status code, the ids whose answer was the
balancer-manager page, and the ids that failed at the socket level.
"""

import argparse
import http.client
import json
from collections import Counter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--ports", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--form", default="")
    a = ap.parse_args()
    corpus = json.load(open(a.corpus))
    out = {}
    for port in [int(p) for p in a.ports.split(",")]:
        codes, manager_pages, failed = Counter(), [], []
        conn = http.client.HTTPConnection(a.host, port, timeout=10)
        referer = "http://%s:%d/balancer-manager" % (a.host, port)
        for vid, method, path in corpus:
            headers = {"X-Corpus-Id": "%d-%s" % (port, vid), "Referer": referer}
            body = None
            if method == "POST":
                body = a.form.encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            elif "balancer-manager" in path.lower() and a.form:
                path = path + "?" + a.form  # balancer-manager also takes changes as GET parameters
            for attempt in (1, 2):  # Apache closes the connection after some errors: reconnect once
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    text = resp.read()
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = http.client.HTTPConnection(a.host, port, timeout=10)
                    resp = None
            if resp is None:
                failed.append(vid)
                continue
            codes[resp.status] += 1
            if b"balancer://" in text or b"Load Balancer Manager" in text:
                manager_pages.append(vid)
        conn.close()
        out[str(port)] = {"codes": dict(codes), "manager_pages": manager_pages, "failed": failed}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

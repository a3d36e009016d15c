#!/usr/bin/python3
"""TEST STAND-IN for an OX middleware node's HTTP listener on :8009 -- NOT PRODUCT CODE.

Used only by tests/lab/test_lab_frontend.py, which starts one per lab middleware host (detached)
and stops exactly that process by its pid. It answers every request with 200 and a JSON body
naming the node (its route), the raw path it received and the path a servlet container would
dispatch for it (servletpath.py, the lab stand-in's normalizer, installed next to this file),
sets `JSESSIONID=<digits>.<route>` when the request carries no session id (as OX does), and
appends one JSON line per request to a log: raw path, dispatched path, every path a container
might dispatch that is SOAP or balancer-manager, and the request's X-Corpus-Id header. So a test
can prove what a request would have reached, or that it reached no backend at all.

    fake_backend.py --route OX1 --log /tmp/fake-backend.log [--port 8009] [--hang]

--hang: accept connections and never answer (a hung node).
"""

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servletpath  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--route", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=8009)
    ap.add_argument("--hang", action="store_true")
    a = ap.parse_args()
    lock = threading.Lock()

    if a.hang:
        sock = socket.create_server(("0.0.0.0", a.port), backlog=128, reuse_port=False)
        held = []
        while True:
            conn, _ = sock.accept()
            held.append(conn)  # never read, never answer, never close

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self):
            dispatch = servletpath.dispatch(self.path)
            record = {"t": round(time.time(), 3), "node": a.route, "method": self.command, "raw": self.path,
                      "dispatch": dispatch, "admin": servletpath.admin_candidates(self.path),
                      "corpus": self.headers.get("X-Corpus-Id")}
            with lock, open(a.log, "a") as f:
                f.write(json.dumps(record) + "\n")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({"node": a.route, "route": a.route, "path": self.path, "dispatch": dispatch,
                               "soap": servletpath.is_admin(dispatch)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            has_session = "JSESSIONID=" in (self.headers.get("Cookie") or "") or ";jsessionid=" in self.path
            if not has_session:
                self.send_header("Set-Cookie", f"JSESSIONID={random.randrange(10**18)}.{a.route}; Path=/")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("0.0.0.0", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

"""Session load through the frontend, run ON a lab host (python3 - URL SESSIONS STOPFILE MAXSECONDS).

Sticky sessions: SESSIONS cookies per route (JSESSIONID=<n>.<route>, as the stand-in middleware
sets them), plus one request without a cookie (a new session) per round, sent one after another
until STOPFILE exists or MAXSECONDS passed. Prints one JSON line per request:
{"t": <epoch seconds>, "session": <the cookie, or "">, "cookie": <route the cookie names, or "">, "route": <route that answered,
or "error">, "code": <HTTP status, 0 when nothing answered>}.
Standard library only: the lab hosts have Debian's python3 and nothing else.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def one(url: str, cookie: str) -> tuple[str, int]:
    request = urllib.request.Request(url, headers={"Cookie": f"JSESSIONID={cookie}"} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read()).get("route", "error"), response.status
    except urllib.error.HTTPError as e:
        return "error", e.code
    except (OSError, ValueError):
        return "error", 0


def main(url: str, per_route: int, stop: str, max_seconds: float, routes: list[str]) -> None:
    sessions = [(f"{9000 + i}{k}.{route}", route) for k, route in enumerate(routes) for i in range(per_route)]
    deadline = time.monotonic() + max_seconds
    out = []
    while not os.path.exists(stop) and time.monotonic() < deadline:
        for cookie, route in [*sessions, ("", "")]:
            answered, code = one(url, cookie)
            out.append({"t": time.time(), "session": cookie, "cookie": route, "route": answered, "code": code})
    sys.stdout.write("".join(json.dumps(r) + "\n" for r in out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5].split(","))

"""Frontend capacity: how many concurrent keep-alive connections an Apache holds, and its throughput.

Both run against the lab estate's frontend (the rendered site and mpm_event block, in front of
the stand-in middleware), bounded to at most 10 s a run:

- held connections: N clients connect (at most 200 connecting at once, so the listen backlog is
  not what is measured), each sends a request and reads the answer, keeps the connection, and
  once all N are open each sends a second request on it. N is held when every connection got both
  answers within the run (`TRIAL_SECONDS`) and no answer took longer than `QUEUE_SECONDS` (no
  queueing). Until all N are open each connection asks again every 2 s (Apache's KeepAliveTimeout
  is 5 s). Each N runs twice and the second run counts: the first lets Apache spawn the children
  the load asks for. The requests ask for a path the public vhost answers itself (404): the connection
  slots are Apache's, not the backends', and the stand-in middleware (Python) would otherwise bound
  the rate. N doubles until a run fails, then two bisection steps.
- long polls in flight: N requests at once to /realtime (the balancer, then the stand-in
  middleware, which holds each `HOLD_SECONDS`, as OX holds a long poll): held when every one is
  answered within `HOLD_SECONDS` + `QUEUE_SECONDS`. Each needs an Apache worker thread throughout,
  so MaxRequestWorkers bounds this one.
- throughput: `ab` from the frontend host, for `THROUGHPUT_SECONDS`, through Apache's balancer
  (a session cookie for OX1, so one backend serves both) and straight to that stand-in's :8009,
  same concurrency, a new connection per request (the stand-in does not keep ab's HTTP/1.0
  keep-alive connections open: `ab -k` straight to it stalls).
"""

from __future__ import annotations

import asyncio
import re
import resource
import time

TRIAL_SECONDS = 8.0
QUEUE_SECONDS = 1.0
CONNECTING = 200
THROUGHPUT_SECONDS = 3
THROUGHPUT_CONCURRENCY = 16
PATH = "/ox-bench-capacity"
LONG_POLL = "/realtime/ox-bench"  # proxied to the balancer; the stand-in holds it X-Lab-Hold seconds
HOLD_SECONDS = 2


async def _request(reader, writer, host: str, path: str = PATH, headers: str = "") -> float:
    """Send one GET on the connection and read its whole answer; seconds it took."""
    start = time.monotonic()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    if re.search(rb"(?i)connection:\s*close", head):
        raise ConnectionError("the server closed the keep-alive connection")
    if path != PATH and not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return time.monotonic() - start


async def long_polls(host: str, port: int, n: int) -> dict:
    """N long polls at once through Apache to the stand-in middleware, each held HOLD_SECONDS by
    the backend: every one must come back within HOLD_SECONDS + QUEUE_SECONDS."""
    gate = asyncio.Semaphore(CONNECTING)
    answered, slowest = 0, 0.0

    async def client():
        nonlocal answered, slowest
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
        try:
            took = await _request(reader, writer, host, LONG_POLL, f"X-Lab-Hold: {HOLD_SECONDS}\r\n")
            slowest, answered = max(slowest, took), answered + 1
        finally:
            writer.close()

    _, errors = await _trial(client, n)
    return {"n": n, "ok": answered == n and slowest <= HOLD_SECONDS + QUEUE_SECONDS, "held": answered,
            "slowest": slowest, "errors": errors}


async def keepalive_conns(host: str, port: int, n: int) -> dict:
    gate = asyncio.Semaphore(CONNECTING)
    all_open = asyncio.Event()
    opened = 0
    slowest = 0.0

    async def client():
        nonlocal opened, slowest
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
        try:
            slowest = max(slowest, await _request(reader, writer, host))
            opened += 1
            if opened == n:
                all_open.set()
            # Until every connection is open, a request every 2 s keeps this one within Apache's
            # KeepAliveTimeout (5 s), so a slow opening is not mistaken for a dropped connection.
            while not all_open.is_set():
                try:
                    await asyncio.wait_for(all_open.wait(), 2)
                except asyncio.TimeoutError:
                    slowest = max(slowest, await _request(reader, writer, host))
            slowest = max(slowest, await _request(reader, writer, host))
        finally:
            writer.close()

    done, errors = await _trial(client, n)
    held = sum(1 for d in done if d is None)
    return {"n": n, "ok": held == n and slowest <= QUEUE_SECONDS, "held": held, "opened": opened,
            "slowest": slowest, "errors": errors}


async def _trial(client, n: int) -> tuple[list, list[str]]:
    """Run `n` clients at once for at most TRIAL_SECONDS: what each returned (None, or the error
    it raised; nothing at all after a timeout), and the error names (`timeout` then)."""
    done = []
    try:
        done = await asyncio.wait_for(asyncio.gather(*(client() for _ in range(n)), return_exceptions=True),
                                      TRIAL_SECONDS)
    except asyncio.TimeoutError:
        pass
    errors = sorted({type(d).__name__ for d in done if d is not None})
    return done, errors or (["timeout"] if not done else [])


def trial(host: str, port: int, n: int, kind=keepalive_conns) -> dict:
    """N connections (`kind`: keepalive_conns or long_polls), twice: the first run lets Apache spawn
    the children the load asks for (as under a real rise in load), the second one counts."""
    asyncio.run(kind(host, port, n))
    time.sleep(0.5)
    started = time.monotonic()
    result = asyncio.run(kind(host, port, n))
    result["seconds"] = time.monotonic() - started
    time.sleep(0.5)
    return result


def _raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))


def most_held(host: str, port: int, start: int, ceiling: int, log=print, kind=keepalive_conns) -> tuple[int, int | None]:
    """(the most connections held, the fewest that were not, or None up to `ceiling`)."""
    _raise_fd_limit(ceiling)
    what = "long polls" if kind is long_polls else "connections"

    def run(n):
        r = trial(host, port, n, kind)
        log(f"  frontend {host}: {n} {what} -> {'held' if r['ok'] else 'NOT held'} ({r['held']} held, "
            f"slowest answer {r['slowest']:.2f} s, run {r['seconds']:.1f} s{', ' if r['errors'] else ''}"
            f"{' '.join(r['errors'])})")
        return r["ok"]

    good, bad, n = 0, None, start
    while n <= ceiling:
        if not run(n):
            bad = n
            break
        good, n = n, n * 2
    for _ in range(2 if bad else 0):
        mid = (good + bad) // 2
        good, bad = (mid, bad) if run(mid) else (good, mid)
    return good, bad


def requests_per_second(ab_output: str) -> float:
    match = re.search(r"Requests per second:\s+([\d.]+)", ab_output)
    if not match:
        raise ValueError(f"ab printed no rate:\n{ab_output[-2000:]}")
    return float(match.group(1))


def ab_command(url: str) -> str:
    return (f"ab -q -c {THROUGHPUT_CONCURRENCY} -t {THROUGHPUT_SECONDS} -n 10000000 "
            f"-H 'Cookie: JSESSIONID=1.OX1' {url} 2>&1")

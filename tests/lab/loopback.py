"""Loopback ports for servers a test starts itself.

A port found by binding port 0 comes from the kernel's ephemeral range, the same range
every outgoing connection takes its source port from. Between the probe and the server's
own bind, a client connection (pymysql to the test's MariaDB, the middleware's own
configdb probe) may take that very port, and the server then fails with "Address already
in use". So these ports come from below the ephemeral range, where only a deliberate bind
lands, and no port is handed out twice in one test run.
"""

from __future__ import annotations

import random
import socket

_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default low end


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and outside the ephemeral range."""
    high = _ephemeral_low() - 1
    low = min(20000, high - 1000)
    for port in random.sample(range(low, high + 1), 200):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free loopback port in %d-%d" % (low, high))

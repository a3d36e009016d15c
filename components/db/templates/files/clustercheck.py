#!/usr/bin/python3
"""ox-estate clustercheck: tells HAProxy which Galera nodes may take OX's reads and its writes.

Runs on every Galera node, on port 9200, as the unprivileged user `clustercheck`, which reaches
MariaDB over the unix socket (unix_socket auth: no password anywhere).

  GET /        200 when this node is Synced, in a Primary component and ready; 503 otherwise.
               HAProxy's mysql-read sends reads to every node answering 200.
  GET /master  200 on exactly one node: the writer. 503 everywhere else.
               HAProxy's mysql-write sends all writes there.
  GET /status  this node's view as JSON (what peers ask for).

The writer is recorded in the cluster itself, in ox_clustercheck.writer (one row, by address).
A node answers /master with 200 while the row names it and it is healthy. When the recorded
writer is down or not Synced (a donor, say), a healthy node claims the row with a conditional
UPDATE; Galera certifies one claim and rejects the others, so there is one writer at any moment
and every HAProxy, asking the same nodes, follows the same one. The first writer (empty table) is
the healthy member with the lowest wsrep_local_index. Unlike a bare "index 0 is the writer" rule,
the role does not move back when an old writer rejoins (membership order can give it index 0
again): writes move only when the writer fails.
"""

import json
import sys
import urllib.request
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pymysql

SOCKET = "/run/mysqld/mysqld.sock"
PORT = 9200
# Below HAProxy's check timeout (haproxy.cfg: 1.5 s): a /master that asks a dead peer still answers in time.
PEER_TIMEOUT = 0.5
SELF = sys.argv[1] if len(sys.argv) > 1 else ""
PEERS: list[str] = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else []


def connect():
    return pymysql.connect(unix_socket=SOCKET, user="clustercheck", connect_timeout=2, read_timeout=2,
                           write_timeout=2, autocommit=True)


def local_status() -> dict:
    try:
        conn = connect()
    except pymysql.MySQLError as e:
        return {"up": False, "error": str(e)}
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment',"
                        " 'wsrep_cluster_status', 'wsrep_ready', 'wsrep_local_index', 'wsrep_cluster_conf_id')")
            values = dict(cur.fetchall())
    finally:
        conn.close()
    return {
        "up": True,
        "state": values.get("wsrep_local_state_comment", ""),
        "cluster": values.get("wsrep_cluster_status", ""),
        "ready": values.get("wsrep_ready", ""),
        "index": int(values.get("wsrep_local_index") or -1),
        "confId": values.get("wsrep_cluster_conf_id", ""),
    }


def healthy(status: dict) -> bool:
    return status.get("up") and status["state"] == "Synced" and status["cluster"] == "Primary" \
        and status["ready"] == "ON"


def peer_status(address: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{address}:{PORT}/status", timeout=PEER_TIMEOUT) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None  # unreachable or garbled: not a candidate for the writer role


def lowest_healthy(mine: dict, peers: list[dict]) -> bool:
    """No healthy peer in my cluster configuration has a lower index than mine."""
    return not any(p.get("confId") == mine["confId"] and healthy(p) and 0 <= p["index"] < mine["index"]
                   for p in peers)


def decide(mine: dict, recorded: str | None, peer: Callable[[str], dict | None],
           claim: Callable[[str | None], bool]) -> bool:
    """Am I the writer? `recorded`: the address in the writer row (None: no row yet);
    `peer(address)`: that node's /status or None; `claim(expected)`: take the row, True if won."""
    if not healthy(mine):
        return False
    if recorded == SELF:
        return True
    if recorded is None:
        return lowest_healthy(mine, [p for p in map(peer, PEERS) if p]) and claim(None)
    holder = peer(recorded)
    if holder is not None and healthy(holder):
        return False
    return claim(recorded)


def is_writer(mine: dict) -> bool:
    try:
        conn = connect()
    except pymysql.MySQLError:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT node FROM ox_clustercheck.writer WHERE id = 1")
            row = cur.fetchone()

            def claim(expected: str | None) -> bool:
                # Galera certifies one of several concurrent claims; the rest fail or match no row.
                if expected is None:
                    cur.execute("INSERT IGNORE INTO ox_clustercheck.writer (id, node) VALUES (1, %s)", (SELF,))
                else:
                    cur.execute("UPDATE ox_clustercheck.writer SET node = %s WHERE id = 1 AND node = %s",
                                (SELF, expected))
                cur.execute("SELECT node FROM ox_clustercheck.writer WHERE id = 1")
                return (cur.fetchone() or [None])[0] == SELF

            return decide(mine, row[0] if row else None, peer_status, claim)
    except pymysql.MySQLError:
        return False  # a failed claim (certification conflict) or a lost connection: not the writer
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        mine = local_status()
        if self.path == "/status":
            self.answer(200, mine)
        elif self.path == "/master":
            writer = is_writer(mine)
            self.answer(200 if writer else 503, {"writer": writer, **mine})
        elif self.path == "/":
            self.answer(200 if healthy(mine) else 503, mine)
        else:
            self.answer(404, {"error": "unknown path"})

    def answer(self, code: int, body: dict):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # HAProxy checks every second: don't log each one
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()

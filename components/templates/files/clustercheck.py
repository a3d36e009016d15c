#!/usr/bin/python3
"""ox-estate clustercheck: tells HAProxy which Galera nodes may take OX's reads and its writes.

Runs on every Galera node, on port 9200, as the unprivileged user `clustercheck`, which reaches
MariaDB over the unix socket (unix_socket auth: no password anywhere).

  GET /        200 when this node is Synced, in a Primary component and ready; 503 otherwise.
               HAProxy's mysql-read sends reads to every node answering 200.
  GET /master  200 on exactly one node: the writer. 503 everywhere else.
               HAProxy's mysql-write sends all writes there.
  GET /status  this node's view as JSON (what peers ask for).

The writer is the Synced member with the lowest wsrep_local_index. Normally that is index 0;
when index 0 is not Synced (a donor during a state transfer, say), the next Synced index takes
the role: the documented fallback. Every node decides from the same facts (the members' own
/status answers, within one cluster configuration id), so every HAProxy sees the same single
writer. Index order follows membership, so a restarted old writer may take the role back when
it rejoins with index 0: writes move to it once it is Synced, and still to one node at a time.
"""

import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pymysql

SOCKET = "/run/mysqld/mysqld.sock"
PORT = 9200
PEER_TIMEOUT = 1.0
PEERS: list[str] = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else []


def local_status() -> dict:
    try:
        conn = pymysql.connect(unix_socket=SOCKET, user="clustercheck", connect_timeout=2, read_timeout=2)
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


def is_writer(mine: dict) -> bool:
    """Am I the Synced member with the lowest index in my cluster configuration?"""
    if not healthy(mine):
        return False
    for peer in filter(None, map(peer_status, PEERS)):
        same_view = peer.get("confId") == mine["confId"]
        if same_view and healthy(peer) and 0 <= peer["index"] < mine["index"]:
            return False
    return True


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

#!/usr/bin/python3
"""LAB STAND-IN for the Open-Xchange middleware service -- NOT PRODUCT CODE.

Installed on a lab host as /opt/open-xchange/sbin/open-xchange (the real
package's foreground start script has that name) and started by the
stand-in /etc/init.d/open-xchange.

* reads etc/server.properties (com.openexchange.server.backendRoute,
  com.openexchange.connector.networkListenerHost/-Port), etc/system.properties
  (SERVER_NAME), etc/configdb.properties (writeUrl + credentials) and
  etc/rmi.properties (com.openexchange.rmi.host/-port);
* refuses to start (logs, exit 1) unless the configdb is reachable with the
  configured credentials;
* HTTP on networkListenerHost:8009 ("*" = all addresses; oxinstaller's
  default is localhost, so a cluster node needs --network-listener-host=*):
  dispatches on the path a servlet container would (``oxstandin.servletpath``:
  ;params dropped per segment, decoded once, backslashes, empty and dot segments
  resolved); any request whose dispatched path is under /appsuite, /ajax,
  /servlet, /webservices, /usm-json ... gets 200 + JSON naming the node, the raw
  path received, the dispatched path and whether that is SOAP, plus a
  ``JSESSIONID=<digits>.<route>`` cookie when the request carries no session id.
  Each request is logged with its raw and dispatched path;
* the "RMI admin daemon" on com.openexchange.rmi.host:1099 (localhost by
  default): a tiny line protocol the stand-in CLTs use as their lookup.

Usage: open-xchange [--daemon] [--pidfile /run/open-xchange.pid]
                    [--logfile /var/log/open-xchange/open-xchange.log] [--ready-timeout 30]
"""

import argparse
import json
import os
import random
import socket
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_here = os.path.dirname(os.path.realpath(__file__))
sys.path[0:0] = [os.path.join(_here, "..", "lib"), _here]

from oxstandin import config, configdb, daemon, servletpath  # noqa: E402

PREFIXES = ("/appsuite", "/ajax", "/servlet", "/webservices", "/usm-json-servlet", "/usm-json",
            "/realtime", "/rt2", "/infostore", "/publications", "/Microsoft-Server-ActiveSync", "/drive",
            "/socket.io", "/api", "/preliminary", "/oauth", "/dav", "/carddav", "/caldav", "/axis2")

LOG = {"path": None}


def log(msg):
    line = "%s STANDIN open-xchange: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg)
    if LOG["path"]:
        try:
            os.makedirs(os.path.dirname(LOG["path"]), exist_ok=True)
            with open(LOG["path"], "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass
    sys.stderr.write(line)
    sys.stderr.flush()


def make_handler(settings):
    route = settings["route"]
    server_name = settings["server_name"]
    hostname = socket.gethostname()

    class Handler(BaseHTTPRequestHandler):
        server_version = "OX-StandIn"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep the log quiet
            pass

        def _answer(self, with_body=True):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            raw_path = self.path.split("?", 1)[0]
            # What a servlet container dispatches, not what the client or Apache wrote.
            plain = servletpath.dispatch(self.path)
            soap = servletpath.is_admin(plain)
            log("request %s raw=%s dispatch=%s soap=%s" % (
                self.command, json.dumps(self.path), json.dumps(plain), "yes" if soap else "no"))
            if plain is None:  # a ".." above the root: the container answers 400
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not any(plain == pre or plain.startswith(pre + "/") for pre in PREFIXES):
                body = b'{"error":"not found"}\n'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)
                return
            # A long poll (OX holds /realtime requests open until there is news): the frontend
            # benchmark (benchmarks/frontend.py) asks for one with X-Lab-Hold: <seconds>, at most 10.
            try:
                time.sleep(min(max(float(self.headers.get("X-Lab-Hold") or 0), 0.0), 10.0))
            except ValueError:
                pass
            cookies = self.headers.get("Cookie") or ""
            session = None
            for part in cookies.split(";"):
                key, _, val = part.strip().partition("=")
                if key == "JSESSIONID":
                    session = val
            if session is None and ";jsessionid=" in raw_path:
                session = raw_path.split(";jsessionid=", 1)[1].split(";", 1)[0].split("/", 1)[0]
            new_cookie = None
            if session is None:
                new_cookie = "%d.%s" % (random.randrange(10 ** 18, 10 ** 19), route)
            body = json.dumps({
                "standin": True, "node": "%s/%s" % (server_name, route), "server_name": server_name,
                "route": route, "hostname": hostname, "method": self.command, "path": plain,
                "raw_path": self.path, "soap": soap, "jsessionid": session or new_cookie,
            }).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if new_cookie:
                self.send_header("Set-Cookie", "JSESSIONID=%s; Path=/; HttpOnly" % new_cookie)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self):
            self._answer()

        def do_HEAD(self):
            self._answer(with_body=False)

        do_POST = do_PUT = do_DELETE = do_OPTIONS = do_GET

    return Handler


class RmiHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        try:
            self.rfile.readline(256)
            self.wfile.write(("OK %s\n" % self.server.route).encode())
        except OSError:
            pass


class RmiServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class HttpServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    # socketserver's listen backlog is 5: a burst of proxied requests (Apache opens a backend
    # connection per worker) overflowed it and waited for SYN retries; OX's listener takes more.
    request_queue_size = 1024


def preflight():
    try:
        settings = config.server_settings()
        db = config.configdb_settings("write")
    except (OSError, ValueError) as exc:
        log("FATAL: configuration incomplete: %s" % exc)
        return None
    if not settings["route"]:
        log("WARNING: com.openexchange.server.backendRoute not set in server.properties")
    try:
        conn = configdb.connect(db["host"], db["port"], db["user"], db["password"], db["database"])
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM server")
        conn.close()
    except Exception as exc:  # pymysql errors and socket errors alike
        log("FATAL: cannot connect to configdb %s@%s:%s/%s: %s -- refusing to start"
            % (db["user"], db["host"], db["port"], db["database"], exc))
        return None
    return settings


def main(argv=None):
    ap = argparse.ArgumentParser(prog="open-xchange", description="LAB STAND-IN OX middleware")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--pidfile", default="/run/open-xchange.pid")
    ap.add_argument("--logfile", default="/var/log/open-xchange/open-xchange.log")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    opts = ap.parse_args(argv)
    LOG["path"] = opts.logfile

    settings = preflight()
    if settings is None:
        return 1
    try:
        httpd = HttpServer((settings["http_host"], settings["http_port"]), make_handler(settings))
        rmid = RmiServer((settings["rmi_host"], settings["rmi_port"]), RmiHandler)
        rmid.route = settings["route"]
    except OSError as exc:
        log("FATAL: cannot bind listeners: %s" % exc)
        return 1

    return daemon.serve([httpd, rmid], opts, log, LOG, "middleware",
                        "started: server %s route %s http %s:%d rmi %s:%d" % (
                            settings["server_name"], settings["route"], settings["http_host"],
                            settings["http_port"], settings["rmi_host"], settings["rmi_port"]))


if __name__ == "__main__":
    sys.exit(main())

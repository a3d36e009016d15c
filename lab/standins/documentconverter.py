#!/usr/bin/python3
"""LAB STAND-IN for the Open-Xchange document converter service -- NOT PRODUCT CODE.

Installed on a lab converter host as
/opt/open-xchange/sbin/open-xchange-documentconverter-server and started by the stand-in
/etc/init.d/open-xchange-documentconverter-server (lab hosts have no systemd).

* reads etc/server.properties (com.openexchange.server.backendRoute,
  com.openexchange.connector.networkListenerHost: "*" = every address, the default is
  localhost as in OX) and documentconverter/etc/documentconverter.properties
  (com.openexchange.documentconverter.jobProcessorCount); no configdb, no Hazelcast;
* HTTP on <listener host>:8008: GET/HEAD /documentconverterws (and below it) answers 200 with
  the page the oxpedia guide shows ("WebService is running...", "Error Code: 0", "API: v5"),
  plus a line `Route: <backendRoute>` and a header `X-OX-Route: <backendRoute>`, so a test sees
  which node answered; a request without a JSESSIONID cookie (or ;jsessionid= path parameter)
  gets `JSESSIONID=<digits>.<backendRoute>`, so Apache's stickiness can be tested. Other paths: 404.

Usage: open-xchange-documentconverter-server [--daemon] [--pidfile ...] [--logfile ...]
                                             [--ready-timeout 30]
"""

import argparse
import os
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_here = os.path.dirname(os.path.realpath(__file__))
sys.path[0:0] = [os.path.join(_here, "..", "lib"), _here]

from oxstandin import daemon, ox_root  # noqa: E402
from oxstandin.props import read_properties  # noqa: E402

PORT = int(os.environ.get("OX_STANDIN_DC_PORT") or 8008)  # the variable: for the stand-in's own tests
PATH = "/documentconverterws"
PAGE = ('<html>\n<head><meta charset="UTF-8"><title>Open-Xchange DC</title></head>\n'
        '<body><h1 align="center">OX Software GmbH DC</h1>\n<p>WebService is running...</p>\n'
        '<p>Error Code: 0</p>\n<p>API: v5</p>\n<p>Route: %s</p>\n<p>Job processors: %s</p></body>\n</html>\n')
LOG = {"path": None}


def log(msg):
    line = "%s STANDIN documentconverter: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg)
    if LOG["path"]:
        try:
            os.makedirs(os.path.dirname(LOG["path"]), exist_ok=True)
            with open(LOG["path"], "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass
    sys.stderr.write(line)
    sys.stderr.flush()


def settings():
    server = read_properties(os.path.join(ox_root(), "etc", "server.properties"))
    dc = read_properties(os.path.join(ox_root(), "documentconverter", "etc", "documentconverter.properties"))
    host = server.get("com.openexchange.connector.networkListenerHost", "localhost")
    host = {"*": "0.0.0.0", "localhost": "127.0.0.1"}.get(host, host)
    return {"route": server.get("com.openexchange.server.backendRoute", ""), "host": host,
            "jobs": dc.get("com.openexchange.documentconverter.jobProcessorCount", "3")}


def session_of(handler):
    for part in (handler.headers.get("Cookie") or "").split(";"):
        key, _, val = part.strip().partition("=")
        if key == "JSESSIONID":
            return val
    raw = handler.path.split("?", 1)[0]
    if ";jsessionid=" in raw:
        return raw.split(";jsessionid=", 1)[1].split(";", 1)[0].split("/", 1)[0]
    return None


def make_handler(conf):
    route = conf["route"]

    class Handler(BaseHTTPRequestHandler):
        server_version = "OX-DC-StandIn"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _answer(self, with_body=True):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?", 1)[0].split(";", 1)[0]
            log("request %s %s from %s" % (self.command, self.path, self.client_address[0]))
            if not (path == PATH or path.startswith(PATH + "/")):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = (PAGE % (route, conf["jobs"])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-OX-Route", route)
            if session_of(self) is None:
                cookie = "%d.%s" % (random.randrange(10 ** 18, 10 ** 19), route)
                self.send_header("Set-Cookie", "JSESSIONID=%s; Path=/; HttpOnly" % cookie)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self):
            self._answer()

        def do_HEAD(self):
            self._answer(with_body=False)

        do_POST = do_GET

    return Handler


class HttpServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv=None):
    ap = argparse.ArgumentParser(prog="open-xchange-documentconverter-server",
                                 description="LAB STAND-IN OX document converter")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--pidfile", default="/run/open-xchange-documentconverter-server.pid")
    ap.add_argument("--logfile", default="/var/log/open-xchange/documentconverter.log")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    opts = ap.parse_args(argv)
    LOG["path"] = opts.logfile

    conf = settings()
    if not conf["route"]:
        log("WARNING: com.openexchange.server.backendRoute not set in server.properties")
    try:
        httpd = HttpServer((conf["host"], PORT), make_handler(conf))
    except OSError as exc:
        log("FATAL: cannot bind %s:%d: %s" % (conf["host"], PORT, exc))
        return 1

    return daemon.serve([httpd], opts, log, LOG, "the converter",
                        "started: route %s http %s:%d jobs %s" % (conf["route"], conf["host"], PORT, conf["jobs"]))


if __name__ == "__main__":
    sys.exit(main())

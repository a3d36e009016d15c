"""Verify a lab estate for real, after `python -m lab up`: what an operator would check by hand.

Every check runs over SSH with the lab's key (paramiko, one kept-open client per host), against
the real services on the lab hosts. Each check is `(name, ok, detail)`; none changes the estate
except test rows it writes into its own `ox_lab_verify` schema.

Credentials come from the runner's state (0600): the generated passwords the program used.
The database checks (Galera, GTID, clustercheck, the read/write split, another stack's userdbs,
the configdb's rows) live in verify_db.py; this module keeps the shell, the other tiers and verify().
"""

from __future__ import annotations

import csv
import ipaddress
import json
import io
import re
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from typing import Callable

import paramiko

from components.web.frontend import ADMIN_PORT
from lab import hosts as lab_hosts

Check = tuple[str, bool, str]


class Shell:
    """One kept-open SSH client per lab host."""

    def __init__(self, addresses: dict[str, str]):
        self.addresses = addresses
        self.clients: dict[str, paramiko.SSHClient] = {}
        self.key = paramiko.Ed25519Key.from_private_key_file(str(lab_hosts.client_key_path()))

    def run(self, host: str, command: str, stdin: str = "", timeout: float = 60) -> tuple[int, str, str]:
        client = self.clients.get(host)
        if client is None:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect(self.addresses[host], username="root", pkey=self.key, timeout=10,
                           allow_agent=False, look_for_keys=False)
            self.clients[host] = client
        chan = client.get_transport().open_session(timeout=10)
        chan.settimeout(timeout)
        chan.exec_command(command)
        if stdin:
            chan.sendall(stdin.encode())
        chan.shutdown_write()
        out, err = chan.makefile("rb").read().decode(), chan.makefile_stderr("rb").read().decode()
        return chan.recv_exit_status(), out.strip(), err.strip()

    def sql(self, host: str, statement: str, via: str = "", password: str = "") -> str:
        """Run SQL on `host`: as root over the socket, or through `via` ("127.0.0.1:3307") as openexchange."""
        if via:
            address, port = via.split(":")
            # The password goes over stdin into a private client file, never on a command line.
            command = ("f=$(mktemp); trap 'rm -f $f' EXIT; { echo '[client]'; echo 'user=openexchange'; "
                       "printf 'password=%s\\n' \"$(cat)\"; } > $f; "
                       f"mariadb --defaults-file=$f -h {address} -P {port} -N -B -e \"{statement}\"")
            code, out, err = self.run(host, command, stdin=password)
        else:
            code, out, err = self.run(host, f"mariadb -N -B -e \"{statement}\"")
        if code != 0:
            raise RuntimeError(f"{host}: {statement}: {err}")
        return out

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _password(state: dict, name: str) -> str:
    for urn, value in state.get("random", {}).items():
        if urn.endswith(f"::{name}"):
            return value["result"]
    raise KeyError(name)


def verify(state: dict) -> list[Check]:
    # Imported here, not at the top: verify_db imports Shell, Check and helpers from this module.
    from lab.verify_db import _clustercheck, _configdb_rows, _galera, _gtid, _read_write_split, _remote_databases

    outputs = state.get("outputs", {})
    addresses = outputs.get("hostAddresses", {})
    shell = Shell(addresses)
    checks: list[Check] = []
    with ExitStack() as stack:
        stack.callback(shell.close)
        for run in (_hosts, _galera, _gtid, _clustercheck, _read_write_split, _remote_databases, _middleware,
                    _registration, _configdb_rows, _filestore, _frontend, _docconverter):
            try:
                checks += run(shell, state, outputs)
            except Exception as exn:  # noqa: BLE001 a check that cannot run is a failed check
                checks.append((run.__name__.strip("_"), False, f"could not run: {exn}"))
    return checks


def _hosts(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    checks = []
    addresses, facts = outputs["hostAddresses"], outputs["hostFacts"]
    for host in addresses:
        code, out, _ = shell.run(host, "hostname")
        checks.append((f"ssh {host}", code == 0 and out == host, f"hostname {out!r}"))
    # Each host's role packages (the list its facts step reported on), installed now.
    missing = {}
    for host, f in facts.items():
        wanted = " ".join(f["packages"])
        _, out, _ = shell.run(host, f"for p in {wanted}; do dpkg-query -W -f='${{db:Status-Status}}' $p 2>/dev/null"
                                    " | grep -qx installed || echo $p; done") if wanted else (0, "", "")
        missing[host] = out.split()
    checks.append(("packages present", not any(missing.values()),
                   ", ".join(f"{h}: {m}" for h, m in missing.items() if m) or "every role's packages installed"))
    # The hosts-file step was rendered from every host's facts step (stdout chained into a script).
    ok, detail = True, []
    for host in addresses:
        _, block, _ = shell.run(host, "sed -n '/^# BEGIN ox-estate/,/^# END ox-estate/p' /etc/hosts")
        for other, address in addresses.items():
            if not re.search(rf"^{re.escape(address)} {re.escape(other)}\b", block, re.M):
                ok = False
                detail.append(f"{host} lacks {other}")
    checks.append(("facts -> /etc/hosts chained", ok, "; ".join(detail) or f"{len(addresses)} hosts in every block"))
    return checks


def _eventually(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _middleware(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """Each node's OX answers on :8009 and routes sessions to itself: JSESSIONID ends in its jkroute."""
    checks = []
    for host, route in (outputs.get("middlewareBackends") or {}).items():
        code, out, _ = shell.run(host, "curl -s -D - -o /dev/null http://127.0.0.1:8009/appsuite/api/login")
        cookie = re.search(r"JSESSIONID=(\d+)\.([^;\s]+)", out)
        checks.append((f"ox {host} session route", code == 0 and bool(cookie) and cookie.group(2) == route,
                       f"JSESSIONID=...{'.' + cookie.group(2) if cookie else ' (none)'}, jkroute {route}"))
    return checks


def _registration(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """The configdb holds exactly one server, one filestore, and each read database points at its master."""
    ids = outputs.get("registeredDatabaseIds")
    if ids is None:
        return []
    host = next(iter(outputs["middlewareBackends"]))
    password = _password(state, "ox-admin-master-password")

    def listing(tool: str) -> list[dict]:
        code, out, err = shell.run(host, f"ADMIN_PASSWORD=$(cat) /opt/open-xchange/sbin/{tool} -A oxadminmaster --csv",
                                   stdin=password)
        if code != 0:
            raise RuntimeError(f"{tool}: {err}")
        return list(csv.DictReader(io.StringIO(out)))

    servers, filestores, databases = listing("listserver"), listing("listfilestore"), listing("listdatabase")
    by_name = {d["display_name"]: d for d in databases}
    chained = all(by_name[f"{name}_read"]["masterid"] == str(int(ids[name])) for name in ids
                  if not name.endswith("_read") and f"{name}_read" in ids)
    return [
        ("configdb: one server", [s["id"] for s in servers] == [str(int(outputs["serverId"]))],
         f"servers {[s['name'] for s in servers]}"),
        ("configdb: one filestore", [f["id"] for f in filestores] == [str(int(outputs["filestoreId"]))],
         f"filestores {[f['uri'] for f in filestores]}"),
        ("configdb: databases as registered", sorted(by_name) == sorted(ids)
         and all(by_name[n]["id"] == str(int(i)) for n, i in ids.items()), f"{ {n: d['id'] for n, d in by_name.items()} }"),
        ("registration chain: slave -M master id", chained,
         "; ".join(f"{n} -> master {d['masterid']}" for n, d in by_name.items() if d["master"] == "false")),
    ]


def _filestore(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """The NFS export, through the userspace NFSv4 client (this kernel has none): written from one
    middleware host, read from another, owned by open-xchange on the server."""
    backends = list(outputs.get("middlewareBackends") or {})
    server = outputs.get("filestoreServer")
    if not server or len(backends) < 1:
        return []
    export = outputs["filestoreExport"]
    name = f".ox-lab-nfs-{uuid.uuid4().hex[:8]}"
    url = f"nfs://{server}{export}/{name}?version=4"
    token = uuid.uuid4().hex
    writer, reader = backends[0], backends[-1]
    code, _, err = shell.run(writer, f"f=$(mktemp); printf %s {token} > $f; nfs-cp $f '{url}'; rc=$?; rm -f $f; exit $rc")
    _, seen, _ = shell.run(reader, f"nfs-cat '{url}'")
    by_address = {a: h for h, a in outputs["hostAddresses"].items()}
    _, owner, _ = shell.run(by_address[server], f"stat -c %u:%g {export}/{name}; rm -f {export}/{name}")
    return [(f"nfs export {writer} -> {reader}", code == 0 and seen == token, err or f"{url} read back"),
            ("nfs files owned by open-xchange", owner == outputs["filestoreOwner"], f"owner {owner}")]


def routes_through(shell: Shell, source: str, url: str, count: int, cookie: str = "") -> Counter:
    """Send `count` GETs from lab host `source` through Apache; count the jkroutes that answered."""
    header = f"-H 'Cookie: JSESSIONID={cookie}'" if cookie else ""
    _, out, _ = shell.run(source, f"for i in $(seq {count}); do curl -s --max-time 10 {header} '{url}'; echo; done")
    return Counter(json.loads(line).get("route", "?") if line.startswith("{") else "error"
                   for line in out.splitlines() if line.strip())


def new_sessions(shell: Shell, source: str, url: str, members: set[str], batch: int = 60,
                 most: int = 300) -> Counter:
    """Requests without a session id, in batches, until every member answered one (or `most` sent).

    Apache's byrequests balancer counts sticky requests too (mod_proxy_balancer: "so that even
    session routes get into account"): a member that served many sticky requests, the lab's
    cookie checks just sent 20, takes no new session until the others have caught up. Measured:
    after 60 sticky requests to one of three members, the next 60 new sessions all went to the
    other two. So one fixed batch can miss a healthy member; `most` bounds the wait."""
    fresh: Counter = Counter()
    while sum(fresh.values()) < most and not members <= set(fresh):
        fresh += routes_through(shell, source, url, batch)
    return fresh


def _frontend(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """Sticky routing on the jkroute through the real Apache, and the admin-only paths."""
    urls, routes = outputs.get("frontendUrls"), sorted((outputs.get("middlewareBackends") or {}).values())
    if not urls or len(routes) < 2:
        return []
    base = urls[0].removesuffix("/appsuite/")
    web_address = base.removeprefix("http://")
    by_address = {a: h for h, a in outputs["hostAddresses"].items()}
    web = by_address[web_address]
    source = next(h for h in outputs["hostAddresses"] if h != web)
    second, third = routes[1], routes[-1]
    cookie = routes_through(shell, source, f"{base}/appsuite/api/apps", 20, f"1234567.{second}")
    path = routes_through(shell, source, f"{base}/appsuite/api/apps;jsessionid=7654321.{third}", 20)
    backends = outputs.get("middlewareBackends") or {}
    drained = {backends[h] for h in outputs.get("middlewareDrained") or [] if h in backends}
    fresh = new_sessions(shell, source, f"{base}/appsuite/api/apps", set(routes) - drained)
    checks = [
        (f"apache: cookie .{second} sticks", cookie == Counter({second: 20}), f"{dict(cookie)}"),
        (f"apache: ;jsessionid=.{third} sticks", path == Counter({third: 20}), f"{dict(path)}"),
        # A drained node (middleware.nodes[].drained) takes no new sessions.
        ("apache: new sessions spread", set(fresh) == set(routes) - drained and "error" not in fresh,
         f"{dict(fresh)}" + (f", drained {sorted(drained)}" if drained else "")),
    ]
    # SOAP and balancer-manager live only on the admin listener, for the admin networks (the
    # frontend config says which). A host outside them gets no answer from either, on either port:
    # refused (403), not mapped on the public vhost (404), or dropped by the host firewall (000).
    admin = f"{base}:{ADMIN_PORT}"
    admin_nets = [ipaddress.ip_network(n) for n in outputs.get("frontendAdminNetworks", [])]
    inside = {h: any(ipaddress.ip_address(a) in n for n in admin_nets) for h, a in outputs["hostAddresses"].items()}
    outsider = next((h for h in inside if h != web and not inside[h]), None)
    insider = next((h for h in inside if h != web and inside[h]), None)
    if outsider:
        paths = ["/webservices/x", "/webservices;x/x", "/servlet/axis2/services;x/x", "/servlet/axis2;x/services/x",
                 "/WebServices/x", "//webservices/x", "/ajax/..;/webservices/x", "/balancer-manager",
                 "/balancer-manager;x"]
        codes = {}
        for url in [base + p for p in paths] + [admin + p for p in paths[:1] + paths[-2:-1]]:
            _, code, _ = shell.run(outsider, f"curl -s --path-as-is --max-time 5 -o /dev/null -w '%{{http_code}}' '{url}'")
            codes[url.removeprefix(base)] = code
        checks.append((f"apache: SOAP and balancer-manager refused from {outsider}",
                       all(c in ("403", "404", "000") for c in codes.values()),
                       " ".join(f"{p}={c}" for p, c in codes.items())))
    if insider:
        _, body, _ = shell.run(insider, f"curl -s --max-time 10 '{admin}/webservices/x'")
        _, page, _ = shell.run(insider, f"curl -s --max-time 10 '{admin}/balancer-manager'")
        soap = json.loads(body).get("soap") if body.startswith("{") else None
        checks.append((f"apache: SOAP and balancer-manager on :{ADMIN_PORT} from {insider}",
                       soap is True and "balancer://oxcluster" in page, f"soap={soap} manager={'balancer://' in page}"))
    return checks


CONVERTER_URL = "http://127.0.0.1:8008/documentconverterws"  # components/mw/middleware.py CONVERTER_URL
CLIENT_PROPERTIES = "/opt/open-xchange/etc/documentconverter-client.properties"


def converter_routes(shell: Shell, source: str, url: str, count: int, cookie: str = "") -> Counter:
    """Send `count` GETs from lab host `source`; count the converter routes that answered (the
    stand-in's `Route:` line; "error" for anything else)."""
    header = f"-H 'Cookie: JSESSIONID={cookie}'" if cookie else ""
    _, out, _ = shell.run(source, f"for i in $(seq {count}); do curl -s --max-time 10 {header} '{url}' "
                                  "| grep -o 'Route: [A-Za-z0-9_-]*' || echo 'Route: error'; done", timeout=300)
    return Counter(line.removeprefix("Route: ") for line in out.splitlines() if line.strip())


def converter_sessions(shell: Shell, source: str, url: str, routes: set[str], batch: int = 10,
                       seconds: float = 90) -> tuple[Counter, float]:
    """New converter sessions in batches until every route answered, or `seconds` passed; the
    routes seen and the seconds it took. Two reasons a route can be missing for a while:
    byrequests counts sticky requests too (see new_sessions), and a converter that was restarted
    is skipped by Apache for retry= (60 s) once a request (HAProxy's health checks are requests)
    found it down: measured in the lab after a jobProcessorCount change restarted both."""
    fresh: Counter = Counter()
    start = time.monotonic()
    while not routes <= set(fresh) and time.monotonic() - start < seconds:
        fresh += converter_routes(shell, source, url, batch)
        if not routes <= set(fresh):
            time.sleep(1)
    return fresh, time.monotonic() - start


def _docconverter(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """The document converters through the middleware's path to them (the local HAProxy, the
    frontends' balancer://oxcluster_docs): every route answers new sessions, a session sticks to
    its route, and the endpoint refuses a host that is not a middleware node."""
    converters = outputs.get("documentConverterRoutes")
    backends = outputs.get("middlewareBackends") or {}
    if not converters or not backends:
        return []
    routes = set(converters.values())
    mw = list(backends)
    checks = []
    for host in mw:
        _, props, _ = shell.run(host, f"cat {CLIENT_PROPERTIES}")
        checks.append((f"converter client {host}",
                       f"com.openexchange.documentconverter.client.remoteDocumentConverterUrl={CONVERTER_URL}"
                       in props.splitlines(), props.replace("\n", " ")[:200]))
    source = mw[0]
    # HAProxy marks a frontend up two checks after its Apache has the converter balancer.
    answers = _eventually(lambda: converter_routes(shell, source, CONVERTER_URL, 1).keys() <= routes, 30)
    fresh, took = converter_sessions(shell, source, CONVERTER_URL, routes)
    checks.append((f"converters: new sessions from {source} reach every route",
                   answers and set(fresh) - {"error"} == routes, f"{dict(fresh)} in {took:.0f}s"))
    last = sorted(routes)[-1]
    sticky = converter_routes(shell, mw[-1], CONVERTER_URL, 20, f"x.{last}")
    checks.append((f"converters: cookie x.{last} sticks from {mw[-1]}", sticky == Counter({last: 20}), f"{dict(sticky)}"))
    outsider = next((h for h in outputs["hostAddresses"] if h not in backends
                     and h not in converters.keys()), None)
    if outsider:
        codes = {}
        for url in [u.removesuffix("/appsuite/") + p for u in outputs.get("frontendUrls") or []
                    for p in ("/documentconverterws", "/documentconverterws/", "/documentconverterws;x")]:
            _, code, _ = shell.run(outsider, f"curl -s --path-as-is --max-time 5 -o /dev/null -w '%{{http_code}}' '{url}'")
            codes[url] = code
        checks.append((f"converters: /documentconverterws refused from {outsider}",
                       bool(codes) and all(c in ("403", "000") for c in codes.values()),
                       " ".join(f"{u}={c}" for u, c in codes.items())))
    return checks

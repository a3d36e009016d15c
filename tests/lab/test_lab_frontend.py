"""ApacheFrontend for real: Apache in a lab host in front of three stand-in backends.

The frontend is not wired into estate.py yet, so this drives the component with its own small
program (tests/lab/frontend_program, the repository's stacks/Pulumi.lab-web.yaml) through the
lab runner, on lab hosts created for this module alone (state dir, bridge oxlabw0 and subnet
10.217.0.0/24 of its own). The middleware is not deployed: each middleware host runs
tests/lab/fake_backend.py on :8009, started detached and stopped by its own pid at the end.
Every request is sent from inside a lab host to the frontend's lab address.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from estate import ROOT, LabEstate, skip_reason

STACK, SUBNET, BRIDGE = "lab-web", "10.217.0.0/24", "oxlabw0"
PROGRAM = Path(__file__).resolve().parent / "frontend_program"
FAKE_BACKEND = Path(__file__).resolve().parent / "fake_backend.py"
HOST_BACKEND = "/opt/ox-lab-test/fake_backend.py"  # where it is installed inside a lab host
ROUTES = {"wmw1": "OX1", "wmw2": "OX2", "wmw3": "OX3", "wmw4": "PROV"}  # wmw4: provisioning
WEB = "10.217.0.41"
ADMIN_HOST, OTHER_HOST = "wmw1", "wdb1"  # inside / outside adminNetworks 10.217.0.16/28
BACKEND_LOG = "/tmp/fake-backend.log"

_reason = skip_reason() or (None if shutil.which("apache2") or Path("/usr/sbin/apache2").exists()
                            else "LAB TESTS SKIPPED: apache2 missing (bash lab/setup.sh installs it)")
if _reason:
    print(f"\n*** {_reason} ***\n")
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

# Paths that must never reach SOAP or balancer-manager from outside the admin networks: ;params
# in each segment, %3B and %2F encodings, doubled slashes, case, dot segments Apache resolves,
# and "..;" dot segments only the backend would resolve (through another proxied prefix).
GUARDED = [
    "/webservices/OXContextService",
    "/webservices;x/OXContextService",
    "/webservices/;x/OXContextService",
    "/webservices;/OXContextService",
    "/webservices%3Bx/OXContextService",
    "//webservices/OXContextService",
    "/WebServices/OXContextService",
    "/WEBSERVICES;x/OXContextService",
    "/%77ebservices/OXContextService",
    "/./webservices/OXContextService",
    "/foo/../webservices/OXContextService",
    "/ajax/..;/webservices/OXContextService",
    "/ajax/%2e%2e;/webservices/OXContextService",
    "/appsuite/api/..;/..;/webservices/OXContextService",
    "/webservices",
    "/webservices;",
    "/servlet/axis2/services/OXContextService",
    "/servlet/axis2/services;x/OXContextService",
    "/servlet/axis2;x/services/OXContextService",
    "/servlet;x/axis2/services/OXContextService",
    "/servlet/axis2/services;/OXContextService",
    "/servlet/axis2%3Bx/services/OXContextService",
    "/servlet//axis2//services/OXContextService",
    "/servlet/./axis2/services/OXContextService",
    "/servlet/x/../axis2/services/OXContextService",
    "/servlet/Axis2/Services/OXContextService",
    "/servlet/axis2/./services;/OXContextService",
    "/servlet/..;/servlet/axis2/services/OXContextService",
    "/balancer-manager",
    "/balancer-manager;x",
    "/balancer-manager/",
    "//balancer-manager",
    "/Balancer-Manager",
    "/balancer-manager%3B",
    "/x/../balancer-manager",
]
# An encoded slash is refused by Apache itself (AllowEncodedSlashes Off): 404 before any authz.
ENCODED_SLASH = ["/webservices%2FOXContextService", "/servlet%2Faxis2/services/OXContextService"]
# From the admin network these reach the backend.
ADMIN_REACHES = ["/webservices/OXContextService", "/servlet/axis2/services/OXContextService",
                 "/servlet/axis2;x/services/OXContextService", "//webservices/OXContextService"]


class FrontendLab(LabEstate):
    """Lab hosts for the lab-web stack, the stand-in backends, and runs of the frontend program."""

    def __init__(self, state_dir: Path):
        super().__init__(STACK, SUBNET, BRIDGE, state_dir)
        self.dir = state_dir
        self.hosts = [(h["name"], h["address"]) for h in yaml.safe_load(
            (ROOT / "stacks" / f"Pulumi.{STACK}.yaml").read_text())["config"]["ox-estate:hosts"]]
        self.pids: dict[str, str] = {}

    def _run(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def create_hosts(self) -> None:
        result = self._run(["-m", "lab.hosts", "create", *[f"{n}={a}" for n, a in self.hosts],
                            "--subnet", SUBNET, "--bridge", BRIDGE])
        assert result.returncode == 0, result.stderr

    def destroy_hosts(self) -> None:
        result = self._run(["-m", "lab.hosts", "destroy"])
        if result.returncode != 0:
            print(f"lab hosts destroy failed:\n{result.stderr}", file=sys.stderr)

    def start_backend(self, host: str) -> None:
        # Copied into the host: the checkout may live where lab hosts see their own tmpfs or home.
        installed = self._run(["-c", "from lab import hosts; hosts.install_files("
                                     f"{host!r}, {{{HOST_BACKEND!r}: {str(FAKE_BACKEND)!r}}})"])
        assert installed.returncode == 0, installed.stderr
        self.pids[host] = self.run_on(host, f"setsid /usr/bin/python3 {HOST_BACKEND} --route {ROUTES[host]} "
                                            f"--log {BACKEND_LOG} </dev/null >/tmp/fake-backend.out 2>&1 & echo $!")
        self.run_on(host, "for i in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:8009/ && exit 0; "
                          "sleep 0.1; done; cat /tmp/fake-backend.out; exit 1")

    def stop_backend(self, host: str) -> None:
        pid = self.pids.pop(host, None)
        if pid:
            self.run_on(host, f"kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.05; done", check=False)

    def up(self, **config) -> dict:
        """Run the frontend program (config: extra ox-estate keys); its outputs."""
        extra = self.dir / "extra.json"
        key = (self.dir / "ssh" / "id_ed25519").read_text()
        extra.write_text(json.dumps({"config": {"ox-estate:sshPrivateKey": key,
                                                **{f"ox-estate:{k}": v for k, v in config.items()}},
                                     "secretKeys": ["ox-estate:sshPrivateKey"]}))
        extra.chmod(0o600)
        result = self._run(["-m", "lab.runner", "up", "--program", str(PROGRAM), "--stack", STACK,
                            "--state", str(self.dir / "run" / "state.json"),
                            "--record", str(self.dir / "run" / "record.json"), "--extra-config", str(extra)])
        assert result.returncode == 0, f"frontend program failed:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
        return json.loads(result.stdout)

    def requests(self, source: str, path: str, n: int = 1, cookie: str | None = None, host: str = WEB) -> list[str]:
        """`n` requests from a lab host; each one's 'status node' (node '-' when no backend answered)."""
        cookie_arg = f"-b 'JSESSIONID={cookie}'" if cookie else ""
        out = self.run_on(source, f"""for i in $(seq {n}); do
            code=$(curl -sS --path-as-is --max-time 20 {cookie_arg} -o /tmp/body -w '%{{http_code}}' 'http://{host}{path}')
            node=$(grep -o '"node": "[A-Z0-9]*"' /tmp/body | cut -d'"' -f4)
            echo "$code ${{node:--}}"
        done""")
        return out.splitlines()

    def wait_routed(self, route: str, host: str = WEB, timeout: float = 90) -> None:
        """Apache skips a member for retry=60 s after it failed: wait until `route` serves again,
        so that the next test finds every backend in rotation."""
        deadline = time.monotonic() + timeout
        while self.requests(OTHER_HOST, "/appsuite/api/x", 4, cookie=f"1.{route}", host=host) != [f"200 {route}"] * 4:
            assert time.monotonic() < deadline, f"{host} did not route to {route} again within {timeout:.0f} s"
            time.sleep(2)

    def record(self) -> dict:
        return json.loads((self.dir / "run" / "record.json").read_text())

    def backend_lines(self) -> int:
        return sum(int(self.run_on(h, f"cat {BACKEND_LOG} 2>/dev/null | wc -l")) for h in ROUTES)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = FrontendLab(tmp_path_factory.mktemp("lab-web"))
    try:
        lab.create_hosts()
        for host in ROUTES:
            lab.start_backend(host)
        lab.first = lab.up()
        yield lab
    finally:
        for host in list(lab.pids):
            lab.stop_backend(host)
        lab.destroy_hosts()


def _nodes(rows: list[str]) -> Counter:
    return Counter(rows)


def test_first_up_starts_apache_with_event_mpm(lab):
    (status,) = lab.first["frontendStatus"]
    assert status["mpm"] == "event" and status["balancer"] == 200
    assert lab.first["frontendUrls"] == [f"http://{WEB}/appsuite/"]
    conf = lab.run_on("wweb1", "apache2ctl -S 2>&1; ls /etc/apache2/sites-enabled /etc/apache2/mods-enabled")
    assert "000-default" not in conf.split("mods-enabled")[0]  # the pristine default site is off
    assert "mpm_prefork" not in conf and "lbmethod_byrequests.load" in conf


def test_cookie_route_sticks(lab):
    """JSESSIONID=123.OX2: 20 of 20 requests land on OX2."""
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 20, cookie="123.OX2")) == {"200 OX2": 20}


def test_path_jsessionid_sticks_even_with_a_further_param(lab):
    """;jsessionid=456.OX3 in the path: 20 of 20 to OX3; scolonpathdelim keeps that with ;foo after it."""
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x;jsessionid=456.OX3", 20)) == {"200 OX3": 20}
    assert _nodes(lab.requests(OTHER_HOST, "/ajax/x;jsessionid=456.OX1;foo=bar", 10)) == {"200 OX1": 10}


def test_new_sessions_spread_over_the_backends_only(lab):
    """Without a session id requests spread over all three backends, never the provisioning node.
    Apache's byrequests balancer evens out what each member served, and earlier tests may have
    sent one member's sessions elsewhere, so the first new sessions may favour it: of 60, every
    backend gets some."""
    counts = _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 60))
    assert set(counts) == {"200 OX1", "200 OX2", "200 OX3"}, counts
    assert lab.run_on("wmw4", f"cat {BACKEND_LOG} 2>/dev/null | grep -c ajax || true") == "0"


def test_soap_and_balancer_manager_refuse_every_encoding_outside_the_admin_networks(lab):
    before = lab.backend_lines()
    for source in (OTHER_HOST, "wweb1"):  # another host, and the frontend itself (127.0.0.1 is not admin)
        for path in GUARDED:
            assert lab.requests(source, path) == ["403 -"], (source, path)
        for path in ENCODED_SLASH:
            assert lab.requests(source, path) == ["404 -"], (source, path)
    assert lab.backend_lines() == before, "a refused request reached a backend"


def test_admin_networks_reach_soap_and_balancer_manager(lab):
    for path in ADMIN_REACHES:
        (row,) = lab.requests(ADMIN_HOST, path)
        assert row.startswith("200 OX"), (path, row)
    page = lab.run_on(ADMIN_HOST, f"curl -fsS http://{WEB}/balancer-manager")
    assert "balancer://oxcluster" in page and "balancer://eas_oxcluster" in page
    assert all(r in page for r in ("OX1", "OX2", "OX3"))
    assert "PROV" not in page


def test_second_up_changes_nothing(lab):
    """Same config: no step runs, so no file is written and Apache keeps its pid and generation."""
    lab.up()
    mtime = lab.run_on("wweb1", "stat -c %Y /etc/apache2/sites-available/000-appsuite.conf")
    pid = lab.run_on("wweb1", "cat /run/apache2/apache2.pid")
    status = lab.up()["frontendStatus"][0]
    assert lab.record()["executed"] == 0
    assert lab.run_on("wweb1", "stat -c %Y /etc/apache2/sites-available/000-appsuite.conf") == mtime
    assert lab.run_on("wweb1", "cat /run/apache2/apache2.pid") == pid == str(int(status["pid"]))


def test_a_changed_admin_network_is_reloaded_not_restarted(lab):
    """Widening adminNetworks to the DB host: a graceful reload (same pid, next generation) opens SOAP;
    the change back closes it again."""
    before = lab.up()["frontendStatus"][0]
    try:
        wider = lab.up(frontend={"mode": "dedicated", "nodes": ["wweb1"], "maxConnections": 256,
                                 "adminNetworks": ["10.217.0.16/28", "10.217.0.8/29"]})["frontendStatus"][0]
        ran = {s["name"] for s in lab.record()["steps"] if s.get("start") is not None}
        assert {"web-wweb1-configure", "web-wweb1-start"} <= ran and "web-wweb1-install" not in ran
        assert wider["pid"] == before["pid"] and wider["generation"] == before["generation"] + 1
        assert lab.requests(OTHER_HOST, "/servlet/axis2;x/services/OXContextService")[0].startswith("200 OX")
    finally:
        back = lab.up()["frontendStatus"][0]
    assert back["pid"] == before["pid"] and back["generation"] == before["generation"] + 2
    assert lab.requests(OTHER_HOST, "/servlet/axis2;x/services/OXContextService") == ["403 -"]


def test_a_changed_mpm_size_restarts(lab):
    """ServerLimit cannot change on a graceful reload: a new maxConnections restarts Apache."""
    before = lab.up()["frontendStatus"][0]
    try:
        bigger = lab.up(frontend={"mode": "dedicated", "nodes": ["wweb1"], "maxConnections": 320,
                                  "adminNetworks": ["10.217.0.16/28"]})["frontendStatus"][0]
        assert bigger["pid"] != before["pid"]
        assert "MaxRequestWorkers       320" in lab.run_on("wweb1", "cat /etc/apache2/conf-available/ox-mpm-event.conf")
    finally:
        lab.up()


def test_sessions_of_a_stopped_backend_fail_over(lab):
    """OX2 stops: its sessions (cookie .OX2) all land on another node; POSTs too."""
    lab.stop_backend("wmw2")
    try:
        rows = lab.requests(OTHER_HOST, "/appsuite/api/x", 20, cookie="123.OX2")
        assert all(r in ("200 OX1", "200 OX3") for r in rows), rows
        post = lab.run_on(OTHER_HOST, f"curl -sS -b JSESSIONID=9.OX2 -d a=b http://{WEB}/ajax/x")
        assert json.loads(post)["node"] in ("OX1", "OX3")
    finally:
        lab.start_backend("wmw2")
        lab.wait_routed("OX2")


def test_colocated_hosts_keep_new_sessions_local_and_honour_routes(lab):
    """Colocated: each middleware host's Apache sends new sessions to its own node; +H members
    still take the sessions routed to them, and take over when the local node is gone."""
    try:
        _colocated(lab)
    finally:
        lab.up()  # back to the dedicated frontend the other tests use


def _colocated(lab):
    out = lab.up(frontend={"mode": "colocated", "adminNetworks": ["10.217.0.16/28"], "maxConnections": 256})
    assert out["frontendUrls"] == [f"http://10.217.0.2{i}/appsuite/" for i in (1, 2, 3)]
    local = "10.217.0.22"
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 12, host=local)) == {"200 OX2": 12}
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 10, cookie="5.OX3", host=local)) == {"200 OX3": 10}
    assert lab.requests(OTHER_HOST, "/webservices;x/OXContextService", host=local) == ["403 -"]
    lab.stop_backend("wmw2")
    try:
        rows = lab.requests(OTHER_HOST, "/appsuite/api/x", 10, host=local)
        assert all(r in ("200 OX1", "200 OX3") for r in rows), rows
    finally:
        lab.start_backend("wmw2")

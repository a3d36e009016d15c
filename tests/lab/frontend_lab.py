"""The frontend lab (stack lab-web, bridge oxlabw0, subnet 10.217.0.0/24) for tests/lab/test_lab_frontend.py.

Lab hosts of their own, stand-in backends (tests/lab/fake_backend.py, each started detached and
stopped by its pid), runs of the frontend program through the lab runner, requests sent from
inside lab hosts, and balancer-manager read and driven from the admin network.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from estate import ROOT, LabEstate

STACK, SUBNET, BRIDGE = "lab-web", "10.217.0.0/24", "oxlabw0"
HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "frontend_program"
FAKE_BACKEND = HERE / "fake_backend.py"
SERVLETPATH = ROOT / "lab" / "standins" / "oxstandin" / "servletpath.py"
SENDER = HERE / "corpus_sender.py"
HOST_DIR = "/opt/ox-lab-test"  # where the test's helpers are installed inside a lab host
HOST_BACKEND = f"{HOST_DIR}/fake_backend.py"
ROUTES = {"wmw1": "OX1", "wmw2": "OX2", "wmw3": "OX3", "wmw4": "PROV"}  # wmw4: provisioning
WEB = "10.217.0.41"
ADMIN_PORT = 8088
MANAGER_PORT = 8089  # components/web/frontend.py MANAGER_PORT: balancer-manager on 127.0.0.1 only
ADMIN_HOST, OTHER_HOST = "wmw1", "wdb1"  # inside / outside adminNetworks 10.217.0.16/28
BACKEND_LOG = "/tmp/fake-backend.log"
# One balancer-manager worker row: balancer, worker URL, route, redirect, factor, set, status.
_WORKER_ROW = re.compile(r'<td><a href="/balancer-manager\?b=([^&]+)&amp;w=([^&]+)&amp;nonce=[^"]+">[^<]*</a></td>'
                         r"<td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>")


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

    def install(self, host: str, files: dict[str, Path]) -> None:
        """Copy files into a lab host: the checkout may live where lab hosts see their own tmpfs or home."""
        mapping = {dest: str(src) for dest, src in files.items()}
        installed = self._run(["-c", f"from lab import hosts; hosts.install_files({host!r}, {mapping!r})"])
        assert installed.returncode == 0, installed.stderr

    def start_backend(self, host: str) -> None:
        self.install(host, {HOST_BACKEND: FAKE_BACKEND, f"{HOST_DIR}/servletpath.py": SERVLETPATH})
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

    def requests(self, source: str, path: str, n: int = 1, cookie: str | None = None, host: str = WEB,
                 port: int = 80) -> list[str]:
        """`n` requests from a lab host; each one's 'status node' (node '-' when no backend answered)."""
        cookie_arg = f"-b 'JSESSIONID={cookie}'" if cookie else ""
        out = self.run_on(source, f"""for i in $(seq {n}); do
            code=$(curl -sS --path-as-is --max-time 20 {cookie_arg} -o /tmp/body -w '%{{http_code}}' 'http://{host}:{port}{path}')
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

    def generation(self, host: str = "wweb1") -> int:
        """Apache's live config generation on `host` (mod_status, local only)."""
        return int(self.run_on(host, "curl -fsS --max-time 5 'http://127.0.0.1/server-status?auto' "
                                     "| awk -F': ' '$1 == \"ParentServerConfigGeneration\" {print $2}'"))

    def verify_frontend(self) -> list[tuple[str, bool, str]]:
        """lab/verify.py's frontend checks (what `python -m lab up` verifies) against this lab."""
        from lab import verify

        outputs = {"frontendUrls": [f"http://{WEB}/appsuite/"], "frontendAdminNetworks": ["10.217.0.16/28"],
                   "middlewareBackends": {h: r for h, r in ROUTES.items() if r != "PROV"},
                   "hostAddresses": dict(self.hosts)}
        saved = os.environ.get("OX_LAB_STATE")
        os.environ["OX_LAB_STATE"] = self.env["OX_LAB_STATE"]  # Shell loads this lab's key now
        try:
            shell = verify.Shell(outputs["hostAddresses"])
        finally:
            if saved is None:
                os.environ.pop("OX_LAB_STATE", None)
            else:
                os.environ["OX_LAB_STATE"] = saved
        try:
            return verify._frontend(shell, {}, outputs)
        finally:
            shell.close()

    def record(self) -> dict:
        return json.loads((self.dir / "run" / "record.json").read_text())

    def backend_lines(self) -> int:
        return sum(int(self.run_on(h, f"cat {BACKEND_LOG} 2>/dev/null | wc -l")) for h in ROUTES)

    def get(self, source: str, url: str) -> tuple[int, dict | str]:
        """One GET from a lab host: the status and the body (parsed when it is JSON)."""
        out = self.run_on(source, f"curl -sS --path-as-is --max-time 20 -o /tmp/get.body -w '%{{http_code}}' "
                                  f"'{url}'; echo; cat /tmp/get.body")
        code, _, body = out.partition("\n")
        try:
            return int(code), json.loads(body)
        except ValueError:
            return int(code), body

    def backend_records(self) -> list[dict]:
        """Every request the stand-in backends logged (raw path, dispatched path, admin candidates)."""
        rows = []
        for h in ROUTES:
            rows += [json.loads(line) for line in self.run_on(h, f"cat {BACKEND_LOG} 2>/dev/null || true").splitlines()]
        return rows

    def manager_page(self, host: str = WEB) -> str:
        """The balancer-manager page, fetched from the admin network."""
        return self.run_on(ADMIN_HOST, f"curl -fsS --max-time 20 http://{host}:{ADMIN_PORT}/balancer-manager")

    def manager_state(self, host: str = WEB) -> list[tuple[str, ...]]:
        """What balancer-manager can change, per worker (counters left out): as the admin network sees it."""
        return [tuple(html.unescape(c).strip() for c in row) for row in _WORKER_ROW.findall(self.manager_page(host))]

    def manager_workers(self, host: str = "wweb1") -> str:
        """balancer-manager's XML report with its counters, one field=value per worker field (for
        failure messages): fetched on the frontend from the loopback-only manager listener."""
        xml = self.run_on(host, f"curl -fsS --max-time 20 'http://127.0.0.1:{MANAGER_PORT}/balancer-manager?xml=1'")
        fields = re.findall(r"<httpd:(name|status|lbstatus|loadfactor|elected)>([^<]*)<", xml)
        return " ".join(f"{k}={v}" for k, v in fields)

    def nonce(self, balancer: str = "oxcluster") -> str:
        return re.search(rf"b={balancer}&amp;(?:w=[^&]+&amp;)?nonce=([0-9a-f-]+)", self.manager_page()).group(1)

    def manager_set(self, source: str, worker: str, form: str, port: int = ADMIN_PORT) -> int:
        """POST a balancer-manager change for `worker` of oxcluster from `source`; the status code."""
        body = f"b=oxcluster&w={worker}&nonce={self.nonce()}&{form}"
        referer = f"http://{WEB}:{port}/balancer-manager"
        return int(self.run_on(source, f"curl -sS --max-time 20 -o /dev/null -w '%{{http_code}}' "
                                       f"-H 'Referer: {referer}' --data '{body}' {referer}"))

    def send_corpus(self, source: str, corpus: list[tuple[int, str, str]], ports: tuple[int, ...],
                    form: str, host: str = WEB) -> dict:
        """Replay `corpus` ([id, method, path]) from `source` to `host` on `ports` (corpus_sender.py)."""
        local = self.dir / "corpus.json"
        local.write_text(json.dumps(corpus))
        self.install(source, {f"{HOST_DIR}/corpus_sender.py": SENDER, f"{HOST_DIR}/corpus.json": local})
        result = subprocess.run(
            [sys.executable, "-m", "lab.hosts", "run", source, "--", "/usr/bin/python3", f"{HOST_DIR}/corpus_sender.py",
             "--host", host, "--ports", ",".join(map(str, ports)), "--corpus", f"{HOST_DIR}/corpus.json",
             "--form", form], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

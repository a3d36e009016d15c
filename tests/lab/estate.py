"""Bring a lab stack up for a test module and always take it down again.

The estate runs in its own state dir, bridge and subnet, so it never touches a lab someone
started by hand (`python -m lab up` uses /ox-lab, oxlab0 and 10.213.0.0/24).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def skip_reason(tools: tuple[str, ...] = ("ip", "mariadbd", "haproxy", "sshd")) -> str | None:
    """Why lab tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "LAB TESTS SKIPPED: not root (lab hosts need network namespaces and mounts)"
    for tool in tools:
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"LAB TESTS SKIPPED: {tool} missing (bash lab/setup.sh installs it)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True)
    if probe.returncode != 0:
        return f"LAB TESTS SKIPPED: `ip netns` unavailable: {probe.stderr.decode().strip()}"
    return None


def lab_mark(tools: tuple[str, ...] = ("ip", "mariadbd", "haproxy", "sshd")):
    """`pytestmark = lab_mark()` in a lab test module: skipped, loudly, where the lab cannot run."""
    reason = skip_reason(tools)
    if reason:
        print(f"\n*** {reason} ***\n")
    return pytest.mark.skipif(reason is not None, reason=reason or "")


requires_lab = lab_mark()


# Every file under a DB host's datadir and log directories: binlogs, relay logs, galera.cache,
# InnoDB/Aria files and logs, SST logs, the error log.
DB_FILES = "/var/lib/mysql /var/log"
# Reads the passwords, one a line, on stdin (into a 0600 file: never on a command line) and prints
# "<count> <file>:<password>" for every file that holds one in clear: one pass over the files.
GREP_PASSWORDS = ("set -euo pipefail; umask 077; f=$(mktemp); trap 'rm -f \"$f\"' EXIT; cat >\"$f\"; "
                  f"{{ grep -rFoa -f \"$f\" {DB_FILES} 2>/dev/null || true; }} | sort | uniq -c")


FIGURES_DIR = ROOT / "lab" / "out" / "figures"


def record_figures(name: str, figures: dict, command: str) -> None:
    """Keep a passing fault test's figures in lab/out/figures/<name>.json (not committed), for
    `python -m benchmarks`, which reads them rather than causing the faults again; `command`
    reruns the test. The newest run replaces the last."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "figures": figures, "command": command, "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
           "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    tmp = FIGURES_DIR / f".{name}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(FIGURES_DIR / f"{name}.json")


class LabEstate:
    def __init__(self, stack: str, subnet: str, bridge: str, state_dir: Path):
        self.stack, self.subnet = stack, subnet
        self.env = {**os.environ, "OX_LAB_STATE": str(state_dir), "OX_LAB_BRIDGE": bridge}

    def lab(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """`python -m lab <args> --stack <stack>` in this estate's lab, output captured."""
        extra = ["--subnet", self.subnet] if args[0] == "up" else []
        return subprocess.run([sys.executable, "-m", "lab", *args, "--stack", self.stack, *extra], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def up(self, *args: str) -> subprocess.CompletedProcess:
        """`lab up [args]` (e.g. "--converge", "--set", "KEY=VALUE"); it and its verify must pass."""
        result = self.lab("up", *args)
        assert result.returncode == 0, f"lab up failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    def record(self, mode: str = "up") -> dict:
        """The last run's record: operations per resource (`plan`), steps run, SSH connections."""
        return json.loads((ROOT / "lab" / "out" / f"{self.stack}-{mode}-record.json").read_text())

    def preview(self, *args: str) -> dict:
        """`lab preview [args]`: the plan, by step name -> operation, of what is not unchanged."""
        result = self.lab("preview", *args)
        assert result.returncode == 0, f"lab preview failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return self.record("preview")

    @property
    def state(self) -> dict:
        return json.loads((ROOT / "lab" / "state" / f"{self.stack}.json").read_text())

    def shell(self):
        """An SSH client to this estate's hosts (lab.verify.Shell); close it when done."""
        from lab.verify import Shell

        saved = os.environ.get("OX_LAB_STATE")
        os.environ["OX_LAB_STATE"] = self.env["OX_LAB_STATE"]  # Shell loads this lab's key now
        try:
            return Shell(self.state["outputs"]["hostAddresses"])
        finally:
            if saved is None:
                os.environ.pop("OX_LAB_STATE", None)
            else:
                os.environ["OX_LAB_STATE"] = saved

    def plaintext_passwords(self, hosts: list[str], ssh) -> dict[str, list[tuple[str, int, str]]]:
        """Per host: (password name, occurrences, file) for each generated password (pulumi_random,
        from the lab state) found in clear in any file under DB_FILES."""
        generated = {urn.rsplit("::", 1)[1]: r["result"] for urn, r in self.state["random"].items()}
        assert {"mysql-root-password", "sst-password", "replication-password", "configdb-password"} <= set(generated)
        name_of = {pw: name for name, pw in generated.items()}  # generated: letters and digits only
        found = {}
        for host in hosts:
            code, out, err = ssh.run(host, GREP_PASSWORDS, stdin="".join(f"{pw}\n" for pw in name_of), timeout=600)
            assert code == 0, f"{host}: {err}"
            rows = [row.split(None, 1) for row in out.splitlines()]
            found[host] = sorted((name_of[hit.rsplit(":", 1)[1]], int(n), hit.rsplit(":", 1)[0]) for n, hit in rows)
        return found

    def run_on(self, host: str, script: str, check: bool = True) -> str:
        """Run a shell script inside a lab host (for test set-up and inspection)."""
        result = subprocess.run([sys.executable, "-m", "lab.hosts", "run", host, "--", "bash", "-c", script],
                                cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)
        if check:
            assert result.returncode == 0, f"{host}: {script}: {result.stderr}"
        return result.stdout.strip()


@contextmanager
def lab_estate(stack: str, subnet: str, bridge: str, state_dir: Path):
    estate = LabEstate(stack, subnet, bridge, state_dir)
    try:
        yield estate
    finally:
        down = estate.lab("down", timeout=600)
        if down.returncode != 0:
            print(f"lab down for {stack} failed:\n{down.stdout}\n{down.stderr}", file=sys.stderr)


@contextmanager
def estate_up(stack: str, subnet: str, bridge: str, state_dir: Path):
    """`lab_estate`, brought up once, with the first `up`'s result (`first_up`) and an open shell
    on its hosts (`ssh`): what a module's tests share."""
    with lab_estate(stack, subnet, bridge, state_dir) as estate:
        estate.first_up = estate.up()
        estate.ssh = estate.shell()
        try:
            yield estate
        finally:
            estate.ssh.close()

import asyncio
import copy
import gc
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def ssh_key() -> str:
    """A throwaway ed25519 private key in OpenSSH format."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


BASE_CONFIG = {
    "provider": "static",
    "ssh": {"user": "root"},
    "hosts": [
        {"name": "db1", "address": "10.0.0.11"},
        {"name": "db2", "address": "10.0.0.12"},
        {"name": "db3", "address": "10.0.0.13"},
        {"name": "db4", "address": "10.0.0.14"},
        {"name": "db5", "address": "10.0.0.15"},
        {"name": "mw1", "address": "10.0.0.21"},
        {"name": "mw2", "address": "10.0.0.22"},
        {"name": "nfs1", "address": "10.0.0.31"},
        {"name": "web1", "address": "10.0.0.41"},
    ],
    "database": {
        "galera": {"nodes": ["db1", "db2", "db3"]},
        "gtid": {"master": {"host": "db4", "serverId": 1}, "slave": {"host": "db5", "serverId": 2}},
        "configdb": "galera",
        "userdbs": ["galera", "gtid"],
    },
    "middleware": {"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX2"}]},
    "filestore": {"server": "nfs1"},
    "frontend": {"nodes": ["web1"], "adminNetworks": ["10.0.0.0/24"]},
    "firewall": {"sshFrom": ["203.0.113.0/24"]},
}


@pytest.fixture
def stack_config(ssh_key):
    """`stack_config(**overrides)`: a valid config (key -> value, no namespace) with overrides applied."""

    def make(**overrides):
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg["sshPrivateKey"] = ssh_key
        cfg.update(copy.deepcopy(overrides))
        return {k: v for k, v in cfg.items() if v is not None}

    return make


@pytest.fixture(autouse=True)
def _reset_pulumi_runtime():
    """Give each test its own event loop, and leave no mocks, outputs or failed futures behind."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    from pulumi.runtime import settings

    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    settings.ROOT.set(None)  # set_mocks would reuse it, exports and all
    gc.collect()
    loop.close()


# The lab tests print their figures (writes acknowledged and lost, seconds to fail over or recover,
# Synced floors). pytest keeps a passing test's output to itself, so the figures are collected here
# and printed once at the end of every run, CI's included.
_LAB_FIGURES: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.passed and report.nodeid.startswith("tests/lab/"):
        # Each phase's report carries the earlier phases' output too: take this phase's own.
        own = "".join(text for name, text in report.sections if name == f"Captured stdout {report.when}")
        if own.strip():
            _LAB_FIGURES.append((f"{report.nodeid} ({report.when})", own.strip()))


def pytest_terminal_summary(terminalreporter):
    if _LAB_FIGURES:
        terminalreporter.section("lab figures")
        for where, text in _LAB_FIGURES:
            terminalreporter.write_line(f"{where}:")
            for line in text.splitlines():
                terminalreporter.write_line(f"    {line}")


# Each run's wall time, kept by what it selected, for `python -m benchmarks` (its "suites" figures):
# lab/out/suite-times.json (not committed), {selection: {seconds, exitstatus, tests, filtered, finished}}.
# A run narrowed by -k/-m, to failures or to collection is marked filtered, so it never stands for
# its whole suite.
_SESSION_START: list[float] = []


def pytest_sessionstart(session):
    import time

    _SESSION_START.append(time.monotonic())


def pytest_sessionfinish(session, exitstatus):
    import datetime
    import json
    import time

    if not _SESSION_START or hasattr(session.config, "workerinput"):
        return
    opts = session.config.option
    args = [str(Path(a.split("::", 1)[0]).resolve().relative_to(ROOT)) if Path(a.split("::", 1)[0]).resolve()
            .is_relative_to(ROOT) else a for a in session.config.args]
    filtered = any(a for a in session.config.args if "::" in a) or bool(
        getattr(opts, "keyword", "") or getattr(opts, "markexpr", "") or getattr(opts, "lf", False)
        or getattr(opts, "deselect", None) or getattr(opts, "collectonly", False))
    path = ROOT / "lab" / "out" / "suite-times.json"
    try:
        times = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        times = {}
    times[" ".join(sorted(args))] = {
        "seconds": round(time.monotonic() - _SESSION_START[0], 1), "exitstatus": int(exitstatus),
        "tests": session.testscollected, "filtered": filtered,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".suite-times.json.tmp")
    tmp.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)

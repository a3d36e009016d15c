"""The benchmark's lab estate: stack lab-bench (the lab stack on its own subnet and host names),
brought up from scratch, measured, and taken down again whatever happens.

State dir and bridge: $OX_LAB_STATE and $OX_LAB_BRIDGE (default /ox-lab-bench and oxlabb0, the
benchmarks' own, as lab/bench_hosts.py's); subnet 10.215.0.0/24 (stacks/Pulumi.lab-bench.yaml).
"""

from __future__ import annotations

import os
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path

from benchmarks import frontend
from benchmarks.figures import ROOT, Figure, deploy_figures, first_deploy_section, ratio

sys.path[:0] = [str(ROOT / "tests" / "lab")]
from estate import LabEstate  # noqa: E402  (the lab tests' helper: lab CLI runs, records, SSH)

STACK, SUBNET = "lab-bench", "10.215.0.0/24"
GALERA = ["bdb1", "bdb2", "bdb3"]
MIDDLEWARE = ["bmw1", "bmw2", "bmw3"]
WEB = "bweb1"
GCACHE = "database.galera.gcacheSize=160M"  # read only at start: a rolling restart of the Galera nodes
# Debian's own mpm_event.conf is in mods-enabled; ours overrides it from conf-enabled (components/web/frontend.py).
OURS_LINK = "/etc/apache2/conf-enabled/ox-mpm-event.conf"
PARKED = "/root/ox-bench-mpm-event.conf.link"
STATE_COMMENT = ("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                 "WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_COMMENT'")


class BenchLab(LabEstate):
    def __init__(self):
        os.environ.setdefault("OX_LAB_STATE", "/ox-lab-bench")
        os.environ.setdefault("OX_LAB_BRIDGE", "oxlabb0")
        super().__init__(STACK, SUBNET, os.environ["OX_LAB_BRIDGE"], Path(os.environ["OX_LAB_STATE"]))
        self.ssh = None

    def timed(self, *args: str, timeout: float = 900):
        started = time.monotonic()
        result = self.lab(*args, timeout=timeout)
        took = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"lab {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result, took

    def sh(self, host: str, command: str, timeout: float = 120) -> str:
        code, out, err = self.ssh.run(host, command, timeout=timeout)
        if code != 0:
            raise RuntimeError(f"{host}: {command[:80]}: exit {code}: {err[-1000:]}")
        return out


@contextmanager
def bench_lab(log=print):
    """The estate from scratch (anything a cut-off run left is taken down first); always down after."""
    lab = BenchLab()
    lab.lab("down", timeout=600)
    try:
        yield lab
    finally:
        if lab.ssh is not None:
            lab.ssh.close()
        down = lab.lab("down", timeout=600)
        log(f"  lab down {'done' if down.returncode == 0 else 'FAILED: ' + down.stderr[-500:]}")


def first_deploy(lab: BenchLab, log=print) -> tuple[list[Figure], list[str]]:
    result, took = lab.timed("up")
    if "FAIL" in result.stdout:
        raise RuntimeError(f"lab up verified with failures:\n{result.stdout[-3000:]}")
    lab.ssh = lab.shell()
    record = lab.record("up")
    log(f"  first up: {took:.1f} s with host creation and verify")
    notes = [f"lab up from scratch (stack {STACK}, {len(record['plan'])} resources); the whole command with "
             f"host creation and verify took {took:.1f} s"]
    return first_deploy_section(record), notes


def day2(lab: BenchLab, knobs: dict | None, log=print) -> tuple[list[Figure], list[str]]:
    rows: list[Figure] = []
    first = deploy_figures(lab.record("up"))
    _, took = lab.timed("up", "--no-verify")
    again = lab.record("up")
    rows.append(Figure("unchanged up", float(again["duration"]), "s", "first deploy",
                       ratio(again["duration"], first["makespan"]),
                       note=f"{again['executed']} commands run, {again['sshConnections']} SSH connections "
                            f"(command {took:.1f} s)"))
    _, took = lab.timed("preview")
    preview = lab.record("preview")
    rows.append(Figure("preview", float(preview["duration"]), "s", "first deploy",
                       ratio(preview["duration"], first["makespan"]),
                       note=f"{preview['sshConnections']} SSH connections (command {took:.1f} s)"))
    notes = []
    if knobs:
        notes.append(f"single-knob matrix (under mocks, tests/conftest.py's estate, {knobs['steps']} steps; "
                     "tests/unit/test_changes_take_effect.py single_knobs):")
        for label, n in knobs["knobs"].items():
            rows.append(Figure(f"knob {label}", n["update"] + n["create"] + n["delete"], "steps",
                               f"all {knobs['steps']} steps", ratio(n["update"] + n["create"] + n["delete"],
                                                                    knobs["steps"]),
                               note=f"{n['update']} update, {n['create']} create, {n['delete']} delete"))
    rolling, rolling_notes = rolling_galera(lab, log)
    return rows + rolling, notes + rolling_notes


def _writer(lab: BenchLab) -> str | None:
    """The Galera node clustercheck names the writer (200 on /master), asked from a middleware host."""
    addresses = lab.state["outputs"]["hostAddresses"]
    for node in GALERA:
        code = lab.sh(MIDDLEWARE[0], f"curl -s -m 2 -o /dev/null -w '%{{http_code}}' "
                                     f"http://{addresses[node]}:9200/master || true")
        if code == "200":
            return node
    return None


def restart_and_rejoin(lab: BenchLab, node: str) -> float:
    """Seconds for one Galera node's restart (its service's, as the lab's ox_service does it) until
    it is Synced again, timed on the node."""
    out = lab.sh(node, f"s=$(date +%s.%N); /etc/init.d/mariadb restart >/dev/null 2>&1; st=; "
                       f"for i in $(seq 1200); do st=$(mariadb -N -B -e \"{STATE_COMMENT}\" 2>/dev/null || true); "
                       f"[ \"$st\" = Synced ] && break; sleep 0.1; done; echo \"$st $s $(date +%s.%N)\"",
                 timeout=180)
    state, start, end = out.split()[-3:]
    if state != "Synced":
        raise RuntimeError(f"{node}: not Synced within 120 s of its restart ({state})")
    return float(end) - float(start)


def rolling_galera(lab: BenchLab, log=print) -> tuple[list[Figure], list[str]]:
    import test_database  # its WsrepSamples: every node's wsrep state, sampled on the node every 0.1 s

    writer = _writer(lab)
    other = next(n for n in reversed(GALERA) if n != writer)
    one = restart_and_rejoin(lab, other)
    log(f"  restart + rejoin of {other} (not the writer {writer}): {one:.1f} s")
    samples = test_database.WsrepSamples(types.SimpleNamespace(ssh=lab.ssh), GALERA)
    try:
        _, took = lab.timed("up", "--no-verify", "--set", GCACHE)
        time.sleep(1)
    finally:
        samples.stop()
    record = lab.record("up")
    order = [n for _, n in samples.restarts()]
    synced = samples.min_synced()
    rows = [Figure("rolling Galera change (gcacheSize)", float(record["duration"]), "s",
                   f"3 x restart+rejoin {3 * one:.1f} s", ratio(record["duration"], 3 * one),
                   note=f"{record['executed']} commands; restart order {' '.join(order)} (writer before: {writer})"),
            Figure("  fewest Synced nodes during it", synced, f"of {len(GALERA)}",
                   note=f"fewest serving (Synced or IST donor) {samples.min_serving()}")]
    return rows, [f"rolling change: lab up --set {GCACHE}; baseline: one non-writer node's service restart "
                  f"until Synced ({one:.1f} s), x3"]


def frontend_capacity(lab: BenchLab, quick: bool, log=print) -> tuple[list[Figure], list[str]]:
    addresses = lab.state["outputs"]["hostAddresses"]
    web, mw = addresses[WEB], addresses[MIDDLEWARE[0]]

    def restart():
        lab.sh(WEB, "/etc/init.d/apache2 restart >/dev/null 2>&1 && sleep 0.5")

    ceiling = 1600 if quick else 3200
    rates = {}
    for where, url in (("through Apache", f"http://{web}/appsuite/api/apps"),
                       ("straight to the stand-in", f"http://{mw}:8009/appsuite/api/apps")):
        rates[where] = frontend.requests_per_second(lab.sh(WEB, frontend.ab_command(url), timeout=60))
    polls = 800 if quick else 3200
    def series(first_keepalive: int) -> tuple:
        """Keep-alive connections held, then long polls in flight, each from a freshly started Apache."""
        restart()
        held_conns = frontend.most_held(web, 80, first_keepalive, ceiling, log)
        restart()
        return held_conns, frontend.most_held(web, 80, 100, polls, log, frontend.long_polls)

    ours, ours_polls = series(200)
    try:
        lab.sh(WEB, f"test -L {OURS_LINK} && mv {OURS_LINK} {PARKED}")
        debian, debian_polls = series(100)
    finally:
        lab.sh(WEB, f"if test -L {PARKED}; then mv {PARKED} {OURS_LINK}; fi")
        restart()

    def held(v, top=ceiling):
        return f"fails at {v[1]:,}" if v[1] else f"none failed up to {top:,}"

    rows = [Figure("keep-alive connections held, our mpm_event", ours[0], "", f"Debian's default {debian[0]:,}",
                   ratio(ours[0], debian[0]), note=held(ours)),
            Figure("keep-alive connections held, Debian's default", debian[0], "", note=held(debian)),
            Figure(f"long polls in flight ({frontend.HOLD_SECONDS} s each), our mpm_event", ours_polls[0], "",
                   f"Debian's default {debian_polls[0]:,}", ratio(ours_polls[0], debian_polls[0]),
                   note=held(ours_polls, polls)),
            Figure(f"long polls in flight ({frontend.HOLD_SECONDS} s each), Debian's default", debian_polls[0], "",
                   note=held(debian_polls, polls)),
            Figure("throughput through Apache", rates["through Apache"], "req/s",
                   f"straight to a backend {rates['straight to the stand-in']:.0f} req/s",
                   ratio(rates["through Apache"], rates["straight to the stand-in"]),
                   note=f"ab -c {frontend.THROUGHPUT_CONCURRENCY}, {frontend.THROUGHPUT_SECONDS} s, from {WEB}")]
    notes = [f"held: N connections open at once, every one answered on the same connection until all are open "
             f"and once more, no answer slower than {frontend.QUEUE_SECONDS:.0f} s; the second of two runs counts "
             f"(benchmarks/frontend.py)",
             f"long polls: N requests at once to /realtime through the balancer, each held {frontend.HOLD_SECONDS} s "
             f"by the stand-in middleware (a worker thread each); held when all are answered within "
             f"{frontend.HOLD_SECONDS + frontend.QUEUE_SECONDS:.0f} s"]
    return rows, notes

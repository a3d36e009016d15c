"""How evaluating the whole program under mocks grows with the estate's size.

    .venv/bin/python -m benchmarks.scale [--hosts 10,100,300,1000] [--frontends N] [--galera-clusters N]
                                         [--untuned-collector] [--timeout 900]

For each size it builds a static-hosts stack config in memory (one Galera cluster of 3, or
`--galera-clusters` of them, each a userdb and the first also the configdb; a GTID
pair, a standalone server, one NFS server, 40% middleware nodes, 4% dedicated frontends or
`--frontends` of them, the rest hosts with no role, which get only the baseline and the
firewall), runs `__main__.py` under the
unit tests' mocks (tests/harness.py) in a fresh subprocess, so each size has its own memory, and
prints one row per size: hosts, resources, recorded dependency edges (the `dependencies` of every
registration, summed), seconds (wall and CPU, the evaluation only, not the imports; the CPU
figure is the steadier one on a loaded machine), peak RSS. Then the growth
between sizes: ratios, and the log-log slope (1 = linear, 2 = quadratic) of each figure.

The rolling restart drains and readmits every backend node at every Apache, one step each
(components/mw/mwrestart.py), so with frontends growing with the estate those steps grow as
middleware nodes x frontends; `--frontends` holds that factor fixed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEYS = {"sshPrivateKey"}


def estate_shape(hosts: int, frontends: int | None = None, galera_clusters: int = 1) -> dict[str, int]:
    """How many hosts each tier gets at this size; the rest have no role."""
    fixed = 3 * galera_clusters + 2 + 1 + 1  # galera, gtid pair, standalone, nfs
    web = frontends or max(1, round(0.04 * hosts))
    mw = max(2, min(round(0.4 * hosts), 500, hosts - fixed - web))
    if fixed + web + mw > hosts:
        raise SystemExit(f"{hosts} hosts is too few: the smallest estate here has {fixed + web + 2}")
    return {"galera": 3 * galera_clusters, "gtid": 2, "standalone": 1, "nfs": 1, "mw": mw, "web": web,
            "plain": hosts - fixed - web - mw}


def stack_config(hosts: int, ssh_key: str, frontends: int | None = None, galera_clusters: int = 1) -> dict:
    """A valid static-hosts stack config (keys without namespace) with `hosts` hosts."""
    shape = estate_shape(hosts, frontends, galera_clusters)
    names: dict[str, list[str]] = {role: [f"{role}{i + 1}" for i in range(n)] for role, n in shape.items()}
    all_names = [n for group in names.values() for n in group]
    host_list = [{"name": n, "address": f"10.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"}
                 for i, n in enumerate(all_names)]
    galera = names["galera"]
    clusters = [{"name": f"users{k + 1}", "nodes": galera[3 * k:3 * k + 3]} for k in range(galera_clusters)]
    # One cluster: the single-cluster keys, as the figures before --galera-clusters were taken.
    topology = ({"galera": {"nodes": galera}, "configdb": "galera", "userdbs": ["galera", "gtid", "standalone"]}
                if galera_clusters == 1 else
                {"galeraClusters": clusters, "configdb": "users1",
                 "userdbs": [c["name"] for c in clusters] + ["gtid", "standalone"]})
    return {
        "provider": "static",
        "ssh": {"user": "root"},
        "sshPrivateKey": ssh_key,
        "hosts": host_list,
        "database": {
            **topology,
            "gtid": {"master": {"host": names["gtid"][0], "serverId": 1},
                     "slave": {"host": names["gtid"][1], "serverId": 2}},
            "standalone": {"host": names["standalone"][0], "serverId": 3},
        },
        "middleware": {"nodes": [{"host": n, "jkroute": f"OX{i + 1}"} for i, n in enumerate(names["mw"])]},
        "filestore": {"server": names["nfs"][0]},
        "frontend": {"nodes": names["web"], "adminNetworks": ["10.0.0.0/8"]},
        "firewall": {"sshFrom": ["203.0.113.0/24"]},
    }


def ssh_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def measure(hosts: int, frontends: int | None, galera_clusters: int = 1, untuned: bool = False) -> dict:
    """One evaluation in this process (the child): the figures of one row. untuned: the cycle
    collector as CPython sets it, not as __main__.py does (components/core/collector.py)."""
    import resource
    import time

    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import harness  # sets nothing up by itself; run_program sets the mocks before the program runs
    from components.core import collector

    if untuned:
        collector.tune_for_evaluation = lambda: None

    config = stack_config(hosts, ssh_key(), frontends, galera_clusters)
    start, cpu = time.perf_counter(), time.process_time()
    recording = harness.run_program(config, SECRET_KEYS)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    regs = recording.non_stack
    return {"hosts": hosts, "resources": len(regs), "edges": sum(len(r.dependencies) for r in regs),
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_child(hosts: int, frontends: int | None, timeout: float, galera_clusters: int = 1,
              untuned: bool = False) -> dict | None:
    extra = ((["--frontends", str(frontends)] if frontends else []) + ["--galera-clusters", str(galera_clusters)]
             + (["--untuned-collector"] if untuned else []))
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", str(hosts), *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{hosts} hosts: no result within {timeout:.0f} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"{hosts} hosts failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


FIGURES = ("resources", "edges", "seconds", "cpu_seconds", "peak_mb")


def report(rows: list[dict]) -> None:
    print(f"{'hosts':>6} {'resources':>10} {'edges':>9} {'seconds':>9} {'cpu s':>9} {'peak MB':>8}")
    for r in rows:
        print(f"{r['hosts']:>6} {r['resources']:>10} {r['edges']:>9} {r['seconds']:>9.2f} {r['cpu_seconds']:>9.2f} "
              f"{r['peak_mb']:>8.1f}")
    for a, b in zip(rows, rows[1:]):
        ratios = "  ".join(f"{f} x{b[f] / a[f]:.2f}" if a[f] else f"{f} -" for f in FIGURES)
        print(f"{a['hosts']} -> {b['hosts']} hosts (x{b['hosts'] / a['hosts']:.2f}): {ratios}")
    if len(rows) >= 2:
        slopes = "  ".join(f"{f} {slope([r['hosts'] for r in rows], [r[f] for r in rows]):.2f}" for f in FIGURES)
        print(f"log-log slope over hosts (1 = linear): {slopes}")


def slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of log(y) over log(x)."""
    pts = [(math.log(x), math.log(max(y, 1e-3))) for x, y in zip(xs, ys)]
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="10,100,300,1000", help="sizes, comma-separated")
    parser.add_argument("--frontends", type=int, help="frontend hosts at every size (default: 4%% of the hosts)")
    parser.add_argument("--galera-clusters", type=int, default=1, help="Galera clusters of 3 nodes (default 1)")
    parser.add_argument("--untuned-collector", action="store_true",
                        help="the cycle collector as CPython sets it (to compare with __main__.py's)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.frontends, args.galera_clusters, args.untuned_collector)))
        return
    rows = []
    for hosts in [int(h) for h in args.hosts.split(",")]:
        row = run_child(hosts, args.frontends, args.timeout, args.galera_clusters, args.untuned_collector)
        if row is None:
            break
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    report(rows)


if __name__ == "__main__":
    main()

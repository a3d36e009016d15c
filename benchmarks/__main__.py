"""Every performance figure in one run, each with its ratio beside its baseline.

    .venv/bin/python -m benchmarks [--only first-deploy,day2,scale,frontend,failover,suites] [--quick]

Sections (figures on stdout, progress on stderr):
- first-deploy: the lab estate (stack lab-bench) from scratch: makespan, critical path, summed
  step time, their ratios (lab/out/lab-bench-up-record.json, lab.report's critical path).
- day2: an unchanged `up` (time, commands run), `preview`, the steps each knob of the single-knob
  matrix touches (under mocks), and a rolling Galera change (gcacheSize) against 3 x one node's
  restart and rejoin, with the fewest Synced nodes during it.
- scale: evaluation under mocks at 10, 100, 300, 1,000 hosts (benchmarks.scale, at most 4
  frontends),
  growth exponents.
- frontend: keep-alive connections our mpm_event holds against Debian's default; throughput
  through Apache against straight to a backend (benchmarks/frontend.py).
- failover, suites: read from the records the fault tests, pytest (tests/conftest.py) and
  .ci/run write under lab/out/; "no record yet" names the command that writes one.

The lab sections bring the estate up in $OX_LAB_STATE / $OX_LAB_BRIDGE (default /ox-lab-bench,
oxlabb0; subnet 10.215.0.0/24) and always take it down. --quick: scale to 300 hosts, frontend
runs to 1,600 connections and 800 long polls. About 9 minutes in all on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks import figures
from benchmarks.figures import OUT, ROOT, format_section

SECTIONS = ("first-deploy", "day2", "scale", "frontend", "failover", "suites")
LAB_SECTIONS = {"first-deploy", "day2", "frontend"}
# Frontends per scale size: benchmarks.scale's 4% of the hosts, at most 4. With 4% at every size the
# drain and readmit steps (middleware nodes x frontends) make 1,000 hosts 38,000 resources and
# about 300 CPU s, past this run's bound; 4 is the README table's shape.
MAX_FRONTENDS = 4


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def knob_counts() -> dict | None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.knobs"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        log(f"knob matrix failed:\n{done.stderr[-3000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale(quick: bool) -> tuple[list, list[str]]:
    from benchmarks import scale as sc

    rows = []
    for hosts in (10, 100, 300) if quick else (10, 100, 300, 1000):
        row = sc.run_child(hosts, min(MAX_FRONTENDS, sc.estate_shape(hosts)["web"]), 300)
        if row is None:
            break
        log(f"  scale {hosts} hosts: {json.dumps(row)}")
        rows.append(row)
    # The largest size again with CPython's own collector settings: what __main__.py's saves.
    untuned = sc.run_child(rows[-1]["hosts"], min(MAX_FRONTENDS, sc.estate_shape(rows[-1]["hosts"])["web"]), 300,
                           untuned=True) if rows else None
    return figures.scale_section(rows, untuned), ["python -m benchmarks.scale: the whole program under mocks, a fresh "
                                         f"process per size, 4% of the hosts frontends, at most {MAX_FRONTENDS}"]


def run(only: list[str], quick: bool) -> list[str]:
    out: list[str] = []

    def emit(title, section):
        rows, notes = section
        text = format_section(title, rows, notes)
        out.append(text)
        print(text + "\n", flush=True)

    if only_lab := [s for s in SECTIONS if s in only and s in LAB_SECTIONS]:
        from benchmarks import lab_runs

        knobs = knob_counts() if "day2" in only_lab else None
        log("lab estate: down (anything left), up from scratch")
        with lab_runs.bench_lab(log) as lab:
            deploy = lab_runs.first_deploy(lab, log)
            if "first-deploy" in only_lab:
                emit("first deploy: the lab estate from scratch", deploy)
            if "day2" in only_lab:
                emit("day 2", lab_runs.day2(lab, knobs, log))
            if "frontend" in only_lab:
                emit("frontend capacity (lab frontend, stand-in middleware)", lab_runs.frontend_capacity(lab, quick, log))
    if "scale" in only:
        emit("scale: evaluation under mocks", scale(quick))
    if "failover" in only:
        emit("failover (from the fault tests' records)", (figures.failover_section(OUT / "figures"), []))
    if "suites" in only:
        emit("suites (from their records)", (figures.suites_section(figures.load_json(OUT / "suite-times.json"),
                                                                    figures.load_json(OUT / "ci-time.json")), []))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="scale to 300 hosts, frontend runs to 1,600 connections and 800 long polls")
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    started = time.monotonic()
    print(f"ox-estate benchmarks, {time.strftime('%Y-%m-%d %H:%M %Z')}: {', '.join(only)}"
          f"{' (quick)' if a.quick else ''}\n", flush=True)
    run(only, a.quick)
    print(f"benchmarks took {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

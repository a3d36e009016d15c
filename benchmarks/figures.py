"""The pure parts of `python -m benchmarks`: figures from records, ratios, the table they print in.

Nothing here starts a process or touches a host, so tests/unit/test_bench_figures.py checks it all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.scale import slope
from lab.report import critical_path  # the one place the critical path is computed

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "lab" / "out"


@dataclass(frozen=True)
class Figure:
    """One printed row: a measured value, and optionally its ratio to a baseline beside it."""

    label: str
    value: float | int | str | None
    unit: str = ""
    baseline: str = ""  # what the ratio is taken against, e.g. "critical path 38.0 s"
    ratio: float | None = None
    note: str = ""


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    return None if a is None or not b else a / b


def _value(f: Figure) -> str:
    if f.value is None:
        return "-"
    if isinstance(f.value, float):
        text = f"{f.value:,.2f}" if abs(f.value) < 100 else f"{f.value:,.1f}"
    else:
        text = f"{f.value:,}" if isinstance(f.value, int) else str(f.value)
    return f"{text} {f.unit}".rstrip()


def format_section(title: str, figures: list[Figure], notes: list[str] = ()) -> str:
    """A titled table: label | value | ratio against baseline | note, columns aligned."""
    rows = [(f.label, _value(f), "" if f.ratio is None else f"x{f.ratio:.2f}",
             f"vs {f.baseline}" if f.baseline else "", f.note) for f in figures]
    widths = [max([len(r[i]) for r in rows] + [0]) for i in range(4)]
    lines = [f"== {title}"]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3].ljust(widths[3]), r[4]]
        lines.append(("  " + "  ".join(cells)).rstrip())
    lines += [f"  {n}" for n in notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- lab run records

def deploy_figures(record: dict) -> dict[str, float]:
    """From a lab run's record (lab/out/<stack>-up-record.json): makespan (the run's wall time),
    critical path (its steps' time, lab.report.critical_path), summed step time, steps run."""
    steps = {s["name"]: s for s in record["steps"] if s.get("host") and s.get("end") is not None}
    path = critical_path(steps)
    return {"makespan": float(record["duration"]),
            "critical": sum(s["end"] - s["start"] for s in path),
            "summed": sum(s["end"] - s["start"] for s in steps.values()),
            "steps": len(steps), "path_steps": len(path)}


def first_deploy_section(record: dict) -> list[Figure]:
    f = deploy_figures(record)
    return [
        Figure("steps run", f["steps"], note=f"critical path: {f['path_steps']} steps"),
        Figure("makespan", f["makespan"], "s"),
        Figure("critical path", f["critical"], "s"),
        Figure("summed step time", f["summed"], "s"),
        Figure("makespan / critical path", ratio(f["makespan"], f["critical"]), note="1.00 = no wait off the path"),
        Figure("speed-up over one after another", ratio(f["summed"], f["makespan"]),
               note="summed / makespan (the runbook's serial order)"),
    ]


def changed_steps(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """Steps (name -> script) a knob touches: updated (script differs), created, deleted."""
    return {"update": sum(1 for n in before.keys() & after.keys() if before[n] != after[n]),
            "create": len(after.keys() - before.keys()), "delete": len(before.keys() - after.keys())}


# --------------------------------------------------------------------------- records the tests write

def load_json(path: Path) -> dict | None:
    """A record, or None when there is none (or it is not JSON: a run cut off while writing)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


FAILOVER = (  # (record name, label, command that writes it)
    ("galera-writer-move", "Galera writer move (kill -9 of the writer)",
     ".venv/bin/python -m pytest tests/lab/test_database.py -k writer_fails_over"),
    ("gtid-address-move", "GTID floating address move (kill -9 of the holder)",
     ".venv/bin/python -m pytest tests/lab/test_lab_floating.py -k gtid_address_moves"),
    ("frontend-address-move", "frontend floating address move (Apache stopped)",
     ".venv/bin/python -m pytest tests/lab/test_lab_floating.py -k frontend_address_moves"),
)
# What the README promises for each (the tests assert these bounds).
FAILOVER_BOUNDS = {"galera-writer-move": 3.0, "gtid-address-move": 5.0, "frontend-address-move": 5.0}


def failover_section(figures_dir: Path) -> list[Figure]:
    rows = []
    for name, label, command in FAILOVER:
        doc = load_json(Path(figures_dir) / f"{name}.json")
        if doc is None:
            rows.append(Figure(label, None, note=f"no record yet: run {command}"))
            continue
        seconds = doc["figures"]["seconds"]
        bound = FAILOVER_BOUNDS[name]
        rows.append(Figure(label, float(seconds), "s", f"bound {bound:.0f} s", ratio(seconds, bound),
                           note=f"recorded {doc.get('recorded', '?')}"))
    return rows


UNIT_SELECTION, FULL_SELECTION = "tests/unit", "tests"


def suites_section(suite_times: dict | None, ci_time: dict | None) -> list[Figure]:
    """The unit suite's and the full suite's wall times (conftest.py's record), and CI's (.ci/run's)."""
    suite_times = suite_times or {}
    rows = []
    for selection, label, command in ((UNIT_SELECTION, "unit suite", ".venv/bin/python -m pytest tests/unit"),
                                      (FULL_SELECTION, "full suite (pytest tests)", ".venv/bin/python -m pytest tests")):
        entry = suite_times.get(selection)
        if entry is None or entry.get("filtered"):
            rows.append(Figure(label, None, note=f"no record yet: run {command}"))
        else:
            rows.append(Figure(label, float(entry["seconds"]), "s",
                               note=f"{entry['tests']} tests, exit {entry['exitstatus']}, {entry['finished']}"))
    if ci_time is None:
        rows.append(Figure("CI (.ci/run: setup + full suite)", None, note="no record yet: run bash .ci/run"))
    else:
        unit = rows[0].value
        rows.append(Figure("CI (.ci/run: setup + full suite)", float(ci_time["seconds"]), "s",
                           f"unit suite" if isinstance(unit, float) else "", ratio(ci_time["seconds"], unit),
                           note=f"exit {ci_time['exitstatus']}, {ci_time['finished']}"))
    return rows


# --------------------------------------------------------------------------- scale

def growth_exponent(xs: list[float], ys: list[float]) -> float | None:
    """The fitted exponent k of y ~ x^k (benchmarks.scale's log-log slope); None below 2 sizes."""
    return slope(xs, ys) if len(set(xs)) >= 2 else None


def scale_section(rows: list[dict], untuned: dict | None = None) -> list[Figure]:
    """One row per size with its ratio to the smallest size, then the fitted exponents; with
    `untuned` (the largest size with CPython's own collector settings), that row against it."""
    out = []
    if not rows:
        return out
    first = rows[0]
    for r in rows:
        x = r["hosts"] / first["hosts"]
        out.append(Figure(f"{r['hosts']:,} hosts: evaluation", float(r["cpu_seconds"]), "CPU s",
                          f"{first['hosts']} hosts (x{x:g} hosts)", ratio(r["cpu_seconds"], first["cpu_seconds"]),
                          note=f"wall {r['seconds']:.1f} s"))
        out.append(Figure(f"{r['hosts']:,} hosts: resources", r["resources"], "",
                          f"{first['hosts']} hosts", ratio(r["resources"], first["resources"])))
        out.append(Figure(f"{r['hosts']:,} hosts: peak memory", float(r["peak_mb"]), "MB",
                          f"{first['hosts']} hosts", ratio(r["peak_mb"], first["peak_mb"])))
    hosts = [r["hosts"] for r in rows]
    for key, label in (("cpu_seconds", "CPU s"), ("resources", "resources"), ("peak_mb", "peak MB")):
        k = growth_exponent(hosts, [r[key] for r in rows])
        out.append(Figure(f"growth exponent, {label}", None if k is None else round(k, 2),
                          note="y ~ hosts^k; 1 = linear"))
    tuned = next((r for r in rows if untuned and r["hosts"] == untuned["hosts"]), None)
    if tuned:
        out.append(Figure(f"{tuned['hosts']:,} hosts: evaluation, CPython's collector", float(untuned["cpu_seconds"]),
                          "CPU s", f"tuned {tuned['cpu_seconds']:.1f} s", ratio(untuned["cpu_seconds"],
                                                                            tuned["cpu_seconds"]),
                          note=f"peak {untuned['peak_mb']:,.0f} MB against {tuned['peak_mb']:,.0f} MB"))
    return out

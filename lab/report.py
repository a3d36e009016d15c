"""Read a lab run's record and print where the time went.

    .venv/bin/python -m lab.report [lab/out/lab-up-record.json]

Prints the wall time, the summed step time and their ratio (how much the steps overlapped), the
critical path (the chain of dependencies that ended last, each step with its own duration), and
the slowest steps. Ratios, not absolute seconds, are what compare across runs on a noisy machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "out" / "lab-up-record.json"


def critical_path(steps: dict[str, dict]) -> list[dict]:
    """From the step that ended last, follow the dependency that ended last, back to the start."""
    path = []
    current = max(steps.values(), key=lambda s: s["end"], default=None)
    while current is not None:
        path.append(current)
        deps = [steps[d] for d in current.get("dependencies", []) if d in steps]
        current = max(deps, key=lambda s: s["end"], default=None)
    return list(reversed(path))


def report(record: dict) -> str:
    steps = {s["name"]: s for s in record["steps"] if s.get("host") and s.get("end") is not None}
    busy = sum(s["end"] - s["start"] for s in steps.values())
    wall = record["duration"]
    ops = record.get("operations") or {}
    lines = [f"{record['stack']} {record['mode']}: {len(steps)} remote steps run, wall {wall:.1f} s, "
             f"summed step time {busy:.1f} s, overlap {busy / wall if wall else 0:.2f}x",
             "operations: " + ", ".join(f"{ops.get(op, 0)} {op}" for op in
                                         ("create", "update", "replace", "delete", "same"))]
    if not steps:
        return "\n".join(lines)
    path = critical_path(steps)
    on_path = sum(s["end"] - s["start"] for s in path)
    lines.append(f"critical path: {len(path)} steps, {on_path:.1f} s of step time ({on_path / wall if wall else 0:.0%} "
                 "of the wall time)")
    lines += [f"  {s['end'] - s['start']:7.2f} s  {s['name']}  ({s['host']})" for s in path]
    lines.append("slowest steps:")
    slowest = sorted(steps.values(), key=lambda s: s["end"] - s["start"], reverse=True)[:8]
    lines += [f"  {s['end'] - s['start']:7.2f} s  {s['name']}" for s in slowest]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT
    print(report(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

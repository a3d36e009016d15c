"""The pure parts of `python -m benchmarks` (benchmarks/figures.py): figures from a lab run's
record, the records the tests write, the growth fit, the table; and the benchmark's stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from benchmarks import figures
from benchmarks.figures import Figure, format_section

ROOT = Path(__file__).resolve().parents[2]


def _step(name, start, end, deps=(), host="10.0.0.1"):
    return {"name": name, "host": host, "start": start, "end": end, "dependencies": list(deps)}


# a -> b -> d on the path (d ends last, via b which ends after c); c runs beside b; w has no host
RECORD = {"duration": 10.0, "steps": [
    _step("a", 0.0, 2.0), _step("b", 2.0, 7.0, ["a"]), _step("c", 2.0, 5.0, ["a"]),
    _step("d", 7.5, 9.5, ["b", "c"]), {"name": "w", "host": None, "start": 0, "end": 0},
    _step("never", None, None)]}


def test_deploy_figures_follow_the_critical_path():
    f = figures.deploy_figures(RECORD)
    assert f == {"makespan": 10.0, "critical": 9.0, "summed": 12.0, "steps": 4, "path_steps": 3}
    rows = {r.label: r.value for r in figures.first_deploy_section(RECORD)}
    assert rows["makespan / critical path"] == pytest.approx(10 / 9)
    assert rows["speed-up over one after another"] == pytest.approx(1.2)


def test_changed_steps_counts_updates_creates_and_deletes():
    before = {"a": "x", "b": "y", "c": "z"}
    after = {"a": "x", "b": "y2", "d": "new"}
    assert figures.changed_steps(before, after) == {"update": 1, "create": 1, "delete": 1}
    assert figures.changed_steps(before, dict(before)) == {"update": 0, "create": 0, "delete": 0}


def test_growth_exponent_fits_powers_and_needs_two_sizes():
    xs = [10, 100, 300, 1000]
    assert figures.growth_exponent(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert figures.growth_exponent(xs, [x ** 2 for x in xs]) == pytest.approx(2.0)
    assert figures.growth_exponent([10], [5]) is None
    rows = figures.scale_section([{"hosts": 10, "resources": 100, "cpu_seconds": 1.0, "seconds": 1.5, "peak_mb": 100},
                                  {"hosts": 100, "resources": 1000, "cpu_seconds": 10.0, "seconds": 12, "peak_mb": 200}])
    by = {r.label: r for r in rows}
    assert by["100 hosts: resources"].ratio == pytest.approx(10)
    assert by["growth exponent, CPU s"].value == pytest.approx(1.0)
    assert by["growth exponent, peak MB"].value == pytest.approx(0.3, abs=0.01)


def test_failover_reads_records_and_names_the_command_when_absent(tmp_path):
    (tmp_path / "galera-writer-move.json").write_text(json.dumps(
        {"figures": {"seconds": 1.5}, "recorded": "2026-12-02T10:00:00+00:00"}))
    (tmp_path / "gtid-address-move.json").write_text("{cut off")  # a run killed while writing
    rows = {r.label.split(" (")[0]: r for r in figures.failover_section(tmp_path)}
    writer = rows["Galera writer move"]
    assert (writer.value, writer.ratio) == (1.5, 0.5)  # against the 3 s bound
    gtid = rows["GTID floating address move"]
    assert gtid.value is None and gtid.note.startswith("no record yet: run ") and "test_lab_floating.py" in gtid.note


def test_suites_skip_filtered_runs_and_compare_ci_with_the_unit_suite():
    times = {"tests/unit": {"seconds": 100.0, "tests": 900, "exitstatus": 0, "filtered": False, "finished": "t"},
             "tests": {"seconds": 50.0, "tests": 10, "exitstatus": 0, "filtered": True, "finished": "t"}}
    rows = figures.suites_section(times, {"seconds": 1500.0, "exitstatus": 0, "finished": "t"})
    assert [r.value for r in rows] == [100.0, None, 1500.0]
    assert rows[1].note == "no record yet: run .venv/bin/python -m pytest tests"
    assert rows[2].ratio == pytest.approx(15)
    assert [r.value for r in figures.suites_section(None, None)] == [None, None, None]


def test_the_table_aligns_values_and_puts_each_ratio_beside_its_baseline():
    text = format_section("t", [Figure("long label here", 38.6, "s", "critical path 38.0 s", 38.6 / 38.0, "n"),
                                Figure("x", 1234, "steps"), Figure("missing", None, note="no record yet: run y")],
                          ["a note"])
    lines = text.splitlines()
    assert lines[0] == "== t" and lines[-1] == "  a note"
    assert re.search(r"long label here\s+38\.60 s\s+x1\.02\s+vs critical path 38\.0 s\s+n$", lines[1])
    assert "1,234 steps" in lines[2] and lines[3].endswith("no record yet: run y")
    # values end in one column
    assert lines[1].index("38.60 s") + len("38.60 s") == lines[2].index("1,234 steps") + len("1,234 steps")


def test_the_bench_stack_is_the_lab_stack_but_for_addresses_and_names():
    lab = (ROOT / "stacks" / "Pulumi.lab.yaml").read_text().replace("10.213.0.", "10.215.0.")
    for name in ("db1", "db2", "db3", "db4", "db5", "mw1", "mw2", "mw3", "nfs1", "web1"):
        lab = re.sub(rf"\b{name}\b", f"b{name}", lab)
    bench = (ROOT / "stacks" / "Pulumi.lab-bench.yaml").read_text()
    assert yaml.safe_load(lab)["config"] == yaml.safe_load(bench)["config"]


def test_the_scale_estate_with_twenty_galera_clusters_is_a_valid_stack(ssh_key):
    """The issue's 1,000-host shape: 20 Galera clusters, each a userdb, 400 middleware nodes, 40
    frontends; the config model takes it as a stack config (each cluster its own three hosts)."""
    from benchmarks.scale import estate_shape, stack_config
    from components.core import config

    shape = estate_shape(1000, 40, 20)
    assert (shape["galera"], shape["mw"], shape["web"]) == (60, 400, 40)
    cfg = config.parse(stack_config(1000, ssh_key, 40, 20), {"sshPrivateKey"})
    clusters = cfg.database.galera_clusters
    assert len(clusters) == 20 and len({n for c in clusters for n in c.nodes}) == 60
    assert cfg.database.configdb == "users1" and len(cfg.database.userdbs) == 22


def test_the_untuned_collector_row_stands_beside_the_tuned_one():
    rows = [{"hosts": 10, "resources": 100, "cpu_seconds": 1.0, "seconds": 1.2, "peak_mb": 80.0},
            {"hosts": 100, "resources": 900, "cpu_seconds": 8.0, "seconds": 9.0, "peak_mb": 180.0}]
    untuned = {"hosts": 100, "resources": 900, "cpu_seconds": 12.0, "seconds": 13.0, "peak_mb": 170.0}
    last = figures.scale_section(rows, untuned)[-1]
    assert (last.label, last.value, last.ratio) == ("100 hosts: evaluation, CPython's collector", 12.0, 1.5)
    assert last.baseline == "tuned 8.0 s" and "170 MB against 180 MB" in last.note
    assert not [f for f in figures.scale_section(rows) if "collector" in f.label]

"""The smallest lab estate end to end: the real program, run over SSH on two lab hosts.

`python -m lab up --stack lab-pair` creates the hosts, runs __main__.py with every remote
command executed for real, and verifies; `down` removes everything again.
"""

import pytest

from estate import lab_estate, requires_lab

pytestmark = requires_lab


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with lab_estate("lab-pair", "10.215.0.0/24", "oxlabp0", tmp_path_factory.mktemp("lab-pair")) as estate:
        estate.first_up = estate.up()
        estate.first_record = estate.record()
        yield estate


def test_up_verifies(pair):
    out = pair.first_up.stdout
    assert "verify: " in out and "FAIL" not in out, out[-3000:]
    for check in ("ssh pdb1", "ssh pmw1", "packages present", "facts -> /etc/hosts chained"):
        assert f"ok    {check}" in out


def test_facts_stdout_reached_the_next_step(pair):
    """The hostname each host printed in its facts step is in every host's /etc/hosts block."""
    block = pair.run_on("pmw1", "sed -n '/^# BEGIN ox-estate/,/^# END ox-estate/p' /etc/hosts")
    assert "10.215.0.11 pdb1" in block and "10.215.0.21 pmw1" in block
    facts = pair.state["outputs"]["hostFacts"]
    assert facts["pdb1"]["hostname"] == "pdb1" and facts["pdb1"]["packages"]["mariadb-server"]


def test_record_has_every_step_with_timings_and_dependencies(pair):
    steps = {s["name"]: s for s in pair.first_record["steps"]}
    assert steps["pmw1-hosts-file"]["exitCode"] == 0
    # Every hosts-file step waits for every facts step through one waypoint (components/core/baseline.py).
    assert "ox-baseline-facts-ready" in steps["pmw1-hosts-file"]["dependencies"]
    assert "pdb1-facts" in steps["ox-baseline-facts-ready"]["dependencies"]
    assert steps["pmw1-hosts-file"]["start"] >= steps["ox-baseline-facts-ready"]["end"] >= steps["pdb1-facts"]["end"]


def test_standalone_db_and_grants_are_real(pair):
    grants = pair.run_on("pdb1", "mariadb -N -e \"SHOW GRANTS FOR 'openexchange'@'10.215.0.21'\"")
    assert "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, SHOW DATABASES, " \
           "CREATE TEMPORARY TABLES, LOCK TABLES, SHOW VIEW ON *.* TO `openexchange`@`10.215.0.21`" in grants
    assert pair.run_on("pdb1", "mariadb -N -e 'SELECT @@server_id, @@character_set_server'") == "1\tutf8mb4"


def test_second_up_runs_nothing_and_converge_finds_the_work_done(pair):
    """An unchanged `up` runs no command; a converge re-runs the probe-and-repair steps, which
    find everything in place: no row lost, no datadir replaced."""
    inode = pair.run_on("pdb1", "stat -c %i /var/lib/mysql")
    pair.run_on("pdb1", "mariadb -e 'CREATE DATABASE IF NOT EXISTS keep; CREATE TABLE IF NOT EXISTS keep.t (i INT);"
                        " DELETE FROM keep.t; INSERT INTO keep.t VALUES (1),(2),(3)'")
    pair.up()
    assert pair.record()["executed"] == 0
    result = pair.up("--converge")
    assert "FAIL" not in result.stdout
    assert pair.record()["executed"] > 0 and pair.record()["operations"]["replace"] == 0
    assert pair.run_on("pdb1", "mariadb -N -e 'SELECT COUNT(*) FROM keep.t'") == "3"
    assert pair.run_on("pdb1", "stat -c %i /var/lib/mysql") == inode

"""The whole lab estate in one run: Galera + GTID pair + three OX middleware nodes (stand-ins) +
NFS + Apache, then a second run that must add nothing, then destroy.

Runs stack lab-full: the README's lab stack on its own subnet, so it never meets a lab someone
started by hand.
"""

import re

import pytest
import yaml

from estate import ROOT, lab_estate, requires_lab

pytestmark = requires_lab


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with lab_estate("lab-full", "10.218.0.0/24", "oxlabf0", tmp_path_factory.mktemp("lab-full")) as e:
        e.first_up = e.up()
        yield e


HOSTS = ["db1", "db2", "db3", "db4", "db5", "mw1", "mw2", "mw3", "nfs1", "web1"]


def test_full_stack_is_the_lab_stack_but_for_addresses_and_names():
    lab = (ROOT / "stacks" / "Pulumi.lab.yaml").read_text().replace("10.213.0.", "10.218.0.")
    for name in HOSTS:
        lab = re.sub(rf"\b{name}\b", f"f{name}", lab)
    full = (ROOT / "stacks" / "Pulumi.lab-full.yaml").read_text()
    assert yaml.safe_load(lab)["config"] == yaml.safe_load(full)["config"]


def test_estate_comes_up_in_one_run_and_verifies(estate):
    out = estate.first_up.stdout
    summary = re.search(r"verify: (\d+)/(\d+) checks passed", out)
    assert summary and summary.group(1) == summary.group(2), out[-5000:]
    for check in ("galera row fdb1 -> fdb3", "gtid row fdb4 -> fdb5", "writes through 3307 land on one node",
                  "ox fmw2 session route", "configdb: one server", "configdb: one filestore",
                  "registration chain: slave -M master id", "nfs export fmw1 -> fmw3", "nfs files owned by open-xchange",
                  "apache: cookie .OX2 sticks", "apache: ;jsessionid=.OX3 sticks", "apache: new sessions spread",
                  "apache: SOAP and balancer-manager refused from fmw1"):
        assert f"ok    {check}" in out, check


def test_registration_ids_chain(estate):
    outputs = estate.state["outputs"]
    ids = {k: int(v) for k, v in outputs["registeredDatabaseIds"].items()}
    assert int(outputs["serverId"]) == 1 and int(outputs["filestoreId"]) == 2
    assert ids == {"oxdb_galera": 3, "oxdb_galera_read": 4, "oxdb_gtid": 5, "oxdb_gtid_read": 6}
    pool = estate.run_on("fdb1", "mariadb -N -e 'SELECT read_db_pool_id, write_db_pool_id FROM configdb.db_cluster "
                                "ORDER BY cluster_id'")
    assert pool.splitlines() == ["4\t3", "6\t5"]  # each read instance registered with -M <its master's id>


def _configdb_counts(estate) -> list[str]:
    return estate.run_on("fdb1", "mariadb -N -e 'SELECT COUNT(*) FROM configdb.server; SELECT COUNT(*) FROM "
                                 "configdb.filestore; SELECT COUNT(*) FROM configdb.db_pool; SELECT COUNT(*) FROM "
                                 "configdb.context'").split()


def test_second_run_runs_nothing_and_registers_nothing(estate):
    """Under the engine an unchanged step never runs again: a second `up` runs 0 commands."""
    ids = estate.state["outputs"]["registeredDatabaseIds"]
    estate.up()
    record = estate.record()
    assert record["executed"] == 0 and record["sshConnections"] == 0
    assert record["operations"]["create"] == record["operations"]["update"] == 0
    assert _configdb_counts(estate) == ["1", "1", "4", "1"]
    assert estate.state["outputs"]["registeredDatabaseIds"] == ids


def _running(estate, host: str, pidfile: str) -> bool:
    return estate.run_on(host, f"test -s {pidfile} && kill -0 $(cat {pidfile}) && echo yes || echo no") == "yes"


def test_plain_up_repairs_nothing_and_converge_repairs_a_dead_galera_node_and_ox_node(estate):
    """A crashed mariadbd and a killed OX node: nothing in the config changed, so `up` runs nothing
    (as `pulumi up` would); `up --converge` re-runs the probe-and-repair steps and brings both back.
    On the way, the OX node's sessions fail over through Apache."""
    from collections import Counter

    from lab.verify import routes_through

    estate.up()  # the stack's own config, whatever an earlier test did
    base = estate.state["outputs"]["frontendUrls"][0].removesuffix("/appsuite/")
    shell = estate.shell()
    try:
        assert routes_through(shell, "fdb1", f"{base}/appsuite/api/apps", 10, "42.OX2") == Counter({"OX2": 10})
        # Processes the lab started, killed by their own pid files.
        estate.run_on("fmw2", "kill -9 $(cat /run/open-xchange.pid)")
        estate.run_on("fdb2", "kill -9 $(cat /run/mysqld/mysqld.pid)")
        moved = routes_through(shell, "fdb1", f"{base}/appsuite/api/apps", 20, "42.OX2")
    finally:
        shell.close()
    assert sum(moved.values()) == 20 and set(moved) <= {"OX1", "OX3"}, moved

    plain = estate.lab("up")  # its verify fails: the two nodes are down
    assert estate.record()["executed"] == 0
    assert "FAIL" in plain.stdout
    assert not _running(estate, "fdb2", "/run/mysqld/mysqld.pid")
    assert not _running(estate, "fmw2", "/run/open-xchange.pid")

    converged = estate.lab("up", "--converge")
    record = estate.record()
    ops = {r["name"]: r["op"] for r in record["plan"]}
    assert set(ops.values()) <= {"update", "same"} and record["operations"]["update"] > 0
    assert ops["ox-galera-fdb2-join"] == "update" and ops["ox-mw-fmw2-configure"] == "update"
    assert not [n for n, o in ops.items() if o == "update" and n.endswith(("-install", "-facts", "-packages"))]
    assert _running(estate, "fdb2", "/run/mysqld/mysqld.pid")
    assert _running(estate, "fmw2", "/run/open-xchange.pid")
    status = estate.run_on("fdb2", "mariadb -N -e \"SHOW STATUS WHERE Variable_name IN "
                                   "('wsrep_cluster_size','wsrep_local_state_comment')\"")
    assert dict(line.split("\t") for line in status.splitlines()) == {
        "wsrep_cluster_size": "3", "wsrep_local_state_comment": "Synced"}, status
    assert _configdb_counts(estate) == ["1", "1", "4", "1"]  # converge registered nothing new
    # Apache skips a member for retry=60 s after it failed, so only the routing checks may fail now.
    failed = [ln for ln in converged.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert all("apache:" in ln for ln in failed), failed

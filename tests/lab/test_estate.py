"""The whole lab estate in one run: Galera + GTID pair + three OX middleware nodes (stand-ins) +
NFS + Apache, then a second run that must add nothing, then destroy.

Runs stack lab-full: the README's lab stack on its own subnet, so it never meets a lab someone
started by hand.
"""

import re
import time

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


def test_with_registration_only_ox_own_db_pool_keeps_a_password_in_the_db_files(estate):
    """Issue 9, with the registration chain run (lab-db has none): account statements carry hashes,
    so no binlog, relay log or galera.cache holds the root, SST, replication or any other password.
    What remains is by design: OX's registerdatabase stores the userdb login (the configdb password)
    in configdb.db_pool, which the middleware reads to connect, so the configdb's Galera nodes hold
    it in their data files and write-set cache; and the GTID replica's login in master.info."""
    ssh = estate.shell()
    try:
        found = estate.plaintext_passwords(["fdb1", "fdb2", "fdb3", "fdb4", "fdb5"], ssh)
        pool = ssh.run("fdb1", "mariadb -N -e 'SELECT COUNT(*) FROM configdb.db_pool'")[1]
    finally:
        ssh.close()
    print(f"\nplaintext generated passwords in DB files with registration: {found}")
    for host in ("fdb1", "fdb2", "fdb3"):  # the db_pool rows: in InnoDB's files and the write-set cache
        assert {n for n, _, _ in found[host]} <= {"configdb-password"}, found[host]
        assert not [f for _, _, f in found[host] if re.search(r"-bin\.|relay|/var/log/", f)], found[host]
    assert [(n, f) for n, _, f in found["fdb4"]] == []  # the master-slave source keeps no login
    assert [(n, f) for n, _, f in found["fdb5"]] == [("replication-password", "/var/lib/mysql/master.info")]
    assert int(pool) == 4  # oxdb_galera, oxdb_gtid and their read instances: the rows that hold it


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
    # Leave the estate as the other tests expect it: OX2's sessions routed to OX2 again.
    shell = estate.shell()
    try:
        deadline = time.monotonic() + 90
        while routes_through(shell, "fdb1", f"{base}/appsuite/api/apps", 4, "42.OX2") != Counter({"OX2": 4}):
            assert time.monotonic() < deadline, "Apache did not route to OX2 again within 90 s"
            time.sleep(2)
    finally:
        shell.close()


def _changed(record: dict) -> dict[str, str]:
    """step name -> operation, for every resource that is not unchanged."""
    return {r["name"]: r["op"] for r in record["plan"] if r["op"] != "same"}


def _soap_from(estate, host: str) -> str:
    """SOAP on the frontend's admin listener, as `host` sees it: 200, or 000 when nothing answers
    (fweb1's firewall drops what is not from an admin network)."""
    from components.frontend import ADMIN_PORT

    web = estate.state["outputs"]["frontendUrls"][0].removesuffix("/appsuite/")
    return estate.run_on(host, f"curl -s --max-time 5 -o /dev/null -w '%{{http_code}}' {web}:{ADMIN_PORT}/webservices/x",
                         check=False)


def test_a_removed_admin_network_is_refused_after_up_as_previewed(estate):
    """fdb1 (10.218.0.11) is in the admin network 10.218.0.0/28; narrowed to /29 it is not. The
    change reaches Apache (its start step reloads it) and fweb1's firewall (which then drops fdb1
    on the admin listener), and `up` does what `preview` planned."""
    narrow = ("--set", "frontend.adminNetworks=[10.218.0.0/29]")
    estate.up()
    assert _soap_from(estate, "fdb1") == "200"
    planned = estate.preview(*narrow)
    assert planned["sshConnections"] == 0
    assert set(_changed(planned)) >= {"ox-web-fweb1-configure", "ox-web-fweb1-start"}
    assert all(n.startswith(("ox-web-", "ox-firewall-fweb1-")) and op == "update"
               for n, op in _changed(planned).items()), planned
    try:
        estate.up(*narrow)
        assert _changed(estate.record()) == _changed(planned)
        assert _soap_from(estate, "fdb1") == "000"
    finally:
        estate.up()
    assert _soap_from(estate, "fdb1") == "200"


def test_filestore_size_and_max_contexts_reach_the_configdb(estate):
    def filestore() -> list[str]:
        return estate.run_on("fdb1", "mariadb -N -e 'SELECT size DIV 1048576, max_context FROM configdb.filestore'"
                             ).split()

    estate.up()
    before = filestore()
    try:
        estate.up("--set", "filestore.sizeMb=2345", "--set", "filestore.maxContexts=678")
        assert _changed(estate.record()) == {"ox-registration-filestore": "update"}
        assert filestore() == ["2345", "678"]
    finally:
        estate.up()
    assert filestore() == before
    assert estate.state["outputs"]["filestoreId"] == 2  # the same filestore, changed in place


def test_renaming_the_server_unregisters_nothing(estate):
    """A rename is an update: the new name is registered (or adopted); the old server, which the
    context lives on, stays registered. Nothing is replaced, so no undo runs."""
    def servers() -> list[str]:
        return estate.run_on("fdb1", "mariadb -N -e 'SELECT name FROM configdb.server ORDER BY server_id'").split()

    estate.up()
    assert servers() == ["oxserver"]
    try:
        renamed = estate.lab("up", "--set", "middleware.serverName=oxrenamed")
        ops = _changed(estate.record())
        assert "ox-registration-server" in ops, renamed.stdout[-2000:]
        assert set(ops.values()) == {"update"}, ops  # no replace, no delete: no unregister ran
        assert servers() == ["oxserver", "oxrenamed"]
        assert _configdb_counts(estate)[3] == "1"  # the context is still there
    finally:
        estate.lab("up")  # back to oxserver, adopted; oxrenamed stays until an operator removes it
        assert servers() == ["oxserver", "oxrenamed"]
        # The test's own clean-up, as an operator would after a rename (it holds no context).
        estate.run_on("fdb1", "mariadb -e \"DELETE FROM configdb.server WHERE name = 'oxrenamed'\"")
    estate.up()


MW = ("fmw1", "fmw2", "fmw3")
HOSTS_F = ("fdb1", "fdb2", "fdb3", "fdb4", "fdb5", "fmw1", "fmw2", "fmw3", "fnfs1", "fweb1")
GALERA_START = {"ox-galera-fdb1-bootstrap", "ox-galera-fdb2-join", "ox-galera-fdb3-join"}
GALERA_CONF = {f"ox-galera-fdb{i}-configure" for i in (1, 2, 3)}
GTID_CONF_START = {f"ox-gtid-fdb{i}-{p}" for i in (4, 5) for p in ("configure", "start")}
WEB = {f"ox-web-fweb1-{p}" for p in ("configure", "start", "check")}
NEW_NODE = ("--set", "hosts[10]={name: fmw4, address: 10.218.0.24}",
            "--set", "middleware.nodes[3]={host: fmw4, jkroute: OX4}")


def _updates(*groups) -> dict[str, str]:
    return {n: "update" for g in groups for n in g}


# knob -> (--set arguments, every step that is not unchanged, with its operation)
MATRIX = {
    # wsrep.cnf changes; each start step carries its node's config digest (the rolling chain)
    "galera sstMethod": (("--set", "database.galera.sstMethod=rsync"), _updates(GALERA_CONF, GALERA_START)),
    "tuning maxConnections": (("--set", "database.tuning.maxConnections=333"),
                              _updates(GALERA_CONF, GALERA_START, GTID_CONF_START)),
    # fweb1's firewall admits the admin listener (:8088) from the admin networks only.
    "admin network": (("--set", "frontend.adminNetworks=[10.218.0.0/29]"),
                      _updates(WEB, {"ox-firewall-fweb1-nftables"})),
    "frontend maxConnections": (("--set", "frontend.maxConnections=512"), _updates(WEB)),
    "filestore sizeMb": (("--set", "filestore.sizeMb=3000"), _updates({"ox-registration-filestore"})),
    "context quotaMb": (("--set", "middleware.firstContext.quotaMb=2048"), _updates({"ox-registration-context"})),
    "servermemoryMb": (("--set", "middleware.servermemoryMb=2048"), _updates({f"ox-mw-{h}-configure" for h in MW})),
    # Its own steps are created; the read check moves to it (a check has no undo); every host's
    # /etc/hosts, the other nodes' Hazelcast members, the balancer, the NFS export and the
    # openexchange grants update. The database configure/start steps show as updates only in the
    # preview: their config is rendered from the aggregate facts, unknown while fmw4's facts step
    # is new (a real up finds them unchanged).
    "new middleware node": (NEW_NODE, {
        # The firewalls of every host with a port open to OX nodes admit fmw4 (not fweb1's).
        **_updates({f"ox-firewall-{h}-nftables" for h in HOSTS_F if h != "fweb1"}),
        **_updates({f"{h}-hosts-file" for h in HOSTS_F}, {f"ox-mw-{h}-configure" for h in MW}, WEB,
                   {"ox-fs-fnfs1-export", "ox-galera-fdb1-ox-grants", "ox-gtid-fdb4-ox-grants"},
                   GALERA_CONF, GALERA_START, GTID_CONF_START),
        **{n: "create" for n in ("ox-firewall-fmw4-nftables", "fmw4-facts", "fmw4-hosts-file", "ox-dbproxy-fmw4-haproxy", "ox-fs-fmw4-mount",
                                 "ox-fs-fmw4-read-check", "ox-mw-fmw4-configure", "ox-mw-fmw4-ox-user",
                                 "ox-mw-fmw4-packages")},
        "ox-fs-fmw3-read-check": "delete"}),
}


@pytest.mark.parametrize("knob", sorted(MATRIX))
def test_single_knob_matrix_plans_exactly_its_steps_and_replaces_nothing(estate, knob):
    """One knob changed against the running estate, planned by `preview` (no SSH): exactly the
    expected steps change, as updates or, for new things, creates; nothing is replaced, and
    nothing with an undo is deleted, so no undo can run."""
    args, expected = MATRIX[knob]
    estate.up()
    plan = estate.preview(*args)
    changed = _changed(plan)
    print(f"\n{knob}: {len(changed)} steps: {sorted(changed)}")
    assert plan["sshConnections"] == 0
    assert {r["name"]: r["op"] for r in plan["plan"]
            if r["op"] != "same" and r["type"] == "command:remote:Command"} == expected
    assert "replace" not in changed.values(), changed
    assert not [r["name"] for r in plan["plan"] if r["op"] == "delete" and r["hasDelete"]]


def test_converge_and_a_rotated_ssh_key_update_and_never_replace(estate, tmp_path):
    """Converge updates exactly the probe-and-repair steps; a rotated SSH key updates the steps
    on every host (the connection is an input, not a trigger) and replaces none."""
    import subprocess

    estate.up()
    converge = _changed(estate.preview("--converge"))
    assert set(converge.values()) == {"update"}
    assert {n.rsplit("-", 1)[-1] for n in converge} >= {"bootstrap", "join", "verify", "haproxy", "clustercheck",
                                                         "configure", "mount", "export", "start", "check", "server"}
    assert not [n for n in converge if n.endswith(("-install", "-facts", "-hosts-file", "-initconfigdb"))]
    key = tmp_path / "rotated"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    rotated = estate.preview("--ssh-key", str(key))
    assert rotated["operations"]["replace"] == rotated["operations"]["delete"] == 0
    commands = [r for r in rotated["plan"] if r["type"] == "command:remote:Command"]
    assert commands and all(r["op"] == "update" for r in commands)

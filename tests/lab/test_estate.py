"""The whole lab estate in one run: Galera + GTID pair + three OX middleware nodes (stand-ins) +
NFS + Apache, then a second run that must add nothing, then destroy.

Runs stack lab-full: the README's lab stack on its own subnet, so it never meets a lab someone
started by hand.
"""

import json
import re
import threading
import time
from collections import Counter

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
    from components.web.frontend import ADMIN_PORT

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
# A node's config digest reaches its recovery probe (and so the recover step), its place in the
# bootstrap/join chain, and the writer-last pass (restart-last).
GALERA_START = {"ox-galera-fdb1-bootstrap", "ox-galera-fdb2-join", "ox-galera-fdb3-join"} | {
    f"ox-galera-fdb{i}-{p}" for i in (1, 2, 3) for p in ("probe", "recover", "restart-last")}
GALERA_CONF = {f"ox-galera-fdb{i}-configure" for i in (1, 2, 3)}
GTID_CONF_START = {f"ox-gtid-fdb{i}-{p}" for i in (4, 5) for p in ("configure", "start")}
WEB = {f"ox-web-fweb1-{p}" for p in ("configure", "start", "check")}
# The middleware's rolling restart: per node, drained at fweb1, restarted, readmitted.
ROLL = {f"ox-mwroll-{s}" for h in MW for s in (f"fweb1-drain-{h}", f"{h}-restart", f"fweb1-readmit-{h}")}
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
    # Every node's configure writes it at once; the restarts run one node at a time (ROLL).
    "servermemoryMb": (("--set", "middleware.servermemoryMb=2048"),
                       _updates({f"ox-mw-{h}-configure" for h in MW}, ROLL)),
    # A runtime drain: the site (status=+N), Apache reloaded, and fmw1's readmit; nothing restarts.
    "drained node": (("--set", "middleware.nodes[0].drained=true"),
                     _updates(WEB, {"ox-mwroll-fweb1-readmit-fmw1"})),
    # Its own steps are created; the read check moves to it (a check has no undo); every host's
    # /etc/hosts, the other nodes' Hazelcast members (written, never restarted: no ROLL step of
    # theirs changes), the balancer, the NFS export and the
    # openexchange grants update. The database configure/start steps stay the same, in the preview
    # too: each server's config is rendered from its own host's facts, not from every host's
    # (which include fmw4's, unknown while its facts step is new).
    "new middleware node": (NEW_NODE, {
        # The firewalls of every host with a port open to OX nodes admit fmw4 (not fweb1's).
        **_updates({f"ox-firewall-{h}-nftables" for h in HOSTS_F if h != "fweb1"}),
        **_updates({f"{h}-hosts-file" for h in HOSTS_F}, {f"ox-mw-{h}-configure" for h in MW}, WEB,
                   {"ox-fs-fnfs1-export", "ox-galera-fdb1-ox-grants", "ox-gtid-fdb4-ox-grants"}),
        **{n: "create" for n in ("ox-firewall-fmw4-nftables", "fmw4-facts", "fmw4-hosts-file", "ox-dbproxy-fmw4-haproxy", "ox-fs-fmw4-mount",
                                 "ox-fs-fmw4-read-check", "ox-mw-fmw4-configure", "ox-mw-fmw4-ox-user",
                                 "ox-mw-fmw4-packages", "ox-mwroll-fweb1-drain-fmw4", "ox-mwroll-fmw4-restart",
                                 "ox-mwroll-fweb1-readmit-fmw4")},
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


# --- Day 2: converge re-runs on a populated estate, drain, rolling restart (issue 10) ---

USERS = 10


def _up(estate, *args: str):
    """`lab up` without the lab's full verify: these tests check what they are about themselves,
    and the verify's minute per run would multiply (the full one runs in the tests above)."""
    return estate.up("--no-verify", *args)


def _userdb_schema(estate) -> str:
    schemas = estate.run_on("fdb1", "mariadb -N -e \"SHOW DATABASES LIKE 'oxdb\\_galera\\_%'\"").split()
    assert len(schemas) == 1, schemas  # context 1's schema, created by createcontext
    return schemas[0]


def _row_counts(estate) -> dict[str, int]:
    """Rows in every configdb table and in the userdb's user tables, by table."""
    schema = _userdb_schema(estate)
    tables = estate.run_on("fdb1", "mariadb -N -e \"SELECT table_name FROM information_schema.tables "
                                   "WHERE table_schema = 'configdb' ORDER BY table_name\"").split()
    names = [f"configdb.{t}" for t in tables] + [f"{schema}.user", f"{schema}.login2user"]
    sql = " UNION ALL ".join(f"SELECT '{n}', COUNT(*) FROM {n}" for n in names)
    rows = estate.run_on("fdb1", f'mariadb -N -e "{sql}"').splitlines()
    return {name: int(count) for name, count in (r.split("\t") for r in rows)}


def _populate(estate) -> None:
    """USERS users in context 1, made by the (stand-in) createuser as an operator would; the
    context admin password (from the lab state) only on stdin."""
    password = next(r["result"] for urn, r in estate.state["random"].items()
                    if urn.endswith("::ox-context-admin-password"))
    script = ("read -r pw; for i in $(seq %d); do ADMIN_PASSWORD=$pw NEW_USER_PASSWORD=Lab-user-pw1 "
              "/opt/open-xchange/sbin/createuser -c 1 -A oxadmin -u converge-user$i -d \"Converge $i\" -g Converge "
              "-s User$i -e converge-user$i@lab.example; done" % USERS)
    shell = estate.shell()
    try:
        code, out, err = shell.run("fmw1", script, stdin=password + "\n", timeout=120)
    finally:
        shell.close()
    assert code == 0 and out.count("created") == USERS, (out, err)


def test_five_converges_on_a_populated_estate_add_no_row_and_register_nothing_twice(estate):
    """`up --converge` re-runs every probe-and-repair step, the registrations included (each adopts
    what is there). Five in a row on an estate with users: every configdb table and the userdb's
    user tables keep their row counts, and the server, filestore, databases and context stay
    registered once, with the same ids."""
    _up(estate)
    if _row_counts(estate)[f"{_userdb_schema(estate)}.user"] < USERS:
        _populate(estate)
    ids = {k: estate.state["outputs"][k] for k in ("serverId", "filestoreId", "registeredDatabaseIds", "contextId")}
    before = _row_counts(estate)
    seconds, updated = [], []
    for _ in range(5):
        started = time.monotonic()
        _up(estate, "--converge")
        seconds.append(round(time.monotonic() - started, 1))
        record = estate.record()
        assert set(r["op"] for r in record["plan"]) <= {"update", "same"}, _changed(record)
        updated.append(record["operations"]["update"])
    after = _row_counts(estate)
    verified = estate.lab("verify")
    assert verified.returncode == 0, verified.stdout[-3000:]
    registered = dict(zip(("server", "filestore", "db_pool", "context"), map(int, _configdb_counts(estate))))
    print(f"\nrows before the five converges: {sum(before.values())} {before}"
          f"\nrows after:                     {sum(after.values())} {after}"
          f"\nregistrations after: {registered}; steps updated per converge: {updated}; seconds: {seconds}")
    assert before[f"{_userdb_schema(estate)}.user"] >= USERS + 1  # the users and the context admin
    assert after == before
    assert registered == {"server": 1, "filestore": 1, "db_pool": 4, "context": 1}
    assert {k: estate.state["outputs"][k] for k in ids} == ids


def _sessions(shell, base: str, cookie: str, count: int) -> Counter:
    from lab.verify import routes_through

    return routes_through(shell, "fdb1", f"{base}/appsuite/api/apps", count, cookie)


def _new_sessions(shell, base: str, members: set[str]) -> Counter:
    """New sessions in batches until each of `members` got one (byrequests counts sticky requests
    too, so one batch after skewed sticky traffic can miss a member; lab/verify.py)."""
    from lab.verify import new_sessions

    return new_sessions(shell, "fdb1", f"{base}/appsuite/api/apps", members)


def test_a_drained_node_keeps_its_sessions_takes_no_new_ones_and_undrain_restores_it(estate):
    """middleware.nodes[0].drained: balancer-manager's Drain on fweb1 at runtime (Apache reloads
    the site, which carries status=+N; nothing restarts): OX1's sticky sessions stay on OX1, new
    sessions go to OX2 and OX3 only. Cleared, OX1 takes new sessions again."""
    _up(estate)
    base = estate.state["outputs"]["frontendUrls"][0].removesuffix("/appsuite/")
    shell = estate.shell()
    try:
        before = _new_sessions(shell, base, {"OX1", "OX2", "OX3"})
        assert set(before) == {"OX1", "OX2", "OX3"}, before
        apache = estate.run_on("fweb1", "cat /var/run/apache2/apache2.pid")
        try:
            _up(estate, "--set", "middleware.nodes[0].drained=true")
            changed = _changed(estate.record())
            assert changed == {n: "update" for n in (*WEB, "ox-mwroll-fweb1-readmit-fmw1")}, changed
            start = next(c for u, c in estate.state["commands"].items() if u.endswith("::ox-web-fweb1-start"))
            assert json.loads(start["stdout"])["action"] == "reload"  # graceful: a site change, not the MPM
            assert estate.run_on("fweb1", "cat /var/run/apache2/apache2.pid") == apache
            kept = _sessions(shell, base, "4711.OX1", 30)
            fresh = _new_sessions(shell, base, {"OX2", "OX3"})
            others = _sessions(shell, base, "4712.OX2", 10)
        finally:
            _up(estate)
        restored = _new_sessions(shell, base, {"OX1", "OX2", "OX3"})
        kept_after = _sessions(shell, base, "4711.OX1", 10)
    finally:
        shell.close()
    print(f"\ndrain fmw1: OX1 sessions kept on OX1 {kept.get('OX1', 0)}/30, moved {30 - kept.get('OX1', 0)}; "
          f"new sessions while drained {dict(fresh)}; OX2 sessions {dict(others)}; "
          f"new sessions before {dict(before)}, after undrain {dict(restored)}")
    assert kept == Counter({"OX1": 30})
    assert "OX1" not in fresh and set(fresh) == {"OX2", "OX3"}, fresh
    assert others == Counter({"OX2": 10})
    assert set(restored) == {"OX1", "OX2", "OX3"}, restored
    assert kept_after == Counter({"OX1": 10})


def _windows(record: dict, started: float) -> dict[str, tuple[float, float]]:
    """jkroute -> (from, to) epoch seconds in which its node was out: its drain's start to its
    readmit's end. The record's start is whole seconds: the window is widened by that second."""
    steps = {s["name"]: s for s in record["steps"] if s["start"] is not None}
    return {f"OX{h[-1]}": (started + steps[f"ox-mwroll-fweb1-drain-{h}"]["start"],
                           started + 1 + steps[f"ox-mwroll-fweb1-readmit-{h}"]["end"]) for h in MW}


def test_a_rolling_middleware_restart_under_session_load_moves_only_the_restarting_nodes_sessions(estate):
    """servermemoryMb changed: every node's configure writes it at once, then one node after the
    other is drained and disabled at fweb1, restarted, checked and readmitted. Under a load of
    sticky sessions on every node plus new sessions, no request fails, and a session changes
    route only while its own node is out (it had no live node to stay on)."""
    from datetime import datetime

    _up(estate)
    base = estate.state["outputs"]["frontendUrls"][0].removesuffix("/appsuite/")
    script = (ROOT / "tests" / "lab" / "session_load.py").read_text()
    stop = "/tmp/ox-estate-session-load.stop"
    estate.run_on("fdb1", f"rm -f {stop}")
    load_shell, result = estate.shell(), {}

    def load():
        # The script on stdin into a file first: python3 - would read the load's own stdin.
        result["out"] = load_shell.run("fdb1", f"f=$(mktemp); cat >\"$f\"; python3 \"$f\" {base}/appsuite/api/apps 4 "
                                                f"{stop} 240 OX1,OX2,OX3; rm -f \"$f\"", stdin=script, timeout=300)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(2)  # a few rounds before the change
        _up(estate, "--set", "middleware.servermemoryMb=2048")
        record = estate.record()
        time.sleep(2)  # and a few after
    finally:
        estate.run_on("fdb1", f"touch {stop}")
        worker.join(timeout=60)
        load_shell.close()
    try:
        assert not worker.is_alive()
        code, out, err = result["out"]
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        started = datetime.strptime(record["started"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        windows = _windows(record, started)
        changed = _changed(record)
        order = [s["hostName"] for s in sorted(record["steps"], key=lambda s: s["start"] or 0)
                 if s["name"].endswith("-restart") and s["start"] is not None]
        restarted = [json.loads(s)["action"] for s in (
            estate.state["commands"][r["urn"]]["stdout"] for r in record["steps"] if r["name"].endswith("-restart"))]
    finally:
        _up(estate)  # servermemoryMb back: one more rolling restart
    failures = [r for r in rows if r["route"] == "error" or r["code"] != 200]
    moved = [r for r in rows if r["cookie"] and r["route"] != r["cookie"]]
    unexplained = [r for r in moved if not windows[r["cookie"]][0] <= r["t"] <= windows[r["cookie"]][1]]
    print(f"\nrolling restart (servermemoryMb 1024 -> 2048): restart order {order}, actions {restarted}; "
          f"{len(rows)} requests ({len({r['session'] for r in rows if r['session']})} sticky sessions), "
          f"{len(failures)} failures, {len(moved)} sticky requests answered by another node while theirs was "
          f"out ({len({r['session'] for r in moved})} sessions changed route), "
          f"{len(unexplained)} outside their node's window; windows "
          f"{ {k: round(b - a, 1) for k, (a, b) in windows.items()} } s")
    assert changed == {n: "update" for n in ({f"ox-mw-{h}-configure" for h in MW} | ROLL)}, changed
    assert order == list(MW) and restarted == ["restart"] * 3
    assert len(rows) > 100
    assert failures == [], failures[:5]
    assert unexplained == [], unexplained[:5]


# Files each lab host holds as a planned script writes them: none is sized from the host's facts
# (memory, CPUs: assumed by the plan) or holds a hostname the facts report.
PLANNED_FILES = {
    "fmw1": ["/etc/haproxy/haproxy.cfg"],
    "fdb1": ["/etc/mysql/ox.conf.d/host.cnf"],
    "fnfs1": ["/etc/ganesha/ganesha.conf"],
    "fweb1": ["/etc/apache2/sites-available/000-appsuite.conf"],
}


def test_the_plan_is_what_the_lab_wrote(estate, tmp_path):
    """`python -m components.plan` renders what a deploy runs: on the live estate, the files its
    run wrote are the ones the plan's scripts carry (components.plan.compare_with_host)."""
    import base64

    from components.plan import compare_with_host, render_plan

    estate.up()  # the stack's own config, whatever an earlier test did
    render_plan("lab-full", tmp_path / "plan")

    def reader(host: str):
        return lambda path: base64.b64decode(estate.run_on(host, f"base64 -w0 {path}")).decode()

    problems = {host: compare_with_host(tmp_path / "plan", host, reader(host), paths)
                for host, paths in PLANNED_FILES.items()}
    assert problems == {host: {} for host in PLANNED_FILES}

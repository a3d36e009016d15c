"""GaleraCluster wiring under mocks: phases, serial joins, secrets, outputs."""

import pytest

from harness import is_secret, run_program, script_of, unwrap

SECRET = {"sshPrivateKey", "mysqlRootPassword"}
ROOT_PW = "Galera-root-pw-5e1b"


@pytest.fixture
def recording(stack_config):
    return run_program(stack_config(mysqlRootPassword=ROOT_PW), SECRET)


def _urn(recording, name):
    return recording.named(name).urn


def test_steps_are_children_of_the_cluster(recording):
    cluster = recording.named("ox-galera")
    assert cluster.type == "ox-estate:db:GaleraCluster"
    steps = [r for r in recording.registrations if r.name.startswith("ox-galera-")]
    assert sorted(r.name for r in steps) == sorted(
        [f"ox-galera-db{i}-{p}" for i in (1, 2, 3) for p in ("install", "configure", "probe", "recover", "restart-last", "verify")]
        + ["ox-galera-db1-bootstrap", "ox-galera-db2-join", "ox-galera-db3-join", "ox-galera-db1-ox-grants"])
    assert all(r.parent == cluster.urn for r in steps)


def test_nodes_join_one_after_the_other(recording):
    """Node k+1 starts only after node k is Synced: one state transfer at a time."""
    deps = lambda name: set(recording.named(name).dependencies)  # noqa: E731
    assert _urn(recording, "ox-galera-db1-configure") in deps("ox-galera-db1-bootstrap")
    assert _urn(recording, "ox-galera-db1-bootstrap") in deps("ox-galera-db2-join")
    assert _urn(recording, "ox-galera-db2-join") in deps("ox-galera-db3-join")
    assert _urn(recording, "ox-galera-db3-configure") in deps("ox-galera-db3-join")
    for i in (1, 2, 3):
        assert _urn(recording, "ox-galera-db3-restart-last") in deps(f"ox-galera-db{i}-verify")


def test_the_writer_last_pass_follows_the_last_join(recording):
    """A rolling restart skips the writer in the bootstrap/join chain; the restart-last steps,
    one node after the other after the last join, restart it: writes move once."""
    deps = lambda name: set(recording.named(name).dependencies)  # noqa: E731
    assert _urn(recording, "ox-galera-db3-join") in deps("ox-galera-db1-restart-last")
    assert _urn(recording, "ox-galera-db1-restart-last") in deps("ox-galera-db2-restart-last")
    assert _urn(recording, "ox-galera-db2-restart-last") in deps("ox-galera-db3-restart-last")


def test_configure_and_install_run_in_parallel_across_nodes(recording):
    """No configure waits for another node's steps; only for its own install and the baseline."""
    for i in (1, 2, 3):
        deps = set(recording.named(f"ox-galera-db{i}-configure").dependencies)
        others = {r.urn for r in recording.registrations if r.name.startswith("ox-galera-")
                  and f"db{i}-" not in r.name}
        assert not deps & others
        assert _urn(recording, f"ox-galera-db{i}-install") in deps


def test_passwords_travel_on_stdin_only(recording):
    """configure writes root's client file (the password); bootstrap sets the account (its hash)."""
    for name, key in (("ox-galera-db1-bootstrap", "MYSQL_ROOT_HASH="), ("ox-galera-db2-configure", "MYSQL_ROOT_PASSWORD=")):
        step = recording.named(name)
        assert is_secret(step.inputs["stdin"])
        assert key in unwrap(step.inputs["stdin"])
        assert ROOT_PW not in unwrap(step.inputs["create"])
        assert step.inputs["logging"] == "none"
    # The join logs in to the other members as the probe account (it decides its SST method live).
    join = recording.named("ox-galera-db2-join")
    assert is_secret(join.inputs["stdin"]) and "SST_PASSWORD=" in unwrap(join.inputs["stdin"])
    assert join.inputs["logging"] == "none"


def test_each_join_decides_its_state_transfer_method_live(recording):
    """rsync only when a Synced member says the cluster holds no data, asked at the join itself;
    the configured method (mariabackup) otherwise, and for every later start."""
    for joiner, peers in (("db2", "10.0.0.11 10.0.0.13"), ("db3", "10.0.0.11 10.0.0.12")):
        script = script_of(recording.named(f"ox-galera-{joiner}-join"))
        assert f"sst_method=$(ox_galera_join_sst_method mariabackup {peers})" in script
        assert "ox_sst_once \"$sst_method\"" in script and "ox_sst_once_done mariabackup" in script
        assert "trap ox_sst_once_clear EXIT" in script
        assert "information_schema.SCHEMATA" in script and "ox_clustercheck.writer" in script
    # The wsrep.cnf every node starts with keeps the configured method.
    assert "wsrep_sst_method = mariabackup" in script_of(recording.named("ox-galera-db2-configure"))


def test_the_bootstrap_creates_the_probe_account_for_every_node(recording):
    script = script_of(recording.named("ox-galera-db1-bootstrap"))
    assert "probe_from=(10.0.0.11 10.0.0.12 10.0.0.13 )" in script
    assert "GRANT SHOW DATABASES ON *.* TO '${OX_SST_PROBE_USER}'" in script
    assert "GRANT SELECT ON ox_clustercheck.writer TO '${OX_SST_PROBE_USER}'" in script


def test_config_is_sized_from_the_nodes_facts_and_lists_every_member(recording):
    script = script_of(recording.named("ox-galera-db2-configure"))
    assert "innodb_buffer_pool_size = 4096M" in script  # 50% of the 8192 MB the facts reported
    assert "wsrep_cluster_address = gcomm://10.0.0.11,10.0.0.12,10.0.0.13" in script
    assert "wsrep_node_address = 10.0.0.12" in script
    assert _urn(recording, "db2-facts") in recording.named("ox-galera-db2-configure").property_dependencies["create"]


def test_bootstrap_probes_the_other_members(recording):
    script = script_of(recording.named("ox-galera-db1-bootstrap"))
    assert "for peer in 10.0.0.12 10.0.0.13 ;" in script
    assert "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'sstuser'@'localhost'" in script


def test_outputs(recording):
    assert recording.outputs["galeraWriteEndpoint"] == "127.0.0.1:3307"
    assert recording.outputs["galeraNodeAddresses"] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert [s["state"] for s in recording.outputs["galeraStatus"]] == ["Synced"] * 3


def test_no_galera_section_no_cluster(stack_config):
    recording = run_program(stack_config(database={"standalone": {"host": "db1"}, "configdb": "standalone"}),
                            {"sshPrivateKey"})
    assert recording.of_type("ox-estate:db:GaleraCluster") == []


def test_openexchange_grants_once_for_every_middleware_host(recording):
    step = recording.named("ox-galera-db1-ox-grants")
    script = script_of(step)
    assert "for client in 10.0.0.21 10.0.0.22 ;" in script
    assert ("wanted='CREATE, LOCK TABLES, REFERENCES, INDEX, DROP, DELETE, ALTER, SELECT, UPDATE, INSERT, "
            "CREATE TEMPORARY TABLES, SHOW VIEW, SHOW DATABASES'") in script
    assert is_secret(step.inputs["stdin"]) and unwrap(step.inputs["stdin"]).startswith("CONFIGDB_HASH=")
    for i in (1, 2, 3):
        assert recording.named(f"ox-galera-db{i}-verify").urn in step.dependencies
    assert not [r for r in recording.registrations if r.name in ("ox-galera-db2-ox-grants", "ox-galera-db3-ox-grants")]


def test_standalone_db(stack_config):
    recording = run_program(stack_config(database={"standalone": {"host": "db1", "serverId": 9},
                                                   "configdb": "standalone"}), {"sshPrivateKey"})
    names = [r.name for r in recording.registrations if r.name.startswith("ox-standalone-")]
    assert names == ["ox-standalone-db1-install", "ox-standalone-db1-configure", "ox-standalone-db1-start",
                     "ox-standalone-db1-root", "ox-standalone-db1-ox-grants"]
    assert "server_id = 9" in script_of(recording.named("ox-standalone-db1-configure"))
    assert recording.named("ox-standalone-db1-root").urn in recording.named("ox-standalone-db1-ox-grants").dependencies

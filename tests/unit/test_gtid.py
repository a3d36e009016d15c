"""GtidPair wiring under mocks: order of phases, accounts limited to the peer, master-master."""

import pytest

from harness import is_secret, run_program, script_of, unwrap

SECRET = {"sshPrivateKey"}


def _gtid(mode, **sides):
    return {"gtid": {"mode": mode, "master": {"host": "db4", "serverId": 41, **sides.get("master", {})},
                     "slave": {"host": "db5", "serverId": 42, **sides.get("slave", {})}},
            "configdb": "gtid"}


@pytest.fixture
def master_slave(stack_config):
    return run_program(stack_config(database=_gtid("master-slave")), SECRET)


@pytest.fixture
def master_master(stack_config):
    return run_program(stack_config(database=_gtid("master-master")), SECRET)


def _deps(recording, name):
    return set(recording.named(name).dependencies)


def test_master_slave_phases_in_order(master_slave):
    r = master_slave
    urn = lambda n: r.named(n).urn  # noqa: E731
    assert urn("ox-gtid-db4-start") in _deps(r, "ox-gtid-db4-accounts")
    assert urn("ox-gtid-db5-start") in _deps(r, "ox-gtid-db4-accounts")
    assert urn("ox-gtid-db4-accounts") in _deps(r, "ox-gtid-db5-replica")
    assert not [x for x in r.registrations if x.name in ("ox-gtid-db5-accounts", "ox-gtid-db4-replica")]


@pytest.mark.parametrize("pair", ["master_slave", "master_master"])
def test_a_settings_change_restarts_the_slave_first(pair, request):
    """The start steps restart their server for a settings change: the master's waits for the
    slave's, so the two never restart at once and the writes' server goes last."""
    r = request.getfixturevalue(pair)
    assert r.named("ox-gtid-db5-start").urn in _deps(r, "ox-gtid-db4-start")
    assert r.named("ox-gtid-db4-start").urn not in _deps(r, "ox-gtid-db5-start")


def test_slave_is_read_only_and_ids_are_distinct(master_slave):
    master = script_of(master_slave.named("ox-gtid-db4-configure"))
    slave = script_of(master_slave.named("ox-gtid-db5-configure"))
    assert "server_id = 41" in master and "server_id = 42" in slave
    assert "read_only = ON" in slave and "read_only" not in master
    assert "gtid_domain_id = 1" in master and "gtid_domain_id = 1" in slave
    assert "auto_increment" not in master


def test_replication_accounts_only_from_the_peer(master_slave):
    accounts = script_of(master_slave.named("ox-gtid-db4-accounts"))
    assert "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'10.0.0.15'" in accounts
    assert "'%'" not in accounts


def test_seed_holds_writes_and_always_releases_them(master_slave):
    replica = script_of(master_slave.named("ox-gtid-db5-replica"))
    assert replica.index('on_source -e "SET GLOBAL read_only = ON"') < replica.index("mariadb-dump")
    assert "trap 'on_source -e \"SET GLOBAL read_only = OFF\"" in replica
    assert "--master-data --gtid" in replica and "sql_log_bin=0" in replica
    assert "MASTER_USE_GTID=slave_pos" in replica
    step = master_slave.named("ox-gtid-db5-replica")
    assert is_secret(step.inputs["stdin"]) and "REPLICATION_PASSWORD=" in unwrap(step.inputs["stdin"])


def test_master_master_links_both_ways_after_the_seed(master_master):
    r = master_master
    assert r.named("ox-gtid-db5-replica").urn in _deps(r, "ox-gtid-db5-accounts")
    assert r.named("ox-gtid-db5-accounts").urn in _deps(r, "ox-gtid-db4-replica")
    back = script_of(r.named("ox-gtid-db4-replica"))
    assert "mariadb-dump" not in back and "MASTER_HOST='10.0.0.15'" in back
    a, b = script_of(r.named("ox-gtid-db4-configure")), script_of(r.named("ox-gtid-db5-configure"))
    assert "auto_increment_increment = 2" in a and "auto_increment_offset = 1" in a
    assert "auto_increment_offset = 2" in b
    assert "gtid_domain_id = 1" in a and "gtid_domain_id = 2" in b
    assert "read_only" not in a and "read_only" not in b
    assert len(r.outputs["gtidReplication"]) == 2


def test_configured_domain_ids_are_used(stack_config):
    r = run_program(stack_config(database=_gtid("master-master", master={"gtidDomainId": 7},
                                                slave={"gtidDomainId": 8})), SECRET)
    assert "gtid_domain_id = 8" in script_of(r.named("ox-gtid-db5-configure"))


def test_openexchange_grants_on_the_master_after_replication(master_slave):
    step = master_slave.named("ox-gtid-db4-ox-grants")
    assert master_slave.named("ox-gtid-db5-replica").urn in step.dependencies
    assert "for client in 10.0.0.21 10.0.0.22 ;" in script_of(step)

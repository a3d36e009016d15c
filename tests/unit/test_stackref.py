"""StackReference composition (issue 11): a database-only stack serves other stacks' middleware
(`database.clients`), and a middleware stack registers its userdbs (`database.fromStacks`).

The consumer reads what the producer's own program exported: each module fixture runs the
producer under mocks first and hands its outputs (secrets marked as the engine keeps them) to the
consumer's StackReference.
"""

from __future__ import annotations

import base64
import re

import pytest

from components.core.config import ConfigError
from harness import run_program, script_of, unwrap, is_secret
from test_multidb import DistinctIds

SECRET = {"sshPrivateKey"}
CLIENTS = "10.0.2.0/24"
GALERA_STACK, GTID_STACK = "acme/ox-estate/userdb-a", "acme/ox-estate/userdb-b"


class Referencing(DistinctIds):
    """Answers StackReference reads with other stacks' recorded outputs."""

    def __init__(self, stacks: dict[str, tuple[dict, set[str]]]):
        self.stacks = stacks  # stack name -> (outputs, the names of the secret ones)

    def new_resource(self, args):
        if args.typ == "pulumi:pulumi:StackReference":
            name = args.inputs["name"]
            outputs, secret = self.stacks.get(name, ({}, set()))
            return name, {"name": name, "outputs": outputs, "secretOutputNames": sorted(secret)}
        return super().new_resource(args)


def _run(cfg: dict, mocks):
    """run_program on a fresh event loop (a finished program leaves its loop closed)."""
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())
    return run_program(cfg, SECRET, mocks=mocks)


def _producer(ssh_key, database: dict, hosts: list[tuple[str, str]]) -> dict:
    from conftest import BASE_CONFIG

    cfg = {**BASE_CONFIG, "sshPrivateKey": ssh_key, "hosts": [{"name": n, "address": a} for n, a in hosts],
           "database": database}
    for key in ("middleware", "frontend", "filestore", "documentConverter"):
        cfg.pop(key, None)
    return cfg


GALERA_DB = {"galeraClusters": [{"name": "users-a", "nodes": ["ga1", "ga2", "ga3"]}], "configdb": "users-a",
             "userdbs": ["users-a"], "clients": [CLIENTS]}
GALERA_HOSTS = [("ga1", "10.0.1.11"), ("ga2", "10.0.1.12"), ("ga3", "10.0.1.13")]
GTID_DB = {"gtidPairs": [{"name": "users-b", "master": {"host": "gb1", "serverId": 1},
                          "slave": {"host": "gb2", "serverId": 2}}],
           "configdb": "users-b", "userdbs": ["users-b"], "clients": [CLIENTS]}
GTID_HOSTS = [("gb1", "10.0.1.21"), ("gb2", "10.0.1.22")]


def _exported(recording) -> tuple[dict, set[str]]:
    return recording.outputs, {k for k, secret in recording.secret_outputs.items() if secret}


@pytest.fixture(scope="module")
def producers(ssh_key):
    galera = _run(_producer(ssh_key, GALERA_DB, GALERA_HOSTS), DistinctIds())
    gtid = _run(_producer(ssh_key, GTID_DB, GTID_HOSTS), DistinctIds())
    return {GALERA_STACK: galera, GTID_STACK: gtid}


def _consumer(ssh_key, **database) -> dict:
    from conftest import BASE_CONFIG

    cfg = {**BASE_CONFIG, "sshPrivateKey": ssh_key}
    cfg.update(hosts=[{"name": "cfg1", "address": "10.0.2.10"}, {"name": "mw1", "address": "10.0.2.21"},
                      {"name": "mw2", "address": "10.0.2.22"}, {"name": "nfs1", "address": "10.0.2.31"}],
               database={"standalone": {"host": "cfg1"}, "configdb": "standalone",
                         "fromStacks": [GALERA_STACK, GTID_STACK], **database},
               middleware={"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX2"}]},
               filestore={"server": "nfs1"})
    cfg.pop("frontend", None)
    return cfg


def _password(stack: str) -> str:
    """Each producer's `openexchange` password as the consumer reads it: its own per stack (the
    mocks generate the same value in every stack)."""
    return f"{stack.split('/')[-1]}-password"


def _run_consumer(producers, cfg, stacks=None):
    exported = {}
    for name, recording in producers.items():
        outputs, secret = _exported(recording)
        credentials = {**outputs["databaseCredentials"], "password": _password(name)}
        exported[name] = ({**outputs, "databaseCredentials": credentials}, secret)
    return _run(cfg, Referencing(exported if stacks is None else stacks))


@pytest.fixture(scope="module")
def consumer(producers, ssh_key):
    return _run_consumer(producers, _consumer(ssh_key))


# --- the database stack ---------------------------------------------------------------------


def test_database_stack_exports_what_a_consumer_needs(producers):
    out = producers[GALERA_STACK].outputs
    entry = out["databases"]["users-a"]
    assert (entry["kind"], entry["userdb"], entry["clusterName"]) == ("galera", "oxdb_users_a", "users-a")
    assert entry["nodeNames"] == ["ga1", "ga2", "ga3"] and entry["nodeAddresses"] == [a for _, a in GALERA_HOSTS]
    assert entry["writePort"] == entry["readPort"] + 1
    assert out["databaseClients"] == [CLIENTS]
    assert out["databaseCredentials"]["user"] == "openexchange"
    assert producers[GALERA_STACK].secret_outputs["databaseCredentials"] is True
    assert producers[GALERA_STACK].secret_outputs["databases"] is False


def test_database_stack_without_middleware_runs_clustercheck_but_no_haproxy(producers):
    names = [r.name for r in producers[GALERA_STACK].of_type("command:remote:Command")]
    assert sorted(n for n in names if n.endswith("-clustercheck")) == [
        "ox-dbproxy-ga1-clustercheck", "ox-dbproxy-ga2-clustercheck", "ox-dbproxy-ga3-clustercheck"]
    assert not [n for n in names if n.endswith("-haproxy") or "registration" in n]


def test_grants_admit_the_client_networks_in_mariadbs_form(producers):
    script = script_of(producers[GALERA_STACK].named("ox-users-a-ga1-ox-grants"))
    assert "10.0.2.0/255.255.255.0" in script
    assert "10.0.2.0/24" not in script  # MariaDB would read that as a host name


def test_a_stack_without_clients_exports_no_credentials(ssh_key):
    db = {k: v for k, v in GALERA_DB.items() if k != "clients"}
    recording = _run(_producer(ssh_key, db, GALERA_HOSTS), DistinctIds())
    assert "databaseCredentials" not in recording.outputs and "databaseClients" not in recording.outputs
    assert not [r for r in recording.of_type("command:remote:Command") if r.name.endswith("-clustercheck")]


# --- the consumer ---------------------------------------------------------------------------


def test_consumer_haproxy_reaches_the_remote_cluster_on_its_ports(consumer, producers):
    entry = producers[GALERA_STACK].outputs["databases"]["users-a"]
    for mw in ("mw1", "mw2"):
        config = unwrap(consumer.named(f"ox-dbproxy-{mw}-haproxy").inputs["create"])
        assert f"127.0.0.1:{entry['writePort']}" in config and f"127.0.0.1:{entry['readPort']}" in config
        for address in entry["nodeAddresses"]:
            assert f"{address}:3306" in config and "9200" in config
    # The remote nodes' clustercheck is their own stack's: no step here runs on them.
    commands = consumer.of_type("command:remote:Command")
    assert not [r for r in commands if r.name.endswith("-clustercheck")]
    hosts = {unwrap(r.inputs["connection"])["host"] for r in commands}
    assert not hosts & {a for _, a in GALERA_HOSTS + GTID_HOSTS}


def _registered_id(step: str) -> int:
    return int(re.fullmatch(r"database (\d+) registered", DistinctIds.stdout_of(step, {})).group(1))


@pytest.mark.parametrize("db,write,read", [
    ("oxdb_users_a", "127.0.0.1:{write}", "127.0.0.1:{read}"),
    ("oxdb_users_b", "10.0.1.21", "10.0.1.22"),
])
def test_each_remote_userdb_registers_with_its_read_instance_under_its_master(consumer, producers, db, write, read):
    entry = producers[GALERA_STACK].outputs["databases"]["users-a"]
    write, read = (t.format(write=entry["writePort"], read=entry["readPort"]) for t in (write, read))
    master_step = f"ox-registration-database-{db.replace('_', '-')}"
    master, slave = consumer.named(master_step), consumer.named(f"{master_step}-read")
    assert f"-n {db} -H {write} " in script_of(master) and "-m true" in script_of(master)
    assert f"-n {db}_read -H {read} " in script_of(slave)
    assert f"-M {_registered_id(master_step)}" in script_of(slave)
    assert set(consumer.outputs["registeredDatabaseIds"]) == {
        "oxdb_standalone", "oxdb_users_a", "oxdb_users_a_read", "oxdb_users_b", "oxdb_users_b_read"}


def _stdin_secrets(registration) -> dict[str, str]:
    stdin = registration.inputs["stdin"]
    assert is_secret(stdin)
    return {k: base64.b64decode(v).decode() for k, v in
            (line.split("=", 1) for line in unwrap(stdin).splitlines())}


def test_the_remote_password_stays_secret_and_travels_on_stdin(consumer, producers):
    remote = _password(GALERA_STACK)
    step = consumer.named("ox-registration-database-oxdb-users-a")
    assert _stdin_secrets(step)["CONFIGDB_PASSWORD"] == remote
    assert remote not in str(unwrap(step.inputs["create"]))
    assert _stdin_secrets(consumer.named("ox-registration-database-oxdb-users-b-read"))["CONFIGDB_PASSWORD"] == \
        _password(GTID_STACK)
    own = _stdin_secrets(consumer.named("ox-registration-database-oxdb-standalone"))["CONFIGDB_PASSWORD"]
    assert own == "generated-configdb-password-0123456789abcdef"  # this stack's own account
    assert remote not in str(consumer.outputs)


def test_consumer_exports_the_remote_databases_and_watches_replication(consumer):
    remote = consumer.outputs["remoteDatabases"]
    assert set(remote) == {"userdb-a/users-a", "userdb-b/users-b"}
    assert remote["userdb-b/users-b"]["kind"] == "gtid" and "clusterName" not in remote["userdb-b/users-b"]
    assert remote["userdb-a/users-a"]["clusterName"] == "users-a"  # what the lab verify expects to answer
    # A GTID userdb is read from a replica that lags: OX's replicationMonitor goes on.
    configure = unwrap(consumer.named("ox-mw-mw1-configure").inputs["create"])
    assert "com.openexchange.database.replicationMonitor=true" in configure


# --- refusals, before anything is created ---------------------------------------------------


def _refused(producers, cfg, stacks=None) -> str:
    with pytest.raises(ConfigError) as refused:
        _run_consumer(producers, cfg, stacks)
    return str(refused.value)


def test_a_stack_that_exports_no_databases_is_refused(producers, ssh_key):
    message = _refused(producers, _consumer(ssh_key), stacks={})
    assert f"ox-estate:database.fromStacks[0]: stack '{GALERA_STACK}' exports no databases" in message
    assert "database.fromStacks[1]" in message


def test_an_entry_from_an_older_version_is_refused(producers, ssh_key):
    outputs, secret = _exported(producers[GALERA_STACK])
    entry = {k: v for k, v in outputs["databases"]["users-a"].items() if k != "writePort"}
    stacks = {GALERA_STACK: ({**outputs, "databases": {"users-a": entry}}, secret),
              GTID_STACK: _exported(producers[GTID_STACK])}
    message = _refused(producers, _consumer(ssh_key), stacks=stacks)
    assert "database.fromStacks[0]: stack 'acme/ox-estate/userdb-a' database 'users-a' does not say 'writePort'" \
        in message and "database.fromStacks[1]" not in message


def test_a_middleware_host_outside_the_clients_is_refused(producers, ssh_key):
    cfg = _consumer(ssh_key)
    cfg["hosts"] = [h if h["name"] != "mw2" else {"name": "mw2", "address": "10.0.3.22"} for h in cfg["hosts"]]
    message = _refused(producers, cfg)
    assert "database.fromStacks[0]: middleware host 'mw2' (10.0.3.22) is outside stack" in message
    assert "10.0.2.0/24" in message and "mw1" not in message


def test_a_userdb_name_twice_is_refused(producers, ssh_key):
    cfg = _consumer(ssh_key)
    cfg["database"] = {"gtidPairs": [{"name": "users-a", "master": {"host": "cfg1", "serverId": 1},
                                      "slave": {"host": "nfs1", "serverId": 2}}],
                       "configdb": "users-a", "fromStacks": [GALERA_STACK]}
    cfg["filestore"] = {"s3Uri": "s3://filestore"}
    message = _refused(producers, cfg)
    assert "database.fromStacks[0]: stack 'acme/ox-estate/userdb-a' database 'users-a' is the userdb oxdb_users_a" in message


def test_a_haproxy_port_taken_here_is_refused(producers, ssh_key):
    entry = producers[GALERA_STACK].outputs["databases"]["users-a"]
    cfg = _consumer(ssh_key)
    cfg["hosts"] += [{"name": f"c{i}", "address": f"10.0.2.4{i}"} for i in range(3)]
    cfg["database"]["galeraClusters"] = [{"name": "local", "nodes": ["c0", "c1", "c2"],
                                         "readPort": entry["writePort"], "writePort": entry["writePort"] + 1}]
    message = _refused(producers, cfg)
    assert f"its HAProxy port {entry['writePort']} is already this stack's Galera cluster 'local'" in message


@pytest.mark.parametrize("change,path,words", [
    (lambda c: c.pop("middleware"), "database.fromStacks", "only middleware registers userdbs"),
    (lambda c: c["database"].update(fromStacks=[GALERA_STACK, "other/x/userdb-a"]), "database.fromStacks[1]",
     "listed twice"),
    (lambda c: c["database"].update(fromStacks=["acme/ox estate/a"]), "database.fromStacks[0]", "a stack name"),
    (lambda c: c["database"].update(clients=["0.0.0.0/0"]), "database.clients[0]", "everyone"),
])
def test_config_refusals_name_the_key(producers, ssh_key, change, path, words):
    cfg = _consumer(ssh_key)
    change(cfg)
    message = _refused(producers, cfg)
    assert f"ox-estate:{path}" in message and words in message, message

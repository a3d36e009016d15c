"""Middleware, registration chain and filestore wiring under mocks."""

import re

import pytest

from components.web.frontend import MANAGER_PORT
from harness import is_secret, run_program, script_of, unwrap

SECRET = {"sshPrivateKey", "oxAdminMasterPassword"}
MASTER_PW = "Master-pw-from-config-99ab"
MW3 = {"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX2"},
                 {"host": "web1", "jkroute": "PROV", "role": "provisioning"}],
       "firstContext": {"contextId": 7, "name": "ctx7", "mappings": ["example.org"]}}


@pytest.fixture
def recording(stack_config):
    return run_program(stack_config(oxAdminMasterPassword=MASTER_PW, middleware=MW3,
                                    frontend={"mode": "colocated"}), SECRET)


def _code(script: str) -> str:
    """The script without its comments: what it runs."""
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))


def _deps(recording, name):
    """What the step waits for: its dependencies and theirs (waypoints stand between many and many)."""
    return recording.waits_for(name)


def test_oxinstaller_options_identical_but_the_jkroute(recording):
    scripts = {n: script_of(recording.named(f"ox-mw-{n}-configure")) for n in ("mw1", "mw2", "web1")}
    routes = {n: re.search(r"--jkroute=(\S+)", s).group(1) for n, s in scripts.items()}
    assert routes == {"mw1": "OX1", "mw2": "OX2", "web1": "PROV"}
    normalized = {re.sub(r"--jkroute=\S+|open-xchange \w+ up \(jkroute \S+\)|OX_HOST=\S+|step \S+ on \S+|OX_STEP=\S+",
                         "", s) for s in scripts.values()}
    assert len(normalized) == 1
    assert "--network-listener-host='*'" in scripts["mw1"]
    assert "--configdb-writehost=127.0.0.1 --configdb-writeport=3307" in scripts["mw1"]
    assert "--configdb-readhost=127.0.0.1 --configdb-readport=3306" in scripts["mw1"]
    # One switch for the configdb and every userdb: the GTID userdb's slave lags, so it is on.
    assert "com.openexchange.database.replicationMonitor=true" in scripts["mw1"]


def test_hazelcast_static_join_lists_every_node_including_provisioning(recording):
    script = script_of(recording.named("ox-mw-mw2-configure"))
    assert "com.openexchange.hazelcast.network.join=static" in script
    assert "com.openexchange.hazelcast.network.join.static.nodes=10.0.0.21,10.0.0.22,10.0.0.41" in script
    assert "group.password" not in script  # App Suite 8 has none


def test_initconfigdb_once_never_with_i(recording):
    steps = [r.name for r in recording.registrations if r.name.endswith("-initconfigdb")]
    assert steps == ["ox-mw-mw1-initconfigdb"]
    script = _code(script_of(recording.named("ox-mw-mw1-initconfigdb")))
    assert " -i" not in script and "SHOW DATABASES LIKE 'configdb'" in script
    for n in ("mw1", "mw2", "web1"):
        assert recording.named("ox-mw-mw1-initconfigdb").urn in _deps(recording, f"ox-mw-{n}-configure")


def test_middleware_waits_for_the_databases_and_haproxy(recording):
    deps = _deps(recording, "ox-mw-mw1-initconfigdb")
    assert recording.named("ox-dbproxy-mw1-haproxy").urn in deps
    assert recording.named("ox-galera-db1-ox-grants").urn in deps
    assert recording.named("ox-gtid-db4-ox-grants").urn in deps


def test_registration_chain_ids_flow_from_stdout(recording):
    """The master's printed id is rendered into the slave's -M, and each step waits for the last."""
    chain = ["ox-registration-server", "ox-registration-filestore", "ox-registration-database-oxdb-galera",
             "ox-registration-database-oxdb-galera-read", "ox-registration-database-oxdb-gtid",
             "ox-registration-database-oxdb-gtid-read", "ox-registration-context"]
    for before, after in zip(chain, chain[1:]):
        assert recording.named(before).urn in _deps(recording, after), (before, after)
    master = recording.named("ox-registration-database-oxdb-galera")
    galera_id = recording.outputs["registeredDatabaseIds"]["oxdb_galera"]
    assert galera_id not in (1, 2)  # the mock printed it; nothing in the config says it
    slave = recording.named("ox-registration-database-oxdb-galera-read")
    assert f"-m false -M {galera_id}" in script_of(slave)
    assert master.urn in slave.property_dependencies["create"]


def test_registration_runs_on_the_provisioning_node(recording):
    assert unwrap(recording.named("ox-registration-server").inputs["connection"])["host"] == "10.0.0.41"
    assert recording.outputs["middlewareBackends"] == {"mw1": "OX1", "mw2": "OX2"}


def test_registration_adopts_and_unregisters_only_empty(recording):
    server = recording.named("ox-registration-server")
    assert "listserver --csv" in script_of(server)
    assert "unregisterserver" in script_of(server, "delete")
    db = recording.named("ox-registration-database-oxdb-gtid")
    assert "KEPT database" in script_of(db, "delete") and "currentunits" in script_of(db, "delete")
    assert "context" not in [r.name.rsplit("-", 1)[-1] for r in recording.registrations if "delete" in r.inputs]


def test_admin_and_db_passwords_only_on_stdin(recording):
    for r in recording.of_type("command:remote:Command"):
        assert MASTER_PW not in unwrap(r.inputs["create"]), r.name
    for name in ("ox-registration-server", "ox-mw-mw1-configure", "ox-registration-database-oxdb-galera"):
        step = recording.named(name)
        assert is_secret(step.inputs["stdin"]) and step.inputs["logging"] == "none"
    assert "-P " not in _code(script_of(recording.named("ox-registration-server")))  # ADMIN_PASSWORD, not argv


def test_filestore_export_only_to_middleware_and_checked_across_nodes(recording):
    export = script_of(recording.named("ox-fs-nfs1-export"))
    assert ("/var/opt/filestore 10.0.0.21(rw,sync,no_subtree_check,all_squash,anonuid=2001,anongid=2001) "
            "10.0.0.22(rw") in export
    assert "*(" not in export
    read = recording.named("ox-fs-web1-read-check")
    assert recording.named("ox-fs-mw1-write-check").urn in read.dependencies
    assert recording.named("ox-fs-nfs1-export").urn in _deps(recording, "ox-fs-mw2-mount")
    assert recording.named("ox-fs-web1-read-check").urn in _deps(recording, "ox-registration-server")


def test_outputs(recording):
    out = recording.outputs
    assert out["serverId"] == 1 and out["filestoreId"] == 2 and out["contextId"] == 1
    assert set(out["registeredDatabaseIds"]) == {"oxdb_galera", "oxdb_galera_read", "oxdb_gtid", "oxdb_gtid_read"}
    assert out["configdbWriteHost"] == "127.0.0.1:3307"


def test_gtid_configdb_turns_the_replication_monitor_on(stack_config):
    db = {"gtid": {"master": {"host": "db4", "serverId": 1}, "slave": {"host": "db5", "serverId": 2}},
          "configdb": "gtid"}
    r = run_program(stack_config(database=db), {"sshPrivateKey"})
    script = script_of(r.named("ox-mw-mw1-configure"))
    assert "com.openexchange.database.replicationMonitor=true" in script
    assert "--configdb-writehost=10.0.0.14" in script and "--configdb-readhost=10.0.0.15" in script
    assert r.outputs["registeredDatabaseIds"].keys() == {"oxdb_gtid", "oxdb_gtid_read"}


def test_galera_alone_needs_no_replication_monitor(stack_config):
    """Galera's reads are causal: with no GTID userdb, OX's replication monitor stays off."""
    r = run_program(stack_config(database={"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera"}),
                    {"sshPrivateKey"})
    assert "com.openexchange.database.replicationMonitor=false" in script_of(r.named("ox-mw-mw1-configure"))


def test_a_gtid_userdb_behind_a_galera_configdb_turns_the_monitor_on(stack_config):
    """configdb.properties' replicationMonitor covers every userdb too (OX reads a GTID userdb from
    its lagging slave), so the Galera configdb's causal reads do not turn it off."""
    r = run_program(stack_config(database={"galera": {"nodes": ["db1", "db2", "db3"]},
                                           "gtid": {"master": {"host": "db4", "serverId": 1},
                                                    "slave": {"host": "db5", "serverId": 2}},
                                           "configdb": "galera", "userdbs": ["gtid"]}), {"sshPrivateKey"})
    script = script_of(r.named("ox-mw-mw1-configure"))
    assert "com.openexchange.database.replicationMonitor=true" in script
    assert "--configdb-writehost=127.0.0.1 --configdb-writeport=3307" in script


def test_colocated_frontends_sit_on_the_backends_and_wait_for_them(recording):
    """Colocated: Apache on each backend node (not the provisioning node), started after OX."""
    web_steps = sorted({r.name.split("-")[2] for r in recording.registrations if r.name.startswith("ox-web-")})
    assert web_steps == ["mw1", "mw2"]
    start = recording.named("ox-web-mw1-start")
    for n in ("mw1", "mw2", "web1"):
        assert recording.named(f"ox-mw-{n}-configure").urn in recording.waits_for(start.name)
    assert recording.outputs["frontendUrls"] == ["http://10.0.0.21/appsuite/", "http://10.0.0.22/appsuite/"]


def test_dedicated_frontend_exports_its_url(stack_config):
    r = run_program(stack_config(), {"sshPrivateKey"})
    assert [x.name for x in r.registrations if x.name.startswith("ox-web-web1-")] == [
        "ox-web-web1-install", "ox-web-web1-configure", "ox-web-web1-start", "ox-web-web1-check"]
    assert r.outputs["frontendUrls"] == ["http://10.0.0.41/appsuite/"]


def test_s3_filestore_is_registered_without_nfs(stack_config):
    r = run_program(stack_config(filestore={"s3Uri": "s3://oxfilestore"}), {"sshPrivateKey"})
    assert not [x for x in r.registrations if x.name.startswith("ox-fs-")]
    script = _code(script_of(r.named("ox-registration-filestore")))
    assert "registerfilestore -t s3://oxfilestore" in script and "must be mounted first" not in script


def test_filestore_needs_exactly_one_of_server_and_s3(stack_config):
    from components.core.config import ConfigError, parse

    with pytest.raises(ConfigError, match="ox-estate:filestore: set either server"):
        parse(stack_config(filestore={"server": "nfs1", "s3Uri": "s3://x"}), {"sshPrivateKey"})


def test_repository_packages_use_stdin_credentials(stack_config):
    mw = {"nodes": [{"host": "mw1", "jkroute": "OX1"}], "packageSource": "repository", "repositoryUser": "acme",
          "repositoryUrl": "https://software.open-xchange.com/products/appsuite/stable/backend/DebianBookworm"}
    r = run_program(stack_config(middleware=mw, oxRepositoryPassword="Repo-pw-77"),
                    {"sshPrivateKey", "oxRepositoryPassword"})
    step = r.named("ox-mw-mw1-packages")
    script = script_of(step)
    assert "Repo-pw-77" not in script and is_secret(step.inputs["stdin"])
    assert "printf 'machine %s\\nlogin %s\\npassword %s\\n'" in script
    assert "software.open-xchange.com acme \"$OX_REPOSITORY_PASSWORD\")" in script
    assert "open-xchange-sessionstorage-hazelcast" not in script  # a single node needs none


def test_repository_without_password_is_refused(stack_config):
    from components.core.config import ConfigError, parse

    mw = {"nodes": [{"host": "mw1", "jkroute": "OX1"}], "packageSource": "repository", "repositoryUrl": "https://x/y"}
    with pytest.raises(ConfigError, match="ox-estate:oxRepositoryPassword: packageSource 'repository' needs"):
        parse(stack_config(middleware=mw), {"sshPrivateKey"})


def _roll(recording) -> list[str]:
    """The rolling restart's steps, in the order their dependencies force."""
    steps = [r for r in recording.registrations if r.name.startswith("ox-mwroll-")]
    return [r.name for r in steps]


def test_a_running_node_is_restarted_only_by_its_rolling_restart_step(recording):
    """configure runs on every node at once, so it never restarts a running OX; each node's
    restart step does, after its drain at every Apache and before the next node's drain."""
    assert "ox_service open-xchange restart" not in _code(script_of(recording.named("ox-mw-mw1-configure")))
    assert "ox_service open-xchange restart" in _code(script_of(recording.named("ox-mwroll-mw1-restart")))
    webs = ("mw1", "mw2")  # colocated: Apache on each backend node
    # Two Apaches: a waypoint after both have started and after a node's readmits at both.
    chain = ["ox-mwroll-apaches-started", *(f"ox-mwroll-{w}-drain-mw1" for w in webs), "ox-mwroll-mw1-restart",
             *(f"ox-mwroll-{w}-readmit-mw1" for w in webs), "ox-mwroll-mw1-readmitted",
             *(f"ox-mwroll-{w}-drain-mw2" for w in webs), "ox-mwroll-mw2-restart",
             *(f"ox-mwroll-{w}-readmit-mw2" for w in webs), "ox-mwroll-mw2-readmitted", "ox-mwroll-web1-restart"]
    assert sorted(_roll(recording)) == sorted(chain)  # the provisioning node (web1) is never drained
    urn = lambda n: recording.named(n).urn  # noqa: E731
    for w in webs:
        assert {urn(f"ox-mwroll-{x}-drain-mw1") for x in webs} <= _deps(recording, "ox-mwroll-mw1-restart")
        assert urn("ox-mwroll-mw1-restart") in _deps(recording, f"ox-mwroll-{w}-readmit-mw1")
        assert {urn(f"ox-mwroll-{x}-readmit-mw1") for x in webs} <= _deps(recording, f"ox-mwroll-{w}-drain-mw2")
        assert urn(f"ox-web-{w}-start") in _deps(recording, f"ox-mwroll-{w}-drain-mw1")
    assert {urn(f"ox-mwroll-{x}-readmit-mw2") for x in webs} <= _deps(recording, "ox-mwroll-web1-restart")
    assert urn("ox-mw-mw1-configure") in _deps(recording, "ox-mwroll-mw1-restart")
    # The registration talks to the admin host's (web1's) admin daemon: never while it restarts.
    assert urn("ox-mwroll-web1-restart") in _deps(recording, "ox-registration-server")


def test_the_restart_digest_ignores_the_hazelcast_members_and_follows_what_ox_reads_at_start(stack_config):
    """A new node changes every node's member list (configure writes it) but no node's restart
    step (Hazelcast's TCP-IP join needs no restart of the running members); servermemoryMb
    changes both."""
    from conftest import BASE_CONFIG

    def scripts(hosts=None, **mw):
        overrides = {"middleware": {**MW3, **mw}, "frontend": {"mode": "colocated"}}
        rec = run_program(stack_config(**overrides, **({"hosts": hosts} if hosts else {})), SECRET)
        out = {r.name: script_of(r) for r in rec.registrations if r.name.endswith(("-restart", "-configure"))}
        # A restart step's digest: what decides whether OX restarts (the drains' run varies with
        # the set of Apaches, which here, colocated, grows with the new node).
        return {n: re.search(r"restart digest: (\w+)", t).group(1) if n.endswith("-restart") else t
                for n, t in out.items()}

    base = scripts()
    grown = scripts(hosts=[*BASE_CONFIG["hosts"], {"name": "mw3", "address": "10.0.0.23"}],
                    nodes=[*MW3["nodes"], {"host": "mw3", "jkroute": "OX3"}])
    memory = scripts(servermemoryMb=4096)
    for n in ("mw1", "mw2", "web1"):
        assert grown[f"ox-mw-{n}-configure"] != base[f"ox-mw-{n}-configure"]
        assert grown[f"ox-mwroll-{n}-restart"] == base[f"ox-mwroll-{n}-restart"]
        assert memory[f"ox-mwroll-{n}-restart"] != base[f"ox-mwroll-{n}-restart"]
        assert memory[f"ox-mw-{n}-configure"] != base[f"ox-mw-{n}-configure"]
    assert "ox-mwroll-mw3-restart" in grown


def test_drain_and_readmit_use_balancer_manager_with_nonce_and_referer(recording):
    drain = _code(script_of(recording.named("ox-mwroll-mw1-drain-mw2")))
    readmit = _code(script_of(recording.named("ox-mwroll-mw1-readmit-mw2")))
    for script in (drain, readmit):
        assert f"http://127.0.0.1:{MANAGER_PORT}/balancer-manager" in script
        assert '-H "Referer: ${manager}"' in script and 'nonce=${nonce}' in script
        assert "balancers=(oxcluster eas_oxcluster )" in script
        assert "member=http://10.0.0.22:8009" in script
    assert "want_n=1\nwant_d=1" in drain and "want_n=0\nwant_d=0" in readmit
    assert "w_lf=" in readmit and "w_lf=" not in drain

"""Several database topologies in one estate (issue 11): named Galera clusters and GTID pairs plus
the standalone server, each its own component with its own wsrep name, clustercheck, grants and
registration (master id -> `-M <id>` of that topology's read instance), and a read/write port pair
per Galera cluster in each middleware node's one haproxy.cfg."""

from __future__ import annotations

import json
import re
import subprocess
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.core import config
from components.core.config import ConfigError, DatabaseSpec, DbTopology, NamedGaleraSpec, parse
from components.db.dbproxy import ProxiedCluster, listener_values
from components.core.render import Rendered
from harness import UnitMocks, run_program, script_of, unwrap
from test_changes_take_effect import HAPROXY_FAKES, HAPROXY_INIT, Box, _fake, needs_root

SECRET = {"sshPrivateKey"}
HOSTS = ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "d1", "d2", "s1", "mw1", "mw2", "nfs1", "web1"]
MULTI = {
    "galeraClusters": [{"name": "cfgdb", "nodes": ["a1", "a2", "a3"]},
                       {"name": "users-a", "nodes": ["b1", "b2", "b3"], "readPort": 4406, "writePort": 4407}],
    "gtidPairs": [{"name": "users-b", "master": {"host": "c1", "serverId": 11}, "slave": {"host": "c2", "serverId": 12}},
                  {"name": "users-c", "mode": "master-master", "master": {"host": "d1", "serverId": 21},
                   "slave": {"host": "d2", "serverId": 22}, "floatingAddress": "10.0.1.100/24", "vrrpRouterId": 61}],
    "standalone": {"host": "s1"},
    "configdb": "cfgdb",
    "userdbs": ["users-a", "users-b", "users-c", "standalone"],
}


def _multi_config(stack_config, database=MULTI) -> dict:
    return stack_config(hosts=[{"name": h, "address": f"10.0.1.{11 + i}"} for i, h in enumerate(HOSTS)],
                        database=database,
                        middleware={"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX2"}]},
                        frontend={"nodes": ["web1"], "adminNetworks": ["10.0.1.0/24"]})


def _derived(name: str) -> tuple[int, int]:
    read = config.DERIVED_PORT_BASE + 2 * (zlib.crc32(name.encode()) % config.DERIVED_PORT_PAIRS)
    return read, read + 1


class DistinctIds(UnitMocks):
    """registerdatabase prints an id of its own per database (the shared harness's ids may repeat)."""

    @staticmethod
    def stdout_of(name: str, inputs: dict) -> str:
        if "-registration-database-" in name:
            return f"database {1000 + zlib.crc32(name.encode()) % 9000} registered"
        return UnitMocks.stdout_of(name, inputs)


@pytest.fixture(scope="module")
def recording(ssh_key):
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())
    from conftest import BASE_CONFIG

    cfg = {**BASE_CONFIG, "sshPrivateKey": ssh_key}
    cfg.update(hosts=[{"name": h, "address": f"10.0.1.{11 + i}"} for i, h in enumerate(HOSTS)], database=MULTI,
               middleware={"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX2"}]},
               frontend={"nodes": ["web1"], "adminNetworks": ["10.0.1.0/24"]}, filestore={"server": "nfs1"})
    return run_program(cfg, SECRET, mocks=DistinctIds())


def _address(host: str) -> str:
    return f"10.0.1.{11 + HOSTS.index(host)}"


def test_each_topology_is_its_own_component(recording):
    kinds = {r.name: r.type for r in recording.registrations if r.type.startswith("ox-estate:db:")}
    assert kinds == {"ox-cfgdb": "ox-estate:db:GaleraCluster", "ox-users-a": "ox-estate:db:GaleraCluster",
                     "ox-users-b": "ox-estate:db:GtidPair", "ox-users-c": "ox-estate:db:GtidPair",
                     "ox-standalone": "ox-estate:db:StandaloneDb", "ox-dbproxy": "ox-estate:db:ReadWriteSplit"}
    assert recording.named("ox-users-c-vip").type == "ox-estate:net:FloatingAddress"
    assert not [r for r in recording.registrations if r.name == "ox-users-b-vip"]  # no floatingAddress there


def test_each_galera_cluster_has_its_own_wsrep_name_members_and_verify(recording):
    for cluster, nodes in (("cfgdb", ["a1", "a2", "a3"]), ("users-a", ["b1", "b2", "b3"])):
        for n in nodes:
            script = script_of(recording.named(f"ox-{cluster}-{n}-configure"))
            assert f"wsrep_cluster_name = {cluster}\n" in script
            assert f"gcomm://{','.join(_address(m) for m in nodes)}\n" in script
            verify = script_of(recording.named(f"ox-{cluster}-{n}-verify"))
            assert f"= {cluster} ]" in verify and "[ \"$size\" = 3 ]" in verify
        assert recording.named(f"ox-{cluster}-{nodes[0]}-bootstrap")
        assert recording.named(f"ox-{cluster}-{nodes[1]}-join")


def test_clustercheck_asks_only_its_own_clusters_peers(recording):
    files = unwrap(recording.named("ox-dbproxy-b1-clustercheck").inputs["create"])
    assert _address("b2") in files and _address("b3") in files
    assert _address("a1") not in files and _address("a2") not in files


def test_every_topology_grants_the_middleware_hosts(recording):
    for step in ("ox-cfgdb-a1-ox-grants", "ox-users-a-b1-ox-grants", "ox-users-b-c1-ox-grants",
                 "ox-users-c-d1-ox-grants", "ox-standalone-s1-ox-grants"):
        script = script_of(recording.named(step))
        assert _address("mw1") in script and _address("mw2") in script, step


def _registered_id(recording, step: str) -> int:
    return int(re.fullmatch(r"database (\d+) registered", DistinctIds.stdout_of(step, {})).group(1))


@pytest.mark.parametrize("db,write,read", [
    ("oxdb_users_a", "127.0.0.1:4407", "127.0.0.1:4406"),
    ("oxdb_users_b", _address("c1"), _address("c2")),
    ("oxdb_users_c", "10.0.1.100", _address("d2")),  # writes go to the pair's floating address
])
def test_each_userdb_registers_its_read_instance_with_its_own_master_id(recording, db, write, read):
    master_step = f"ox-registration-database-{db.replace('_', '-')}"
    master, slave = recording.named(master_step), recording.named(f"{master_step}-read")
    master_script, slave_script = script_of(master), script_of(slave)
    assert f"-n {db} -H {write} " in master_script and "-m true" in master_script
    assert f"-n {db}_read -H {read} " in slave_script
    assert f"-M {_registered_id(recording, master_step)}" in slave_script  # this topology's master id
    others = {_registered_id(recording, f"ox-registration-database-{o}") for o in
              ("oxdb-users-a", "oxdb-users-b", "oxdb-users-c", "oxdb-standalone") if o != db.replace("_", "-")}
    assert not any(f"-M {i}\n" in slave_script or f"-M {i} " in slave_script for i in others)
    assert master.urn in slave.dependencies


def test_standalone_userdb_has_no_read_instance(recording):
    script = script_of(recording.named("ox-registration-database-oxdb-standalone"))
    assert f"-H {_address('s1')} " in script
    assert not [r for r in recording.registrations if r.name == "ox-registration-database-oxdb-standalone-read"]


def test_registration_chains_every_userdb_in_config_order(recording):
    ids = recording.outputs["registeredDatabaseIds"]
    assert set(ids) == {"oxdb_users_a", "oxdb_users_a_read", "oxdb_users_b", "oxdb_users_b_read",
                        "oxdb_users_c", "oxdb_users_c_read", "oxdb_standalone"}
    assert len(set(ids.values())) == len(ids)
    chain = ["oxdb-users-a", "oxdb-users-a-read", "oxdb-users-b", "oxdb-users-b-read", "oxdb-users-c",
             "oxdb-users-c-read", "oxdb-standalone"]
    for before, after in zip(chain, chain[1:]):
        assert recording.named(f"ox-registration-database-{before}").urn in \
            recording.named(f"ox-registration-database-{after}").dependencies


@pytest.mark.parametrize("mw", ["mw1", "mw2"])
def test_haproxy_has_a_port_pair_per_galera_cluster(recording, mw):
    script = script_of(recording.named(f"ox-dbproxy-{mw}-haproxy"))
    read, write = _derived("cfgdb")
    for cluster, nodes, (r, w) in (("cfgdb", ["a1", "a2", "a3"], (read, write)),
                                   ("users-a", ["b1", "b2", "b3"], (4406, 4407))):
        for kind, port in (("read", r), ("write", w)):
            block = re.search(rf"^listen mysql-{kind}-{cluster}\n(.*?)(?:\n\n|\n#|\nOX_CFG_EOF)", script, re.S | re.M)
            assert block, (cluster, kind)
            assert f"bind 127.0.0.1:{port}\n" in block.group(1)
            assert sorted(re.findall(r"^    server (\S+) ", block.group(1), re.M)) == nodes
        assert f"one_writer mysql-write-{cluster}" in script
    assert "listen mysql-read\n" not in script and "127.0.0.1:3306" not in script  # no cluster named galera


def test_configdb_is_reached_through_its_clusters_ports_with_the_replication_monitor_on(recording):
    read, write = _derived("cfgdb")
    init = script_of(next(r for r in recording.registrations if r.name.endswith("-initconfigdb")))
    assert f"127.0.0.1:{write}" in init
    configure = [script_of(r) for r in recording.registrations if re.fullmatch(r"ox-mw-mw\d-configure", r.name)]
    assert len(configure) == 2
    for script in configure:
        assert f"--configdb-readhost=127.0.0.1 --configdb-readport={read} " in script
        assert f"--configdb-writeport={write}" in script
        # users-b and users-c are GTID pairs: a replica can lag, so OX watches replication.
        assert "com.openexchange.database.replicationMonitor=true" in script


def test_the_databases_output_names_every_topology(recording):
    dbs = recording.outputs["databases"]
    assert {n: d["kind"] for n, d in dbs.items()} == {"cfgdb": "galera", "users-a": "galera", "users-b": "gtid",
                                                     "users-c": "gtid", "standalone": "standalone"}
    read, write = _derived("cfgdb")
    assert dbs["cfgdb"] == {"kind": "galera", "configdb": True, "userdb": None,
                            "writeEndpoint": f"127.0.0.1:{write}", "readEndpoint": f"127.0.0.1:{read}",
                            "nodeAddresses": [_address(n) for n in ("a1", "a2", "a3")], "clusterName": "cfgdb",
                            "readPort": read, "writePort": write, "nodeNames": ["a1", "a2", "a3"]}
    assert dbs["users-c"]["writeEndpoint"] == "10.0.1.100:3306" and dbs["users-c"]["floatingAddress"] == "10.0.1.100"
    assert dbs["users-b"]["readEndpoint"] == f"{_address('c2')}:3306" and dbs["users-b"]["userdb"] == "oxdb_users_b"
    assert dbs["standalone"]["readEndpoint"] is None
    # The single-key outputs belong to topologies named galera/gtid: none here.
    assert "galeraWriteEndpoint" not in recording.outputs and "gtidMasterAddress" not in recording.outputs


@pytest.mark.parametrize("mw", ["mw1"])
def test_the_several_cluster_haproxy_cfg_passes_haproxy_c(recording, mw, tmp_path):
    script = script_of(recording.named(f"ox-dbproxy-{mw}-haproxy"))
    cfg = re.search(r"<<'OX_CFG_EOF'\n(.*?)OX_CFG_EOF\n", script, re.S).group(1)
    (tmp_path / "haproxy.cfg").write_text(cfg.replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock")))
    result = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert result.returncode == 0, result.stderr + result.stdout
    assert len(re.findall(r"^listen mysql-(?:read|write)-", cfg, re.M)) == 4


@needs_root
def test_the_haproxy_step_waits_for_each_clusters_writer_and_reports_each(tmp_path):
    """The step, run with the real bash on fakes: one writer per cluster, totals and per cluster."""
    box = Box(tmp_path)
    stat = "".join(f"{listener},{node},,,,,,,,,,,,,,,,UP\\n" for listener, nodes in (
        ("mysql-read-cfgdb", "a1 a2 a3"), ("mysql-write-cfgdb", "a1"), ("mysql-read-users-a", "b1 b2"),
        ("mysql-write-users-a", "b2")) for node in nodes.split())
    for name, text in {**HAPROXY_FAKES, "socat": f"cat >/dev/null; printf '{stat}'\n"}.items():
        _fake(box.bin / name, text)
    _fake(box.etc / "init.d" / "haproxy", HAPROXY_INIT)
    clusters = [listener_values(ProxiedCluster(n, [], r, r + 1)) for n, r in (("cfgdb", 24000), ("users-a", 4406))]
    result = box.run("mw/haproxy.sh.j2", {"config": Rendered("global\n"), "clusters": clusters},
                     step="ox-dbproxy-mw1-haproxy", host="mw1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"host": "mw1", "writers": 2, "readers": 5, "clusters": {
        "cfgdb": {"writers": 1, "readers": 3}, "users-a": {"writers": 1, "readers": 2}}}


@needs_root
def test_the_haproxy_step_fails_naming_the_cluster_without_a_writer(tmp_path):
    box = Box(tmp_path)
    stat = "mysql-write-cfgdb,a1,,,,,,,,,,,,,,,,UP\\nmysql-write-users-a,b1,,,,,,,,,,,,,,,,DOWN\\n"
    for name, text in {**HAPROXY_FAKES, "socat": f"cat >/dev/null; printf '{stat}'\n", "sleep": "exit 0\n"}.items():
        _fake(box.bin / name, text)
    _fake(box.etc / "init.d" / "haproxy", HAPROXY_INIT)
    clusters = [listener_values(ProxiedCluster(n, [], r, r + 1)) for n, r in (("cfgdb", 24000), ("users-a", 4406))]
    result = box.run("mw/haproxy.sh.j2", {"config": Rendered("global\n"), "clusters": clusters},
                     step="ox-dbproxy-mw1-haproxy", host="mw1")
    assert result.returncode != 0
    assert "step ox-dbproxy-mw1-haproxy on mw1" in result.stderr
    assert "exactly one Galera writer UP in mysql-write-users-a" in result.stderr


# --- ports: fixed by config or derived from the name alone -----------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,6})?", fullmatch=True).filter(lambda n: n != "galera")


def _ports(names: list[str]) -> dict[str, tuple[int, int]]:
    spec = DatabaseSpec(galeraClusters=[{"name": n, "nodes": ["x1", "x2", "x3"]} for n in names], configdb=names[0])
    return {t.name: spec.proxy_ports(t) for t in spec.of_kind("galera")}


@settings(max_examples=60, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=6, unique=True), NAMES)
def test_adding_a_cluster_moves_no_other_clusters_ports(names, new):
    before = _ports(names)
    after = _ports([*names, new] if new not in names else names)
    assert {n: after[n] for n in before} == before
    for read, write in after.values():
        assert write == read + 1 and config.DERIVED_PORT_BASE <= read < config.DERIVED_PORT_BASE + 2000


def test_the_cluster_named_galera_keeps_3306_and_3307():
    assert _ports(["galera", "users"])["galera"] == (3306, 3307)


def _colliding_names() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(100_000):
        name = f"c{i}"
        slot = zlib.crc32(name.encode()) % config.DERIVED_PORT_PAIRS
        if slot in seen:
            return seen[slot], name
        seen[slot] = name
    raise AssertionError("no collision found")


def _problems(stack_config, database: dict) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse(_multi_config(stack_config, database), SECRET)
    return err.value.problems


def _has(problems, path: str, words: str) -> bool:
    return any(p == path and words in m for p, m in problems)


def test_a_derived_port_collision_names_both_keys_and_asks_for_ports(stack_config):
    first, second = _colliding_names()
    db = {**MULTI, "galeraClusters": [{"name": first, "nodes": ["a1", "a2", "a3"]},
                                      {"name": second, "nodes": ["b1", "b2", "b3"]}], "configdb": first,
          "userdbs": [second]}
    problems = _problems(stack_config, db)
    assert _has(problems, "database.galeraClusters[1].readPort",
                f"is already database.galeraClusters[0].readPort (derived from '{first}')"), problems
    assert any("set database.galeraClusters[1].readPort and writePort" in m for _, m in problems)
    # Setting the ports resolves it.
    db["galeraClusters"][1] = {**db["galeraClusters"][1], "readPort": 5306, "writePort": 5307}
    assert parse(_multi_config(stack_config, db), SECRET).database.named(second).spec.read_port == 5306


BAD = [
    ("a name used by two kinds", {"gtidPairs": [{**MULTI["gtidPairs"][0], "name": "cfgdb"}, MULTI["gtidPairs"][1]]},
     "database.gtidPairs[0].name", "is already database.galeraClusters[0].name's"),
    ("a configdb that names nothing", {"configdb": "nothere"}, "database.configdb", "names no database topology"),
    ("a userdb that names nothing", {"userdbs": ["users-a", "users-z"]}, "database.userdbs[1]",
     "names no database topology"),
    ("a host in two topologies", {"standalone": {"host": "b2"}}, "database.standalone.host",
     "already holds a database server"),
    ("fixed ports taken twice", {"galeraClusters": [{"name": "cfgdb", "nodes": ["a1", "a2", "a3"], "readPort": 4406,
                                                     "writePort": 4408}, MULTI["galeraClusters"][1]]},
     "database.galeraClusters[1].readPort", "is already database.galeraClusters[0].readPort"),
    ("a read port without a write port", {"galeraClusters": [{**MULTI["galeraClusters"][1], "writePort": None}]},
     "database.galeraClusters[0].writePort", "set both readPort and writePort"),
    ("OX's own port", {"galeraClusters": [MULTI["galeraClusters"][0], {**MULTI["galeraClusters"][1], "readPort": 8009,
                                                                       "writePort": 8010}]},
     "database.galeraClusters[1].readPort", "OX's HTTP connector"),
    ("a name the estate uses", {"galeraClusters": [{**MULTI["galeraClusters"][0], "name": "mw"}], "configdb": "mw"},
     "database.galeraClusters[0].name", "clash with the estate's own 'mw'"),
    ("a name like a read instance", {"gtidPairs": [{**MULTI["gtidPairs"][0], "name": "users-a-read"},
                                                   MULTI["gtidPairs"][1]], "userdbs": ["users-a"]},
     "database.gtidPairs[0].name", "ends like"),
    ("one wsrep name for two clusters", {"galeraClusters": [{**MULTI["galeraClusters"][0], "clusterName": "ox"},
                                                            {**MULTI["galeraClusters"][1], "clusterName": "ox"}]},
     "database.galeraClusters[1].clusterName", "wsrep cluster name 'ox' is already"),
    ("one VRRP id for two pairs", {"gtidPairs": [
        {**MULTI["gtidPairs"][0], "mode": "master-master", "floatingAddress": "10.0.1.101/24", "vrrpRouterId": 61},
        MULTI["gtidPairs"][1]]}, "database.gtidPairs[1].vrrpRouterId", "VRRP router id 61 is already"),
    ("a forceBootstrapNode of another cluster", {"galeraClusters": [
        {**MULTI["galeraClusters"][0], "forceBootstrapNode": "b1"}, MULTI["galeraClusters"][1]]},
     "database.galeraClusters[0].forceBootstrapNode", "is not one of database.galeraClusters[0].nodes"),
    ("an even cluster", {"galeraClusters": [{**MULTI["galeraClusters"][0], "nodes": ["a1", "a2"]}]},
     "database.galeraClusters[0].nodes", "odd number"),
    ("a name with capitals", {"galeraClusters": [{**MULTI["galeraClusters"][0], "name": "CfgDb"}]},
     "database.galeraClusters[0].name", "a database topology name"),
    ("a pair's equal server ids", {"gtidPairs": [{**MULTI["gtidPairs"][0], "slave": {"host": "c2", "serverId": 11}},
                                                 MULTI["gtidPairs"][1]]},
     "database.gtidPairs[0].slave.serverId", "already the master's"),
]


@pytest.mark.parametrize("case,edits,path,words", BAD, ids=[c[0] for c in BAD])
def test_bad_multi_database_config_names_the_key(stack_config, case, edits, path, words):
    db = {k: v for k, v in {**MULTI, **edits}.items()}
    for spec in db.get("galeraClusters", []):  # None: leave the key out
        for key in [k for k, v in spec.items() if v is None]:
            del spec[key]
    problems = _problems(stack_config, db)
    assert any(p.startswith(path) and words in m for p, m in problems), problems


def test_the_multi_config_itself_is_valid(stack_config):
    cfg = parse(_multi_config(stack_config), SECRET)
    assert [t.name for t in cfg.database.topologies()] == ["cfgdb", "users-a", "users-b", "users-c", "standalone"]
    assert cfg.database.named("cfgdb").spec.cluster_name == "cfgdb"  # the wsrep name defaults to the name
    assert DbTopology("users-a", "galera", "x", NamedGaleraSpec(name="users-a", nodes=["a", "b", "c"])).ox_name == \
        "oxdb_users_a"


# --- the single-cluster keys: same names and ports as before ---------------------------------


def test_single_cluster_keys_keep_their_names_ports_and_listeners(stack_config):
    rec = run_program(stack_config(), SECRET)
    names = {r.name for r in rec.registrations}
    assert {"ox-galera", "ox-gtid", "ox-dbproxy", "ox-registration-database-oxdb-galera",
            "ox-registration-database-oxdb-galera-read", "ox-registration-database-oxdb-gtid-read"} <= names
    script = script_of(rec.named("ox-dbproxy-mw1-haproxy"))
    assert "listen mysql-read\n    bind 127.0.0.1:3306\n" in script
    assert "listen mysql-write\n    bind 127.0.0.1:3307\n" in script
    assert "of Galera cluster" not in script  # byte-for-byte the single-cluster file
    assert rec.outputs["galeraWriteEndpoint"] == "127.0.0.1:3307"
    assert rec.outputs["databases"]["galera"]["writeEndpoint"] == "127.0.0.1:3307"
    assert rec.outputs["databases"]["gtid"]["kind"] == "gtid"
    assert "-n oxdb_galera -H 127.0.0.1:3307 " in script_of(rec.named("ox-registration-database-oxdb-galera"))


def test_with_several_clusters_each_haproxy_waits_for_the_clustercheck_waypoint(recording):
    """Middleware nodes + checks edges, not middleware nodes x checks: at 1,000 hosts with 20
    clusters the direct edges were 24,000 of the 59,000 (python -m benchmarks.scale)."""
    by_urn = {r.urn: r.name for r in recording.registrations}
    ready = recording.named("ox-dbproxy-clusterchecks-ready")
    assert sorted(by_urn[u] for u in ready.dependencies if "clustercheck" in by_urn[u]) == sorted(
        f"ox-dbproxy-{n}-clustercheck" for n in ("a1", "a2", "a3", "b1", "b2", "b3"))
    for mw in ("mw1", "mw2"):
        waits = [by_urn[u] for u in recording.named(f"ox-dbproxy-{mw}-haproxy").dependencies]
        assert "ox-dbproxy-clusterchecks-ready" in waits and not [w for w in waits if w.endswith("-clustercheck")]

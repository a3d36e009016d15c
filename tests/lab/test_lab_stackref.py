"""A composed estate for real (StackReference): two database-only stacks and a middleware stack
that reads them. lab-sref-galera (the Galera cluster `users-a` on sgal1-3) and lab-sref-gtid (the
GTID pair `users-b` on sgt1/sgt2) each export their `databases`, `databaseClients` and secret
`databaseCredentials` and admit smw1 (database.clients: 10.225.0.31/32) and nobody else;
lab-sref-mw (smw1, its standalone configdb on scfg1, a filestore on snfs1) lists both in
database.fromStacks: smw1's HAProxy gets a port pair for `users-a` on the ports that stack chose,
and both userdbs are registered, each read instance with `-M` its own master's id, with the
producer's password.

The three stacks share one network, subnet 10.225.0.0/24 on the bridge oxlabs0, each in its own
lab state dir (composed stacks are owned separately); they come up in order (galera, gtid, mw) and
go down in reverse. About two minutes.
"""

from __future__ import annotations

import base64
import json
from contextlib import ExitStack

import pytest

from estate import estate_up, requires_lab

pytestmark = requires_lab

SUBNET, BRIDGE = "10.225.0.0/24", "oxlabs0"
GALERA, GTID, MW = "lab-sref-galera", "lab-sref-gtid", "lab-sref-mw"
GALERA_NODES = {"sgal1": "10.225.0.11", "sgal2": "10.225.0.12", "sgal3": "10.225.0.13"}
# Day 2: a Galera cluster has an odd number of nodes (config.py refuses 4), so two join.
JOINERS = {"sgal4": "10.225.0.14", "sgal5": "10.225.0.15"}
SGT1, SGT2 = "10.225.0.21", "10.225.0.22"
SMW1, SCFG1 = "10.225.0.31", "10.225.0.32"
CLIENTS = "database.clients=[10.225.0.31/32]"


@pytest.fixture(scope="module")
def sref(tmp_path_factory):
    """The three estates, up in order; down in reverse order, whatever happened."""
    with ExitStack() as stack:
        estates = {name: stack.enter_context(estate_up(name, SUBNET, BRIDGE, tmp_path_factory.mktemp(name)))
                   for name in (GALERA, GTID, MW)}
        yield estates


def _remote(sref, key: str) -> dict:
    return sref[MW].state["outputs"]["remoteDatabases"][key]


def _credentials(sref, producer: str) -> dict:
    """The producer's `databaseCredentials` output (a secret in its state), unwrapped."""
    from lab import runner_state as rs

    value = sref[producer].state["outputs"]["databaseCredentials"]
    assert rs.is_secret(value), value
    return rs.unwrap(value)


def _connects(estate, host: str, address: str, port: int) -> bool:
    """A TCP connection from lab host `host` to address:port, within 3 s."""
    return estate.run_on(host, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}' && echo open || echo closed",
                         check=False) == "open"


def _changed(record: dict) -> dict[str, str]:
    """step name -> operation, for every resource that is not unchanged."""
    return {r["name"]: r["op"] for r in record["plan"] if r["op"] != "same"}


def test_consumer_verifies_and_registers_the_remote_userdbs(sref):
    mw = sref[MW]
    out = mw.first_up.stdout
    assert "verify: " in out and "FAIL" not in out, out[-3000:]
    a = _remote(sref, f"{GALERA}/users-a")
    for check in ("configdb: databases as registered", "registration chain: slave -M master id",
                  "configdb rows: each read pool under its write pool",
                  "configdb rows: other stacks' userdbs at their endpoints",
                  f"remote {GALERA}/users-a: writes through {int(a['writePort'])} land on one node",
                  f"remote {GALERA}/users-a: reads through {int(a['readPort'])} rotate",
                  f"remote {GTID}/users-b: write instance {SGT1} answers",
                  f"remote {GTID}/users-b: read instance {SGT2} answers"):
        assert f"ok    {check}" in out, (check, out[-3000:])
    ids = {k: int(v) for k, v in mw.state["outputs"]["registeredDatabaseIds"].items()}
    assert {"oxdb_users_a", "oxdb_users_a_read", "oxdb_users_b", "oxdb_users_b_read"} <= set(ids), ids
    assert len(set(ids.values())) == len(ids)
    # The configdb's own rows on scfg1: each read pool in the db_cluster row of its own write pool.
    rows = mw.ssh.sql("scfg1", "SELECT write_db_pool_id, read_db_pool_id FROM configdb.db_cluster")
    pairs = {tuple(int(x) for x in line.split("\t")) for line in rows.splitlines()}
    assert {(ids["oxdb_users_a"], ids["oxdb_users_a_read"]), (ids["oxdb_users_b"], ids["oxdb_users_b_read"])} <= pairs
    urls = dict(line.split("\t") for line in mw.ssh.sql("scfg1", "SELECT name, url FROM configdb.db_pool").splitlines())
    assert urls["oxdb_users_a"].startswith(f"jdbc:mysql://127.0.0.1:{int(a['writePort'])}/")
    assert urls["oxdb_users_a_read"].startswith(f"jdbc:mysql://127.0.0.1:{int(a['readPort'])}/")
    assert urls["oxdb_users_b"].startswith(f"jdbc:mysql://{SGT1}/")
    assert urls["oxdb_users_b_read"].startswith(f"jdbc:mysql://{SGT2}/")
    print("\n".join(line for line in out.splitlines() if line.startswith(("ok    ", "verify:"))))


def test_smw1_reaches_each_remote_database_through_its_haproxy(sref):
    shell = sref[MW].ssh
    produced = sref[GALERA].state["outputs"]["databases"]["users-a"]
    a = _remote(sref, f"{GALERA}/users-a")
    assert (a["readPort"], a["writePort"]) == (produced["readPort"], produced["writePort"])
    password = _credentials(sref, GALERA)["password"]
    write, read = f"127.0.0.1:{int(a['writePort'])}", f"127.0.0.1:{int(a['readPort'])}"
    assert shell.sql("smw1", "SELECT @@wsrep_cluster_name", write, password) == "users-a"
    writers = {shell.sql("smw1", "SELECT @@hostname", write, password) for _ in range(6)}
    assert len(writers) == 1 and writers <= set(GALERA_NODES) | set(JOINERS), writers
    readers = {shell.sql("smw1", "SELECT @@hostname", read, password) for _ in range(9)}
    assert len(readers) >= 2 and readers <= set(GALERA_NODES) | set(JOINERS), readers
    # The GTID pair at its own addresses (as OX registered them), with its own stack's password.
    b_password = _credentials(sref, GTID)["password"]
    b = _remote(sref, f"{GTID}/users-b")
    assert (b["writeHost"], b["readHost"]) == (SGT1, SGT2)
    assert shell.sql("smw1", "SELECT CONCAT(@@hostname, ' ', @@read_only)", f"{b['writeHost']}:3306", b_password) == "sgt1 OFF"
    assert shell.sql("smw1", "SELECT CONCAT(@@hostname, ' ', @@read_only)", f"{b['readHost']}:3306", b_password) == "sgt2 ON"
    print(f"\nusers-a writes {writers}, reads {readers}; users-b {b}")


def test_nobody_else_reaches_the_remote_databases(sref):
    """scfg1 is in the consumer's estate, but not a client of either database stack: their
    firewalls drop it on 3306 (and on clustercheck's 9200), while smw1 gets through."""
    mw = sref[MW]
    for address, port in ((GALERA_NODES["sgal1"], 3306), (GALERA_NODES["sgal1"], 9200), (SGT1, 3306)):
        assert _connects(mw, "smw1", address, port), f"smw1 -> {address}:{port}"
        assert not _connects(mw, "scfg1", address, port), f"scfg1 -> {address}:{port}"
    # And the `openexchange` account on each producer admits the client only (and its own hosts).
    for producer, host in ((GALERA, "sgal1"), (GTID, "sgt1")):
        hosts = set(sref[producer].ssh.sql(host, "SELECT host FROM mysql.user WHERE user = 'openexchange'").split())
        assert SMW1 in hosts and SCFG1 not in hosts and not {"%", "10.225.0.0/255.255.255.0"} & hosts, hosts


def test_the_remote_password_is_a_secret_in_the_consumers_state(sref):
    """The producers' password reaches the consumer's registration steps over stdin (as
    `CONFIGDB_PASSWORD=<base64>`): in the consumer's state only inside a secret, in neither its
    outputs nor its progress output."""
    from lab import runner_state as rs

    mw = sref[MW]
    clear = {_credentials(sref, p)["password"] for p in (GALERA, GTID)}
    passwords = clear | {base64.b64encode(p.encode()).decode() for p in clear}
    in_clear: list[str] = []
    in_secret: list[str] = []

    def walk(value, path: str, secret: bool) -> None:
        secret = secret or rs.is_secret(value)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}/{k}", secret)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]", secret)
        elif isinstance(value, str) and any(p in value for p in passwords):
            (in_secret if secret else in_clear).append(path)

    state = mw.state
    walk(state, "", False)
    assert in_clear == [], f"the producers' password in clear in the consumer's state at {in_clear}"
    # Not vacuous: the state does hold it, as a secret (the registration steps' stdin).
    assert in_secret and all("/inputs/stdin" in path for path in in_secret), in_secret
    assert not any(p in json.dumps(state["outputs"].get("remoteDatabases")) for p in passwords)
    assert not any(p in mw.first_up.stdout + mw.first_up.stderr for p in passwords)


def test_galera_nodes_added_reach_the_consumer_as_one_haproxy_update(sref):
    """Day 2: sgal4 and sgal5 join users-a in its own stack (a Galera cluster keeps an odd number
    of nodes: one more node alone is refused by the config). The consumer's next preview plans
    exactly one step, smw1's HAProxy (the new nodes in users-a's listeners); its up runs that, and
    reads through the read port reach the new nodes. (The producer stays at five nodes: the other
    tests hold either way.)"""
    galera, mw = sref[GALERA], sref[MW]
    hosts = [{"name": n, "address": a} for n, a in {**GALERA_NODES, **JOINERS}.items()]
    clusters = [{"name": "users-a", "nodes": [h["name"] for h in hosts], "sstMethod": "rsync"}]
    galera.up("--set", f"hosts={json.dumps(hosts)}", "--set", f"database.galeraClusters={json.dumps(clusters)}")
    assert galera.state["outputs"]["databases"]["users-a"]["nodeAddresses"][-2:] == list(JOINERS.values())

    planned = mw.preview()
    assert planned["sshConnections"] == 0
    changed = _changed(planned)
    assert changed == {"ox-dbproxy-smw1-haproxy": "update"}, changed
    mw.up()
    assert _changed(mw.record()) == changed and mw.record()["executed"] == 1
    assert _remote(sref, f"{GALERA}/users-a")["nodeAddresses"][-2:] == list(JOINERS.values())
    password = _credentials(sref, GALERA)["password"]
    read = f"127.0.0.1:{int(_remote(sref, f'{GALERA}/users-a')['readPort'])}"
    readers = {mw.ssh.sql("smw1", "SELECT @@hostname", read, password) for _ in range(15)}
    assert set(JOINERS) <= readers, readers
    print(f"\nconsumer plan after the joins: {changed}; reads reach {sorted(readers)}")

"""The lab verifier's database checks: each Galera cluster and GTID pair, clustercheck, the
read/write split through HAProxy, another stack's userdbs and the configdb's rows.

Split from lab/verify.py (which keeps the SSH shell, the other tiers' checks and the report) so the
database checks read on their own. They import Shell, Check, _password and _eventually (shared
with the other checks) from verify.py, which imports this module only inside verify(): no cycle.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Callable

from components.db.dbproxy import ProxiedCluster
from lab.verify import Check, Shell, _eventually, _password

SCHEMA = "ox_lab_verify"


def _write_marker(shell: Shell, host: str) -> str:
    """Insert a fresh marker row into the verifier's own table on `host`; the marker."""
    marker = uuid.uuid4().hex
    shell.sql(host, f"CREATE DATABASE IF NOT EXISTS {SCHEMA}; CREATE TABLE IF NOT EXISTS {SCHEMA}.rows "
                    f"(id INT AUTO_INCREMENT PRIMARY KEY, marker VARCHAR(64)) ENGINE=InnoDB; "
                    f"INSERT INTO {SCHEMA}.rows (marker) VALUES ('{marker}')")
    return marker


def _marker_count(marker: str) -> str:
    return f"SELECT COUNT(*) FROM {SCHEMA}.rows WHERE marker = '{marker}'"


def _topologies(outputs: dict, kind: str) -> list[tuple[str, dict, list[str]]]:
    """(name, entry of the `databases` output, host names) of every topology of that kind: this
    stack's own (another stack's, read through database.fromStacks, are in `remoteDatabases`)."""
    by_address = {a: h for h, a in outputs["hostAddresses"].items()}
    return [(name, db, [by_address[a] for a in db["nodeAddresses"]])
            for name, db in (outputs.get("databases") or {}).items() if db["kind"] == kind]


def _configdb_host(outputs: dict) -> str | None:
    """The host whose MariaDB holds the configdb (its topology's first node: a Galera node, a GTID
    pair's master, the standalone), or None when this stack has no configdb of its own."""
    by_address = {a: h for h, a in outputs["hostAddresses"].items()}
    for db in (outputs.get("databases") or {}).values():
        if db.get("configdb"):
            return by_address.get(db["nodeAddresses"][0])
    return None


def _via(endpoint: str) -> str:
    """`address[:port]` as Shell.sql's `via` (address:port)."""
    return endpoint if ":" in endpoint else f"{endpoint}:3306"


def _galera(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """Every Galera cluster: each node Primary, Synced and ready in a cluster of its size, and a row
    written on the first node read on the last."""
    checks = []
    for _, _, nodes in _topologies(outputs, "galera"):
        for node in nodes:
            out = shell.sql(node, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size',"
                                  "'wsrep_cluster_status','wsrep_local_state_comment','wsrep_ready')")
            values = dict(line.split("\t") for line in out.splitlines())
            ok = (values.get("wsrep_cluster_size") == str(len(nodes)) and values.get("wsrep_cluster_status") == "Primary"
                  and values.get("wsrep_local_state_comment") == "Synced" and values.get("wsrep_ready") == "ON")
            checks.append((f"galera {node}", ok, " ".join(f"{k}={v}" for k, v in sorted(values.items()))))
        marker = _write_marker(shell, nodes[0])
        seen = shell.sql(nodes[-1], _marker_count(marker))
        checks.append((f"galera row {nodes[0]} -> {nodes[-1]}", seen == "1",
                       f"written on {nodes[0]}, read on {nodes[-1]}"))
    return checks


def _gtid(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """Each replication link of every GTID pair (master -> slave, and back in master-master):
    threads running, and a row written on its source read on the replica."""
    checks = []
    for _, db, (master, slave) in _topologies(outputs, "gtid"):
        for source, replica in [(master, slave)] + ([(slave, master)] if db["mode"] == "master-master" else []):
            query = _marker_count(_write_marker(shell, source))
            seen = _eventually(lambda: shell.sql(replica, query) == "1", 10)
            _, status, _ = shell.run(replica, "mariadb -e 'SHOW SLAVE STATUS\\G'")
            threads = dict(re.findall(r"^\s*(Slave_IO_Running|Slave_SQL_Running|Seconds_Behind_Master): (\S+)",
                                      status, re.M))
            checks += [
                (f"gtid threads {replica}", threads.get("Slave_IO_Running") == "Yes"
                 and threads.get("Slave_SQL_Running") == "Yes", " ".join(f"{k}={v}" for k, v in threads.items())),
                (f"gtid row {source} -> {replica}", seen, f"written on {source}, read on {replica}"),
            ]
    return checks


def _clustercheck(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """A database stack serving other stacks' middleware (database.clients) runs clustercheck on its
    Galera nodes for their HAProxy: every node answers / (Synced), and the writer row names one of
    the cluster's nodes, or none yet when no HAProxy has asked. /master is not asked: it may claim
    the writer role, and a verifier changes nothing."""
    if not outputs.get("databaseClients"):
        return []
    checks = []
    for name, db, nodes in _topologies(outputs, "galera"):
        codes = {}
        for node in nodes:
            _, out, _ = shell.run(node, "curl -s --max-time 3 -o /dev/null -w '%{http_code}' http://127.0.0.1:9200/")
            codes[node] = out
        writer = shell.sql(nodes[0], "SELECT IFNULL((SELECT node FROM ox_clustercheck.writer WHERE id = 1), '')")
        checks.append((f"clustercheck {name}: every node Synced, writer row",
                       all(c == "200" for c in codes.values()) and writer in ("", *db["nodeAddresses"]),
                       " ".join(f"{n}={c}" for n, c in codes.items()) + f"; writer {writer or '(none yet)'}"))
    return checks


def _read_write_split(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """Through every middleware node's HAProxy, for each Galera cluster: writes land on one node,
    reads rotate."""
    if not outputs.get("galeraProxies"):
        return []
    mw = [p["host"] for p in outputs["galeraProxies"]]
    password = _password(state, "configdb-password")
    checks = []
    for name, db, _ in _topologies(outputs, "galera"):
        checks += _split_through_haproxy(shell, mw, name, db["writeEndpoint"], db["readEndpoint"], password)
    return checks


def _remote_databases(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """Another stack's userdbs (database.fromStacks), as OX here reaches them, from every middleware
    node with the password OX registered for each (its db_pool row): a Galera cluster through the
    node's HAProxy (writes on one node of that cluster, reads rotating over its nodes), a GTID pair
    or standalone at its own addresses."""
    remote = outputs.get("remoteDatabases")
    if not remote:
        return []
    mw = list(outputs.get("middlewareBackends") or {})
    configdb = _configdb_host(outputs)
    checks: list[Check] = []
    for key, db in sorted(remote.items()):
        password = shell.sql(configdb, f"SELECT password FROM configdb.db_pool WHERE name = '{db['userdb']}'")
        write, read = db["writeHost"], db["readHost"]
        if db["kind"] == "galera":
            # Each answer names its cluster and its node (wsrep_node_address): one of that cluster's.
            nodes = set(db["nodeAddresses"])

            def belongs(answer: str, cluster=db["clusterName"], nodes=nodes) -> bool:
                name, _, address = answer.split()
                return name == cluster and address.split(":")[0] in nodes

            checks += _split_through_haproxy(
                shell, mw, key.split("/", 1)[1], write, read, password, label=f"remote {key}: ",
                query="SELECT CONCAT(@@wsrep_cluster_name, ' ', @@hostname, ' ', @@wsrep_node_address)",
                belongs=belongs)
        else:
            for role, endpoint in (("write", write), ("read", read)):
                if not endpoint:
                    continue
                answers = {h: shell.sql(h, "SELECT CONCAT(@@hostname, ' read_only=', @@read_only)", _via(endpoint),
                                        password) for h in mw}
                checks.append((f"remote {key}: {role} instance {endpoint} answers",
                               bool(answers) and all(answers.values()), "; ".join(f"{h}: {a}" for h, a in answers.items())))
    return checks


def _split_through_haproxy(shell: Shell, mw: list[str], cluster: str, write: str, read: str, password: str,
                           label: str = "", query: str = "SELECT @@hostname",
                           belongs: Callable[[str], bool] = lambda answer: True) -> list[Check]:
    """One Galera cluster through every middleware node's HAProxy (`write`/`read`: 127.0.0.1:port):
    writes from all of them land on one node, reads rotate on each; every answer to `query` is one
    the cluster may give (`belongs`)."""
    def ask(endpoint: str) -> dict[str, Counter]:
        return {h: Counter(shell.sql(h, query, endpoint, password) for _ in range(6)) for h in mw}

    one_writer = {w for c in ask(write).values() for w in c}
    readers: dict[str, Counter] = {}

    def rotate() -> bool:
        readers.update(ask(read))
        return all(len(c) > 1 and all(map(belongs, c)) for c in readers.values())

    # Right after a recovery clustercheck can keep a node out of mysql-read for a moment (not
    # Synced yet, or a donor; rise 2 at 500 ms): a first sample on one node is not yet a failure.
    # (CI saw {'gdb1': 6} on both middleware hosts once, just after a converge rejoined a node.)
    rotated = _eventually(rotate, 15)
    detail = "; ".join(f"{h}: {dict(c)}" for h, c in readers.items())
    if not rotated:
        listener = ProxiedCluster(cluster, [], 0, 0).listeners[0]
        detail += f"; {listener} in HAProxy: " + "; ".join(f"{h}: {_haproxy_servers(shell, h, listener)}"
                                                           for h in mw)
    return [
        (f"{label}writes through {write.rpartition(':')[2]} land on one node",
         len(one_writer) == 1 and all(map(belongs, one_writer)),
         f"every middleware host wrote to {sorted(one_writer)}"),
        (f"{label}reads through {read.rpartition(':')[2]} rotate", rotated, detail),
    ]


def _haproxy_servers(shell: Shell, host: str, listener: str) -> str:
    """HAProxy's view of a listener's servers on `host`: name status (last check), for a failure's detail."""
    _, out, _ = shell.run(host, "echo 'show stat' | socat - unix-connect:/run/haproxy/admin.sock")
    rows = [line.split(",") for line in out.splitlines() if line.startswith(f"{listener},")]
    return ", ".join(f"{r[1]} {r[17]} ({r[36] if len(r) > 36 else '?'})" for r in rows
                     if r[1] not in ("FRONTEND", "BACKEND"))


def _configdb_rows(shell: Shell, state: dict, outputs: dict) -> list[Check]:
    """The configdb's own tables, read as root on its host: a db_pool row per registered database
    (this stack's and other stacks' userdbs alike) with the registered id, each read pool in the
    db_cluster row of its own write pool, and each pool's URL at the address OX reaches it by."""
    ids = outputs.get("registeredDatabaseIds")
    host = _configdb_host(outputs)
    if ids is None or host is None:
        return []
    ids = {n: int(i) for n, i in ids.items()}
    pools = {row.split("\t")[0]: row.split("\t")[1:] for row in shell.sql(
        host, "SELECT name, db_pool_id, url FROM configdb.db_pool").splitlines()}
    clusters = {tuple(int(x) for x in row.split("\t")) for row in shell.sql(
        host, "SELECT write_db_pool_id, read_db_pool_id FROM configdb.db_cluster").splitlines()}
    wanted = {(i, ids.get(f"{n}_read", 0)) for n, i in ids.items() if not n.endswith("_read")}
    checks = [
        ("configdb rows: db_pool as registered", {n: int(p[0]) for n, p in pools.items()} == ids,
         f"{ {n: p[0] for n, p in pools.items()} }"),
        ("configdb rows: each read pool under its write pool", clusters == wanted,
         f"db_cluster (write, read) {sorted(clusters)}"),
    ]
    # Another stack's userdbs: registered at the endpoints this stack reaches them by.
    urls, bad = {}, []
    for key, db in (outputs.get("remoteDatabases") or {}).items():
        for name, endpoint in ((db["userdb"], db["writeHost"]), (f"{db['userdb']}_read", db["readHost"])):
            if endpoint:
                url = (pools.get(name) or ["", ""])[1]
                urls[name] = url
                if not url.startswith(f"jdbc:mysql://{endpoint}/"):
                    bad.append(f"{name}: {url or 'no row'} (expected {endpoint})")
    if urls:
        checks.append(("configdb rows: other stacks' userdbs at their endpoints", not bad,
                       "; ".join(bad) or "; ".join(f"{n} {u.split('?')[0]}" for n, u in sorted(urls.items()))))
    return checks

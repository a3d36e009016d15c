"""The database tier for real: a 3-node Galera cluster behind HAProxy, and a GTID master-master pair.

One lab estate (stack lab-db) for the module, in its own subnet. Each test sets up what it needs
(a test that kills a node brings the cluster back with `up --converge` first), so they pass in
any order.
"""

import re
import threading
import time

import pytest

from estate import DB_FILES, lab_estate, requires_lab

pytestmark = requires_lab

GALERA = ["gdb1", "gdb2", "gdb3"]
MIDDLEWARE = ["gmw1", "gmw2"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    from lab.verify import _password

    with lab_estate("lab-db", "10.216.0.0/24", "oxlabd0", tmp_path_factory.mktemp("lab-db")) as estate:
        estate.first_up = estate.up()
        estate.first_record = estate.record()
        estate.ssh = estate.shell()
        estate.password = _password(estate.state, "configdb-password")
        yield estate
        estate.ssh.close()


def _writer(db, mw: str) -> str:
    return db.ssh.sql(mw, "SELECT @@hostname", "127.0.0.1:3307", db.password)


def _haproxy_writers(db, mw: str) -> list[str]:
    _, out, _ = db.ssh.run(mw, "echo 'show stat' | socat - unix-connect:/run/haproxy/admin.sock")
    return [row.split(",")[1] for row in out.splitlines()
            if row.startswith("mysql-write,") and row.split(",")[17] == "UP" and row.split(",")[1] not in
            ("FRONTEND", "BACKEND")]


def _master_answers(db) -> list[str]:
    """Which Galera nodes' clustercheck answer 200 on /master right now."""
    return [n for n in GALERA
            if db.ssh.run(n, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9200/master")[1] == "200"]


def _down(db) -> list[str]:
    return [n for n in GALERA if db.ssh.run(n, "mariadb-admin ping")[0] != 0]


def _all_synced(db) -> None:
    """Every Galera node up and Synced: after a kill -9 (no supervisor in the lab), a converge."""
    if _down(db):
        db.up("--converge")
    assert _down(db) == []


def test_up_from_scratch_verifies(db):
    out = db.first_up.stdout
    assert "verify: " in out and "FAIL" not in out, out[-4000:]
    for check in ("galera row gdb1 -> gdb3", "gtid row gdb4 -> gdb5", "gtid row gdb5 -> gdb4",
                  "writes through 3307 land on one node", "reads through 3306 rotate"):
        assert f"ok    {check}" in out, check


def test_timings_are_recorded(db):
    record = db.first_record
    ends = {s["name"]: s["end"] for s in record["steps"] if s.get("end") is not None}
    synced = ends["ox-galera-gdb3-join"] - min(s["start"] for s in record["steps"] if s["name"].startswith("ox-galera"))
    pair = ends["ox-gtid-gdb4-replica"] - min(s["start"] for s in record["steps"] if s["name"].startswith("ox-gtid"))
    print(f"\n3-node Galera Synced in {synced:.1f}s; GTID master-master pair replicating in {pair:.1f}s")
    assert 0 < synced < 600 and 0 < pair < 600


def test_tuning_dropped_for_10_11_is_absent_and_durability_is_ox(db):
    _all_synced(db)
    assert db.ssh.sql("gdb1", "SELECT @@innodb_flush_log_at_trx_commit, @@sql_mode, @@wsrep_sync_wait") == \
        "0\tNO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION\t1"
    _, text, _ = db.ssh.run("gdb1", "cat /etc/mysql/ox.conf.d/tunings.cnf")
    assert "innodb_locks_unsafe_for_binlog: removed in 10.5" in text
    assert not re.search(r"^innodb_locks_unsafe_for_binlog", text, re.M)


def test_sst_user_has_least_privileges(db):
    _all_synced(db)
    grants = db.ssh.sql("gdb3", "SHOW GRANTS FOR 'sstuser'@'localhost'")
    assert grants.startswith("GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR ON *.*")
    _, mode, _ = db.ssh.run("gdb2", "stat -c '%a %U:%G' /etc/mysql/ox.conf.d/sst-auth.cnf /root/.my.cnf")
    assert mode.splitlines() == ["640 root:mysql", "600 root:root"]


DB_HOSTS = GALERA + ["gdb4", "gdb5"]
# By MariaDB's design, not a log: a replica keeps its source's login in master.info, as a client
# keeps its own in ~/.my.cnf; without it, it could not reconnect after a restart.
REPLICA_LOGIN = ("replication-password", "/var/lib/mysql/master.info")


def _plaintext_passwords(db) -> dict[str, list[tuple[str, int, str]]]:
    return db.plaintext_passwords(DB_HOSTS, db.ssh)


def _report(when: str, found: dict) -> tuple[int, int]:
    logged = {h: sum(c for n, c, f in rows if (n, f) != REPLICA_LOGIN) for h, rows in found.items()}
    stored = {h: sum(c for n, c, f in rows if (n, f) == REPLICA_LOGIN) for h, rows in found.items()}
    print(f"\nplaintext generated passwords under {DB_FILES} {when}: "
          + ", ".join(f"{h} {n}" for h, n in logged.items()) + f"; total {sum(logged.values())}"
          + f" (and the replica's own login in master.info: {sum(stored.values())})")
    return sum(logged.values()), sum(stored.values())


def test_no_password_in_clear_in_database_files_after_deploy_and_converge(db):
    """Issue 9: account statements carry hashes, so the binlogs, relay logs and galera.cache (which
    keep statements as sent) and every other file in the datadirs and logs hold no generated password.
    A converge re-runs the account steps: they find every account right and send nothing. The one
    password a DB host must keep is a replica's login to its source (master.info on the GTID pair)."""
    _all_synced(db)
    logged, stored = _report("after deploy", _plaintext_passwords(db))
    assert logged == 0
    statements = _account_statements(db)
    db.up("--converge")
    found = _plaintext_passwords(db)
    logged, stored = _report("after converge", found)
    assert logged == 0
    for host in ("gdb4", "gdb5"):  # GTID replicas both ways (master-master): exactly their login
        assert [(n, f) for n, _, f in found[host]] == [REPLICA_LOGIN], found[host]
    # The converge re-ran the bootstrap (root, SST user): it found them right and sent no statement.
    assert _account_statements(db) == statements


def _account_statements(db) -> dict[str, int]:
    """Per DB host, how many statements setting a credential its galera.cache and binlogs hold (as sent)."""
    count = ("cat /var/lib/mysql/galera.cache /var/lib/mysql/mysql-bin.[0-9]* 2>/dev/null "
             "| grep -aoE \"(CREATE|ALTER) USER [[:print:]]{1,160}(BY PASSWORD|USING) '[*][0-9A-F]{40}'\" | wc -l")
    return {h: int(db.ssh.run(h, count, timeout=300)[1]) for h in DB_HOSTS}


def test_writer_moves_within_10s_after_kill_9_and_haproxies_agree(db):
    _all_synced(db)
    writer = _writer(db, "gmw1")
    assert [_writer(db, mw) for mw in MIDDLEWARE] == [writer, writer]
    assert _master_answers(db) == [writer]

    samples: list[tuple[float, dict, list]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            samples.append((time.monotonic(), {mw: _haproxy_writers(db, mw) for mw in MIDDLEWARE},
                            _master_answers(db)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pid = db.run_on(writer, "cat /run/mysqld/mysqld.pid")
    killed = time.monotonic()
    db.run_on(writer, f"kill -9 {pid}")  # the lab started this mariadbd; killed by its pid

    moved = None
    while time.monotonic() - killed < 30:
        try:
            now = _writer(db, "gmw1")
        except RuntimeError:
            now = None
        if now and now != writer:
            moved = time.monotonic() - killed
            break
        time.sleep(0.1)
    time.sleep(2)
    stop.set()
    watcher.join(timeout=30)
    print(f"\nwrites moved from {writer} to {now} in {moved}s; {len(samples)} samples")
    assert moved is not None and moved < 10, f"writes did not move off {writer} within 10 s"
    for _, per_haproxy, masters in samples:
        assert all(len(w) <= 1 for w in per_haproxy.values()), per_haproxy  # never two writers in one HAProxy
        assert len(masters) <= 1, masters  # clustercheck names at most one writer at any moment
    settled = samples[-1][1]
    assert len({tuple(w) for w in settled.values()}) == 1, settled  # and every HAProxy follows it


def test_converge_repairs_the_crashed_writer_and_keeps_rows_and_datadirs(db):
    """A populated cluster whose writer crashed (kill -9). The lab has no supervisor to restart a
    crashed mariadbd (systemd does that on real hosts), so the node stays down: a plain `up`
    changes nothing, as `pulumi up` would not; `up --converge` must bring it back by a normal
    join, lose no row, replace no datadir, and not hand the writer role back to it.
    """
    if not _down(db):
        crashed = _writer(db, "gmw1")
        db.run_on(crashed, "kill -9 $(cat /run/mysqld/mysqld.pid)")  # the lab started it; killed by pid
        deadline = time.monotonic() + 30
        while _writer_or_none(db) in (None, crashed) and time.monotonic() < deadline:
            time.sleep(0.2)
    writer = _writer(db, "gmw1")
    db.ssh.sql(writer, "CREATE DATABASE IF NOT EXISTS keep; CREATE TABLE IF NOT EXISTS keep.t "
                         "(id INT AUTO_INCREMENT PRIMARY KEY, v INT); INSERT INTO keep.t (v) VALUES (1),(2),(3),(4)")
    db.ssh.sql("gdb4", "CREATE DATABASE IF NOT EXISTS keep; CREATE TABLE IF NOT EXISTS keep.t "
                         "(id INT AUTO_INCREMENT PRIMARY KEY, v INT); INSERT INTO keep.t (v) VALUES (1),(2)")
    nodes = GALERA + ["gdb4", "gdb5"]
    down = [n for n in GALERA if db.ssh.run(n, "mariadb-admin ping")[0] != 0]
    assert len(down) == 1, down
    inodes = {n: db.ssh.run(n, "stat -c %i /var/lib/mysql")[1] for n in nodes}
    expected = {n: "4" if n in GALERA else "2" for n in nodes}
    assert {n: _wait_row_count(db, n, expected[n]) for n in nodes if n not in down} == \
        {n: expected[n] for n in nodes if n not in down}

    plain = db.lab("up")
    assert db.record()["executed"] == 0 and _down(db) == down, plain.stdout[-2000:]

    result = db.up("--converge")
    assert "FAIL" not in result.stdout, result.stdout[-3000:]
    assert {n: _wait_row_count(db, n, expected[n]) for n in nodes} == expected
    assert {n: db.ssh.run(n, "stat -c %i /var/lib/mysql")[1] for n in nodes} == inodes
    # One writer everywhere, and not the rejoined node: the role moves only off a failed or donor
    # writer (the rejoin's state transfer may pick the writer as donor), never back on a rejoin.
    after = [_writer(db, mw) for mw in MIDDLEWARE]
    assert len(set(after)) == 1 and after[0] != down[0], (writer, after, down)


def _writer_or_none(db):
    try:
        return _writer(db, "gmw1")
    except RuntimeError:
        return None


def _wait_row_count(db, node: str, expected: str) -> str:
    """Replication to the GTID slave is asynchronous: give the rows a moment to arrive."""
    deadline = time.monotonic() + 30
    count = None
    while time.monotonic() < deadline:
        try:
            count = db.ssh.sql(node, "SELECT COUNT(*) FROM keep.t")
        except RuntimeError:
            count = None
        if count == expected:
            break
        time.sleep(0.3)
    return count

"""The database tier for real: a 3-node Galera cluster behind HAProxy, and a GTID master-master pair.

One lab estate (stack lab-db) for the module, in its own subnet. Each test sets up what it needs
(a test that kills a node brings the cluster back with `up --converge` first), so they pass in
any order.
"""

import re
import threading
import time

import pytest

from estate import DB_FILES, lab_estate, record_figures, requires_lab

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
        # What the first joins did, kept before any test starts a node again (tests run in any order).
        estate.first_joins = {n: _join_stderr(estate, n) for n in GALERA[1:]}
        estate.first_datadirs = {n: estate.ssh.run(n, "ls /var/lib/mysql")[1].split() for n in GALERA}
        estate.password = _password(estate.state, "configdb-password")
        yield estate
        estate.ssh.close()


def _join_stderr(db, node: str) -> str:
    """The stderr of the node's join step at its last run (the state keeps it; the step streams
    nothing, as it reads a secret)."""
    return next(c["stderr"] for urn, c in db.state["commands"].items() if urn.endswith(f"::ox-galera-{node}-join"))


def _writer(db, mw: str) -> str:
    return db.ssh.sql(mw, "SELECT @@hostname", "127.0.0.1:3307", db.password)


def _haproxy_writers(db, mw: str) -> list[str]:
    _, out, _ = db.ssh.run(mw, "echo 'show stat' | socat - unix-connect:/run/haproxy/admin.sock")
    return [row.split(",")[1] for row in out.splitlines()
            if row.startswith("mysql-write,") and row.split(",")[17] == "UP" and row.split(",")[1] not in
            ("FRONTEND", "BACKEND")]


def _master_answers(db) -> list[str]:
    """Which Galera nodes' clustercheck answer 200 on /master right now: asked at the same moment,
    from a middleware host (as HAProxy asks). An answer that took longer than 0.2 s is left out: it
    speaks for another moment than the others (a claim waits for the new Primary view to commit,
    while the old writer answered before its crash)."""
    addresses = db.state["outputs"]["hostAddresses"]
    asks = " ".join(f"{{ echo {n} $(curl -s -m 2 -o /dev/null -w '%{{http_code}} %{{time_total}}' "
                    f"http://{addresses[n]}:9200/master); }} &" for n in GALERA)
    _, out, _ = db.ssh.run("gmw2", f"{asks} wait")
    answers = [line.split() for line in out.splitlines()]
    return sorted(a[0] for a in answers if len(a) == 3 and a[1] == "200" and float(a[2]) < 0.2)


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


# mariabackup's joiner leaves these in the datadir it received; an rsync SST copies the donor's
# datadir, and no node of a new cluster has them (the bootstrap node never received a transfer).
MARIABACKUP_MARK = "xtrabackup_galera_info"


def test_first_joins_into_the_empty_cluster_used_rsync_once(db):
    """A new cluster holds no data: each first join asked a Synced member and used rsync (no fixed
    10 s donor sleep) for that start only; every node runs with the configured method again."""
    assert MARIABACKUP_MARK not in db.first_datadirs["gdb1"]
    _all_synced(db)  # a fault test before this one may have killed a node (tests run in any order)
    for node in GALERA[1:]:
        assert "state transfer: rsync, for this start only" in db.first_joins[node], db.first_joins[node]
        assert MARIABACKUP_MARK not in db.first_datadirs[node], db.first_datadirs[node]
    for node in GALERA:
        assert db.ssh.run(node, "test ! -e /etc/mysql/ox.conf.d/zz-sst-once.cnf")[0] == 0, node
        assert db.ssh.sql(node, "SELECT @@wsrep_sst_method") == "mariabackup", node


def test_a_join_into_a_cluster_holding_data_uses_mariabackup(db):
    """A node that needs a full state transfer from a cluster that holds data (the OX configdb)
    gets the configured, non-blocking method, decided by the same join step under converge."""
    _all_synced(db)
    writer = _writer(db, "gmw1")
    node = next(n for n in reversed(GALERA) if n != writer)
    # A clean stop, then no grastate.dat: its state is unknown, so it needs a full transfer.
    db.run_on(node, f"/etc/init.d/mariadb stop >/dev/null && rm -f /var/lib/mysql/grastate.dat /var/lib/mysql/{MARIABACKUP_MARK}")
    result = db.up("--converge")
    assert "FAIL" not in result.stdout, result.stdout[-3000:]
    joined = _join_stderr(db, node)
    assert "state transfer: mariabackup (member " in joined and "holds data)" in joined, joined
    assert MARIABACKUP_MARK in db.ssh.run(node, "ls /var/lib/mysql")[1].split()
    assert _down(db) == [] and db.ssh.sql(node, "SELECT @@wsrep_sst_method") == "mariabackup"
    assert db.ssh.run(node, "test ! -e /etc/mysql/ox.conf.d/zz-sst-once.cnf")[0] == 0


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


# Steady writes through HAProxy's write port on a middleware host, one connection per INSERT (as a
# pool reconnecting after a failover would), each logged as "<start> <end> ok|fail <id>" in the
# host's clock (every lab host shares the machine's clock, so the figures line up).
WRITES_LOG, WRITES_STOP, WRITES_CNF = "/tmp/oxlab-writes.log", "/tmp/oxlab-writes.stop", "/root/oxlab-writes.cnf"
WRITE_LOOP = ("i=0; while [ ! -e {stop} ]; do i=$((i + 1)); s=$(date +%s.%N); "
              "if timeout 3 mariadb --defaults-file={cnf} -h 127.0.0.1 -P 3307 --connect-timeout=2 -N -B "
              "-e \"INSERT INTO oxlab_writes.w (run, id) VALUES ('{run}', $i)\" >/dev/null 2>&1; "
              "then r=ok; else r=fail; fi; echo \"$s $(date +%s.%N) $r $i\"; done >{log}")
# Every Galera node's state, every 0.1 s: "<time> <mariadbd pid or -> <cluster status>/<state>/<wsrep_desync>"
# (e.g. Primary/Synced/OFF; a node drained for its restart is Primary/Donor/Desynced/ON); "noanswer"
# when mariadbd runs but did not answer within 1 s, "down" when it does not run.
WSREP_LOG, WSREP_STOP = "/tmp/oxlab-wsrep.log", "/tmp/oxlab-wsrep.stop"
_STATUS = "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{}')"
WSREP_LOOP = ("while [ ! -e {stop} ]; do s=$(timeout 1 mariadb -N -B -e \"SELECT CONCAT_WS('/', "
              + _STATUS.format("WSREP_CLUSTER_STATUS") + ", " + _STATUS.format("WSREP_LOCAL_STATE_COMMENT")
              + ", @@wsrep_desync)\" 2>/dev/null); "
              "p=$(cat /run/mysqld/mysqld.pid 2>/dev/null || echo -); "
              "[ -n \"$s\" ] || {{ kill -0 \"$p\" 2>/dev/null && s=noanswer || s=down; }}; "
              "echo \"$(date +%s.%N) $p $s\"; "
              "sleep 0.1; done >{log}")


def _background(db, host: str, loop: str, stop: str) -> None:
    """Start a test loop on a lab host, detached from the SSH session; it ends when `stop` exists
    and leaves its pid in `<stop>.pid` meanwhile."""
    loop = f"echo $$ >{stop}.pid; {loop}; rm -f {stop}.pid"
    code, _, err = db.ssh.run(host, f"rm -f {stop}; setsid nohup bash -c {_shq(loop)} </dev/null >/dev/null 2>&1 &")
    assert code == 0, f"{host}: {err}"


def _shq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _stop(db, host: str, stop: str, log: str) -> list[str]:
    """Stop a test loop (it sees the stop file after at most one round) and read its log."""
    db.ssh.run(host, f"touch {stop}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and db.ssh.run(host, f"test -e {stop}.pid")[0] == 0:
        time.sleep(0.2)
    return db.ssh.run(host, f"cat {log}")[1].splitlines()


class Writes:
    """Steady writes through gmw1's 127.0.0.1:3307, tagged with `run`."""

    def __init__(self, db, run: str, host: str = "gmw1"):
        self.db, self.run, self.host = db, run, host
        db.ssh.sql(host, "CREATE DATABASE IF NOT EXISTS oxlab_writes; CREATE TABLE IF NOT EXISTS oxlab_writes.w "
                         "(run VARCHAR(32), id INT, PRIMARY KEY (run, id))", "127.0.0.1:3307", db.password)
        code, _, err = db.ssh.run(host, f"umask 077; {{ echo '[client]'; echo 'user=openexchange'; "
                                        f"printf 'password=%s\\n' \"$(cat)\"; }} >{WRITES_CNF}", stdin=db.password)
        assert code == 0, err
        _background(db, host, WRITE_LOOP.format(stop=WRITES_STOP, cnf=WRITES_CNF, run=run, log=WRITES_LOG),
                    WRITES_STOP)
        self.rows: list[tuple[float, float, bool, int]] = []

    def ok_since(self, since: float) -> bool:
        """Has a write that started after `since` been acknowledged?"""
        _, out, _ = self.db.ssh.run(self.host, f"tail -n 50 {WRITES_LOG}")
        return any(float(r[0]) > since and r[2] == "ok" for r in (line.split() for line in out.splitlines())
                   if len(r) == 4)

    def stop(self) -> None:
        lines = _stop(self.db, self.host, WRITES_STOP, WRITES_LOG)
        self.db.ssh.run(self.host, f"rm -f {WRITES_CNF}")
        self.rows = [(float(a), float(b), r == "ok", int(i)) for a, b, r, i in (line.split() for line in lines
                                                                                  if len(line.split()) == 4)]

    @property
    def acknowledged(self) -> set[int]:
        return {i for _, _, ok, i in self.rows if ok}

    def failed_seconds(self) -> float:
        """How long writes failed in all: from the end of the last acknowledged write before a
        failure to the end of the next acknowledged one, summed over every run of failures."""
        total, last_ok, failing = 0.0, None, False
        for _, end, ok, _ in self.rows:
            if ok:
                if failing and last_ok is not None:
                    total += end - last_ok
                last_ok, failing = end, False
            else:
                failing = True
        return total

    def outage_after(self, moment: float) -> float | None:
        """Seconds from `moment` until a write that started after it was acknowledged."""
        ends = [end for start, end, ok, _ in self.rows if ok and start > moment]
        return min(ends) - moment if ends else None

    def missing(self, node: str) -> set[int]:
        """Acknowledged writes whose rows `node` does not hold."""
        out = self.db.ssh.sql(node, f"SELECT id FROM oxlab_writes.w WHERE run = '{self.run}'")
        return self.acknowledged - {int(x) for x in out.split()}


class WsrepSamples:
    """Every Galera node's mariadbd pid and wsrep state, sampled every 0.1 s on the node itself."""

    def __init__(self, db, nodes: list[str] = GALERA):  # benchmarks/ samples its own lab's nodes
        self.db, self.nodes = db, list(nodes)
        for n in self.nodes:
            _background(db, n, WSREP_LOOP.format(stop=WSREP_STOP, log=WSREP_LOG), WSREP_STOP)
        self.samples: dict[str, list[tuple[float, str, str]]] = {}

    def stop(self) -> None:
        for n in self.nodes:
            self.samples[n] = [(float(t), pid, state) for t, pid, state in
                               (line.split() for line in _stop(self.db, n, WSREP_STOP, WSREP_LOG)
                                if len(line.split()) == 3)]

    def _known(self) -> dict[str, list[tuple[float, str, str]]]:
        """The samples with each "noanswer" (mariadbd running, its status query slower than 1 s: a
        node that processes a view change, e.g. when a restarted member rejoins) replaced by the
        node's last known state: the state did not change, the answer came late."""
        known = {}
        for n, rows in self.samples.items():
            last, known[n] = "down", []
            for ts, pid, state in rows:
                last = last if state == "noanswer" else state
                known[n].append((ts, pid, last))
        return known

    def longest_silence(self) -> float:
        """The longest a running mariadbd left the status query unanswered (the 1 s timeout included)."""
        longest = 0.0
        for rows in self.samples.values():
            first = None
            for ts, _, state in rows:
                if state == "noanswer":
                    first = ts if first is None else first
                    longest = max(longest, ts - first + 1)
                else:
                    first = None
        return longest

    def fewest(self, counts) -> int:
        """The fewest nodes whose state `counts` accepts at any sampled moment (every 50 ms)."""
        samples = self._known()
        start = max(s[0][0] for s in samples.values())
        end = min(s[-1][0] for s in samples.values())
        fewest, t = len(self.nodes), start
        while t <= end:
            states = [next(st for ts, _, st in reversed(rows) if ts <= t) for rows in samples.values()]
            fewest, t = min(fewest, sum(map(counts, states))), t + 0.05
        return fewest

    def min_synced(self) -> int:
        return self.fewest(lambda state: state.startswith("Primary/Synced/"))

    def min_serving(self) -> int:
        """Up in the Primary component, neither drained for its own restart (wsrep_desync=ON) nor
        still joining: Synced, or the IST donor of a node that rejoins. Galera desyncs the donor
        (Donor/Desynced, then Joined) while mariabackup's IST bypass runs (3-5 s here); it takes
        reads and writes meanwhile."""
        return self.fewest(lambda state: state.startswith("Primary/") and state.endswith("/OFF")
                           and "/Joining/" not in state)

    def transitions(self) -> str:
        """Every change of a node's pid or state, in time order, seconds from the first sample."""
        changes = []
        for n, rows in self.samples.items():
            last = None
            for ts, pid, state in rows:
                if (pid, state) != last:
                    changes.append((ts, n, pid, state))
                    last = (pid, state)
        t0 = min(c[0] for c in changes)
        return "\n".join(f"{ts - t0:7.2f} {n} {pid} {state}" for ts, n, pid, state in sorted(changes))

    def restarts(self) -> list[tuple[float, str]]:
        """(when, node) for each node whose mariadbd pid changed (restarted), in order."""
        order = []
        for n, rows in self.samples.items():
            first = rows[0][1]
            changed = next((ts for ts, pid, _ in rows if pid != first), None)
            if changed is not None:
                order.append((changed, n))
        return sorted(order)


def test_writer_fails_over_within_3s_after_kill_9_without_losing_acknowledged_writes(db):
    """Steady writes through 3307 while the writer is killed (kill -9, by its pid): writes move to
    another node within 3 s, every acknowledged write is there afterwards, and no HAProxy ever
    sends writes to two nodes, nor does clustercheck name two writers."""
    _all_synced(db)
    writer = _writer(db, "gmw1")
    assert [_writer(db, mw) for mw in MIDDLEWARE] == [writer, writer]
    assert _master_answers(db) == [writer]

    writes = Writes(db, f"kill{int(time.time())}")
    samples: list[tuple[float, dict, list]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            samples.append((time.monotonic(), {mw: _haproxy_writers(db, mw) for mw in MIDDLEWARE},
                            _master_answers(db)))

    try:
        deadline = time.monotonic() + 30
        while not writes.ok_since(0) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # a second of steady writes before the kill
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        pid = db.run_on(writer, "cat /run/mysqld/mysqld.pid")
        # The lab started this mariadbd; it is killed by its pid. The kill's time, in the hosts' clock.
        killed = float(db.run_on(writer, f"date +%s.%N; kill -9 {pid}"))
        deadline = time.monotonic() + 30
        while not writes.ok_since(killed) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # steady again
    finally:
        stop.set()
        writes.stop()
    watcher.join(timeout=30)
    now = _writer(db, "gmw1")
    outage = writes.outage_after(killed)
    missing = writes.missing(now)
    print(f"\nkill -9 of writer {writer}: writes moved to {now} in {outage:.2f}s; "
          f"{len(writes.acknowledged)} writes acknowledged, {len(writes.rows) - len(writes.acknowledged)} failed, "
          f"{len(missing)} acknowledged rows missing; {len(samples)} samples of the HAProxies and clustercheck")
    assert now != writer
    assert outage is not None and outage <= 3, f"writes did not move off {writer} within 3 s ({outage})"
    assert missing == set(), sorted(missing)[:20]
    for _, per_haproxy, masters in samples:
        assert all(len(w) <= 1 for w in per_haproxy.values()), per_haproxy  # never two writers in one HAProxy
        assert len(masters) <= 1, masters  # clustercheck names at most one writer at any moment
    settled = samples[-1][1]
    assert len({tuple(w) for w in settled.values()}) == 1, settled  # and every HAProxy follows it
    record_figures("galera-writer-move", {"seconds": round(outage, 2), "from": writer, "to": now},
                   ".venv/bin/python -m pytest tests/lab/test_database.py -k writer_fails_over")


def _gcache_size(db, node: str) -> str:
    options = db.ssh.sql(node, "SELECT @@wsrep_provider_options")
    return re.search(r"gcache\.size = ([^;]+)", options).group(1).strip()


def test_rolling_change_restarts_one_node_at_a_time_writer_last(db):
    """A setting only a restart applies (gcache.size), changed under steady writes, and changed back
    (the stack's value, so the estate is as the stack says afterwards): each time the nodes restart
    one at a time, the writer of the moment last; two nodes serve throughout, and writes fail for at
    most 3 s in all."""
    _all_synced(db)
    before = _gcache_size(db, "gdb1")
    assert before == "128M"  # the stack's (default) value
    for wanted, args in (("160M", ("--set", "database.galera.gcacheSize=160M")), ("128M", ())):
        writer = _writer(db, "gmw1")
        writes = Writes(db, f"roll{int(time.time())}")
        wsrep = WsrepSamples(db)
        try:
            started = time.monotonic()
            result = db.up(*args)
            took = time.monotonic() - started
            time.sleep(1)
        finally:
            writes.stop()
            wsrep.stop()
        order = [n for _, n in wsrep.restarts()]
        synced, serving = wsrep.min_synced(), wsrep.min_serving()
        failed = writes.failed_seconds()
        missing = writes.missing(_writer(db, "gmw1"))
        print(f"\nrolling change of gcache.size to {wanted} in {took:.1f}s: restart order {order} (writer before: "
              f"{writer}); fewest Synced nodes {synced}, fewest serving (Synced or IST donor) {serving} "
              f"(longest unanswered status query {wsrep.longest_silence():.1f}s); writes "
              f"failed for {failed:.2f}s ({len(writes.acknowledged)} acknowledged, "
              f"{len(writes.rows) - len(writes.acknowledged)} failed, {len(missing)} acknowledged rows missing)")
        print(wsrep.transitions())
        assert "FAIL" not in result.stdout, result.stdout[-3000:]
        assert {_gcache_size(db, n) for n in GALERA} == {wanted}
        assert sorted(order) == GALERA and order[-1] == writer, (order, writer)
        assert serving >= 2 and synced >= 1
        assert failed <= 3
        assert missing == set(), sorted(missing)[:20]


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

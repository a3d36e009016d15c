"""The join step's state transfer method, decided live per join (galera-join.sh.j2 and
ox_galera_join_sst_method in _mariadb.sh.j2): rsync for one start while a Synced member says the
cluster holds no data, the configured method otherwise; never left behind for a later start.
The steps run for real in a private mount namespace with a fake client that answers, per peer
address, what that member would (test_changes_take_effect's Box)."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_changes_take_effect import INIT, JOIN, MARIADB, _b64, _db_box, _fake, needs_root

SST_PW = 'sst pw "q" $x'
STDIN = _b64(SST_PASSWORD=SST_PW)
ONCE = "zz-sst-once.cnf"

# A TCP query (-h <peer>): log the argv and the option file it was given, answer with
# $FAKE/peer-<address> (one row: state, other schemas, writer rows), or fail as an unreachable host.
PEER = r'''for a in "$@"; do
  case $a in
    --defaults-file=*) extra=${a#*=} ;;
  esac
done
peer=""
prev=""
for a in "$@"; do
  [ "$prev" = -h ] && peer=$a
  prev=$a
done
if [ -n "$peer" ]; then
  echo "$*" >>"$FAKE/peer-argv"
  cat "$extra" >>"$FAKE/peer-cnf"
  [ -e "$FAKE/peer-$peer" ] || { echo "ERROR 2003 (HY000): Can't connect to server on '$peer'" >&2; exit 1; }
  cat "$FAKE/peer-$peer"
  exit 0
fi
'''
# The init script also records whether the one-start option file was there when the server started.
INIT_ONCE = 'cat /etc/mysql/ox.conf.d/zz-sst-once.cnf >>"$FAKE/once-at-start" 2>/dev/null || echo none >>"$FAKE/once-at-start"\n'


def _box(tmp_path: Path, peers: dict[str, str], alive: bool = False):
    box = _db_box(tmp_path, alive=alive)
    _fake(box.bin / "mariadb", PEER + MARIADB)
    _fake(box.etc / "init.d" / "mariadb", INIT_ONCE + INIT)
    (box.etc / "mysql" / "ox.conf.d").mkdir(parents=True)
    for address, row in peers.items():
        (box.fake / f"peer-{address}").write_text(row + "\n")
    return box


def _join(box, method="mariabackup", peers=("10.0.0.1", "10.0.0.3")):
    return box.run("db/galera-join.sh.j2", {**JOIN, "sst_method": method, "peers": list(peers)}, stdin=STDIN,
                   step="ox-galera-db2-join", host="db2")


def _sst_sets(box) -> list[str]:
    return [s for s in box.calls("sql") if s.startswith("SET GLOBAL wsrep_sst_method")]


@needs_root
def test_a_join_into_an_empty_cluster_uses_rsync_for_that_start_only(tmp_path):
    box = _box(tmp_path, {"10.0.0.1": "Synced\t0\t0"})
    r = _join(box)
    assert r.returncode == 0, r.stderr
    assert box.calls("service") == ["mariadb start"]
    assert "".join(box.calls("once-at-start")).replace(" ", "").endswith("wsrep_sst_method=rsync")
    assert not (box.etc / "mysql" / "ox.conf.d" / ONCE).exists()  # gone once Synced
    assert _sst_sets(box) == ["SET GLOBAL wsrep_sst_method = 'mariabackup'"]  # the running server too
    assert "rsync, for this start only (member 10.0.0.1 says the cluster holds no data yet)" in r.stderr
    # The password reached the client in an option file on a pipe, never on its argv; that file
    # alone (--defaults-file): root's ~/.my.cnf, read after an --defaults-extra-file, would win.
    calls = [c for c in box.calls("peer-argv") if " -h " in c]  # the SQL spans lines
    assert calls and all(c.startswith("--defaults-file=") for c in calls)
    assert all(SST_PW not in line and "sst pw" not in line for line in box.calls("peer-argv"))
    assert 'password = "sst pw \\"q\\" $x"' in box.calls("peer-cnf") and "user = sstprobe" in box.calls("peer-cnf")
    assert SST_PW not in r.stderr + r.stdout


@needs_root
@pytest.mark.parametrize("peers, why", [
    ({"10.0.0.1": "Synced\t1\t0"}, "member 10.0.0.1 holds data"),  # a schema besides the system ones
    ({"10.0.0.1": "Synced\t0\t1"}, "member 10.0.0.1 holds data"),  # clustercheck chose a writer: in service
    ({"10.0.0.1": "Synced\t0\t0", "10.0.0.3": "Synced\t2\t1"}, "member 10.0.0.3 holds data"),  # any says data
    ({}, "no Synced member answered"),  # nobody to ask: the safe method
    ({"10.0.0.1": "Joined\t0\t0"}, "no Synced member answered"),  # not Synced: its answer does not count
    ({"10.0.0.1": "garbage"}, "no Synced member answered"),
])
def test_a_join_keeps_the_configured_method_unless_a_member_says_empty(tmp_path, peers, why):
    box = _box(tmp_path, peers)
    r = _join(box)
    assert r.returncode == 0, r.stderr
    assert box.calls("once-at-start") == ["none"] and _sst_sets(box) == []
    assert f"state transfer: mariabackup ({why}" in r.stderr


@needs_root
def test_a_stale_one_start_file_is_removed_before_the_server_starts(tmp_path):
    box = _box(tmp_path, {"10.0.0.1": "Synced\t3\t1"})
    (box.etc / "mysql" / "ox.conf.d" / ONCE).write_text("[mysqld]\nwsrep_sst_method = rsync\n")
    r = _join(box)
    assert r.returncode == 0, r.stderr
    assert box.calls("once-at-start") == ["none"]
    assert not (box.etc / "mysql" / "ox.conf.d" / ONCE).exists()


@needs_root
def test_configured_rsync_asks_nobody(tmp_path):
    box = _box(tmp_path, {"10.0.0.1": "Synced\t0\t0"})
    r = _join(box, method="rsync")
    assert r.returncode == 0, r.stderr
    assert box.calls("peer-argv") == [] and box.calls("once-at-start") == ["none"] and _sst_sets(box) == []


@needs_root
def test_a_synced_node_is_not_started_and_asks_nobody(tmp_path):
    box = _box(tmp_path, {"10.0.0.1": "Synced\t0\t0"}, alive=True)
    r = _join(box)
    assert r.returncode == 0, r.stderr
    assert box.calls("service") == [] and box.calls("peer-argv") == []

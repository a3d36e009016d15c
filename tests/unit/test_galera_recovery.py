"""The Galera recovery decision (components/galera_recovery.decide): node states in, a decision or a
refusal out. Each row is a state a cluster can be found in; several are failures mariadb-operator
shipped (issue numbers in the case names)."""

from __future__ import annotations

import pytest

from components.db.galera_recovery import ZERO_UUID, NodeState, decide
from components.core.parse import StepOutputError, parse_galera_probe
from components.db.galera_recovery_steps import node_state

U = "6b1c8f7e-1111-2222-3333-444455556666"
V = "9f00aa11-aaaa-bbbb-cccc-ddddeeeeffff"
NODES = ("db1", "db2", "db3")


def clean(host, seqno, safe=False, uuid=U, **kw):
    """Stopped after a clean shutdown: grastate holds the seqno."""
    return NodeState(host, grastate=True, uuid=uuid, seqno=seqno, safe_to_bootstrap=safe, **kw)


def crashed(host, recovered_seqno, uuid=U, **kw):
    """Stopped by a crash (kill -9): grastate says -1, --wsrep-recover found the position."""
    recovered = f"{uuid}:{recovered_seqno}" if recovered_seqno is not None else None
    return NodeState(host, grastate=True, uuid=uuid, seqno=-1, recovered=recovered, **kw)


def running(host, primary, seqno=100, uuid=U):
    return NodeState(host, running=True, primary=primary, grastate=True, uuid=uuid, seqno=seqno)


def fresh(host):
    return NodeState(host)


# (case, states, force, expected): expected is ("bootstrap", node, position, clear) / ("none", clear) /
# ("pc-bootstrap", node) / ("refuse", [words the message must hold])
CASES = [
    ("first deploy: every node fresh", [fresh("db1"), fresh("db2"), fresh("db3")], None, ("none", ())),
    ("healthy cluster: all Primary", [running(n, True) for n in NODES], None, ("none", ())),
    ("one node down, the others Primary", [running("db1", True), clean("db2", 90), running("db3", True)], None,
     ("none", ())),
    ("Primary runs; a stopped node's stale flag is cleared", [running("db1", True), running("db2", True),
                                                                clean("db3", 90, safe=True)], None, ("none", ("db3",))),
    ("Primary runs: the override is ignored", [running("db1", True), clean("db2", 90), clean("db3", 95)], "db3",
     ("none", ())),
    ("clean stop, db3 left last", [clean("db1", 100), clean("db2", 101), clean("db3", 102, safe=True)], None,
     ("bootstrap", "db3", f"{U}:102", ())),
    ("clean stop, db1 left last", [clean("db1", 102, safe=True), clean("db2", 100), clean("db3", 101)], None,
     ("bootstrap", "db1", f"{U}:102", ())),
    ("kill -9 of all: highest recovered seqno wins", [crashed("db1", 500), crashed("db2", 512), crashed("db3", 509)],
     None, ("bootstrap", "db2", f"{U}:512", ())),
    ("kill -9 of all: a tie goes to the first node", [crashed("db1", 512), crashed("db2", 512), crashed("db3", 3)],
     None, ("bootstrap", "db1", f"{U}:512", ())),
    ("tie broken by safe_to_bootstrap", [clean("db1", 7), clean("db2", 7, safe=True), clean("db3", 7)], None,
     ("bootstrap", "db2", f"{U}:7", ())),
    ("#1626 flag on a lower node too: highest wins, the stale flag is cleared",
     [clean("db1", 40, safe=True), clean("db2", 41, safe=True), clean("db3", 39)], None,
     ("bootstrap", "db2", f"{U}:41", ("db1",))),
    ("flag on a lower node only: the highest seqno still wins, the flag is cleared",
     [clean("db1", 40, safe=True), crashed("db2", 45), clean("db3", 39)], None,
     ("bootstrap", "db2", f"{U}:45", ("db1",))),
    ("mixed clean and crashed", [clean("db1", 300), crashed("db2", 310), fresh("db3")], None,
     ("bootstrap", "db2", f"{U}:310", ())),
    ("a zero-UUID joiner is not a candidate", [clean("db1", 20), clean("db2", 22), clean("db3", -1, uuid=ZERO_UUID)],
     None, ("bootstrap", "db2", f"{U}:22", ())),
    ("survivor running outside a Primary component is made Primary",
     [running("db1", False, seqno=700), crashed("db2", 650), crashed("db3", 690)], None, ("pc-bootstrap", "db1")),
    ("#1108 aborted SST on the highest node", [clean("db1", 10), clean("db2", 12),
                                               crashed("db3", 900, sst_in_progress=True)], None,
     ("refuse", ["state transfer was interrupted on db3", "sst_in_progress present", "db1: stopped"])),
    ("#580 stale sst_in_progress on a lower node", [clean("db1", 50, sst_in_progress=True), clean("db2", 60),
                                                    clean("db3", 61, safe=True)], None,
     ("refuse", ["interrupted on db1", "forceBootstrapNode"])),
    ("partial datadir", [clean("db1", 50), clean("db2", 60),
                         NodeState("db3", partial="a .sst directory left by a state transfer")], None,
     ("refuse", ["interrupted on db3", "partial datadir"])),
    ("different cluster UUIDs", [clean("db1", 50), clean("db2", 60, uuid=V), clean("db3", 55)], None,
     ("refuse", ["different cluster UUIDs", f"db1 {U}", f"db2 {V}"])),
    ("every problem is named at once", [clean("db1", 50, uuid=V), clean("db2", 60, sst_in_progress=True),
                                        clean("db3", 61, safe=True)], None,
     ("refuse", ["interrupted on db2", f"different cluster UUIDs (db1 {V}, db2 {U}, db3 {U})",
                 "db2: stopped", "sst_in_progress present"])),
    ("#1701 safe_to_bootstrap on a zero-UUID node", [clean("db1", 30), clean("db2", 31),
                                                     clean("db3", -1, safe=True, uuid=ZERO_UUID)], None,
     ("refuse", ["zero UUID (db3)"])),
    ("#959 seqno 0 after a failed start", [clean("db1", 0), clean("db2", 0), clean("db3", 0)], None,
     ("refuse", ["highest seqno is 0"])),
    ("every position unknown", [crashed("db1", None, recover_error="mariadbd --wsrep-recover failed"),
                                crashed("db2", None), crashed("db3", None)], None,
     ("refuse", ["every position is unknown", "recovery failed (mariadbd --wsrep-recover failed)"])),
    ("one position unknown could hide the highest", [crashed("db1", 80), crashed("db2", None), crashed("db3", 70)],
     None, ("refuse", ["position of db2 is unknown"])),
    ("recovery gives back seqno -1", [crashed("db1", -1), crashed("db2", -1), crashed("db3", -1)], None,
     ("refuse", ["every position is unknown"])),
    ("only zero UUIDs", [clean(n, -1, uuid=ZERO_UUID) for n in NODES], None, ("refuse", ["no node has a cluster UUID"])),
    ("grastate and recovery disagree on the UUID", [clean("db1", 5), clean("db2", 6),
                                                    NodeState("db3", grastate=True, uuid=U, seqno=-1,
                                                              recovered=f"{V}:9")], None,
     ("refuse", ["different cluster UUIDs on db3"])),
    ("highest node stopped while another runs non-Primary", [running("db1", False, seqno=10), crashed("db2", 20),
                                                             crashed("db3", 5)], None,
     ("refuse", ["db2 holds the highest seqno", "stop them"])),
    ("override: differing UUIDs, the operator names db2", [clean("db1", 50), clean("db2", 60, uuid=V),
                                                           clean("db3", 55, safe=True)], "db2",
     ("bootstrap", "db2", f"{V}:60", ("db3",))),
    ("override: an interrupted SST elsewhere", [clean("db1", 50), clean("db2", 60, sst_in_progress=True),
                                                clean("db3", 55)], "db1", ("bootstrap", "db1", f"{U}:50", ())),
    ("override onto the aborted-SST node is still refused", [clean("db1", 50), clean("db2", 60),
                                                             crashed("db3", 90, sst_in_progress=True)], "db3",
     ("refuse", ["forceBootstrapNode db3 cannot be bootstrapped", "interrupted"])),
    ("override onto a zero-UUID node is refused", [clean("db1", 50), clean("db2", 60),
                                                   clean("db3", -1, uuid=ZERO_UUID)], "db3",
     ("refuse", ["zero UUID"])),
    ("override onto a fresh node is refused", [clean("db1", 50), clean("db2", 60), fresh("db3")], "db3",
     ("refuse", ["no grastate.dat"])),
    ("override with an unknown position bootstraps without one", [crashed("db1", None), crashed("db2", None),
                                                                   crashed("db3", None)], "db2",
     ("bootstrap", "db2", None, ())),
]


@pytest.mark.parametrize("case,states,force,expected", CASES, ids=[c[0] for c in CASES])
def test_decision_table(case, states, force, expected):
    d = decide(states, force)
    kind = expected[0]
    if kind == "refuse":
        assert d.refusal, (case, d)
        for words in expected[1]:
            assert words in d.refusal, (words, d.refusal)
        assert all(d.action_for(n.host) == "refuse" for n in states)
        return
    assert d.refusal is None, (case, d.refusal)
    if kind == "none":
        assert d.bootstrap is None and d.clear == expected[1], d
        assert {d.action_for(n.host) for n in states} <= {"none", "clear"}
    elif kind == "pc-bootstrap":
        assert d.bootstrap == expected[1] and d.pc_bootstrap and d.action_for(expected[1]) == "pc-bootstrap"
    else:
        _, node, position, clear = expected
        assert (d.bootstrap, d.position, d.clear, d.pc_bootstrap) == (node, position, clear, False), d
        assert d.action_for(node) == "bootstrap"
        assert [n.host for n in states if d.action_for(n.host) == "bootstrap"] == [node]


def test_the_table_is_large():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case,states,force,expected", CASES, ids=[c[0] for c in CASES])
def test_never_two_flags(case, states, force, expected):
    """Whatever happens, at most one node ends with safe_to_bootstrap: 1 among the stopped ones: the
    chosen node, and every other flagged stopped node is cleared."""
    d = decide(states, force)
    if d.refusal:
        return
    left = {n.host for n in states if n.safe_to_bootstrap and not n.running} - set(d.clear)
    if d.bootstrap:
        left.add(d.bootstrap)
    assert len(left - {d.bootstrap}) == 0 if d.bootstrap else len(left) == 0


def test_override_must_name_a_node():
    with pytest.raises(ValueError, match="not a Galera node"):
        decide([fresh(n) for n in NODES], "db9")


def test_probe_line_parses_into_a_state():
    line = ('{"host":"db2","running":false,"primary":false,"grastate":true,"uuid":"%s","seqno":-1,'
            '"safeToBootstrap":false,"sstInProgress":false,"partial":null,"recovered":"%s:42","recoverError":null}'
            % (U, U))
    state = node_state(parse_galera_probe("c-db2-probe", "noise\n" + line))
    assert state.position == (U, 42) and state.host == "db2"


@pytest.mark.parametrize("bad", ['{"host":"db1"}', "not json",
                                 '{"host":"db1","running":false,"primary":false,"grastate":true,"uuid":"x;y",'
                                 '"seqno":1,"safeToBootstrap":false,"sstInProgress":false,"partial":null,'
                                 '"recovered":null,"recoverError":null}'])
def test_probe_line_that_is_not_one_fails_naming_the_step(bad):
    with pytest.raises(StepOutputError, match="c-db1-probe"):
        parse_galera_probe("c-db1-probe", bad)


# --- wiring under mocks: the probes feed one decision, rendered into every node's recover step ---

import json  # noqa: E402

from harness import UnitMocks, run_program, script_of  # noqa: E402

SECRET = {"sshPrivateKey"}


class ProbedMocks(UnitMocks):
    """The probes print the given states (by node); every other step as on a healthy host."""

    def __init__(self, probes: dict[str, dict]):
        self.probes = probes

    def stdout_of(self, name, inputs):
        node = name.split("-")[-2]
        if name.startswith("ox-galera-") and name.endswith("-probe"):
            line = {"host": node, "running": False, "primary": False, "grastate": True, "uuid": U, "seqno": -1,
                    "safeToBootstrap": False, "sstInProgress": False, "partial": None, "recovered": None,
                    "recoverError": None}
            return "recovering\n" + json.dumps({**line, **self.probes[node]})
        return UnitMocks.stdout_of(name, inputs)


def test_recovery_steps_run_after_every_probe_and_before_bootstrap(stack_config):
    rec = run_program(stack_config(), SECRET)
    deps = lambda name: set(rec.named(name).dependencies)  # noqa: E731
    probes = {rec.named(f"ox-galera-db{i}-probe").urn for i in (1, 2, 3)}
    for i in (1, 2, 3):
        assert rec.named(f"ox-galera-db{i}-configure").urn in deps(f"ox-galera-db{i}-probe")
        assert probes <= deps(f"ox-galera-db{i}-recover")
        assert rec.named(f"ox-galera-db{i}-recover").urn in deps("ox-galera-db1-bootstrap")
        # fresh nodes (the harness's probe): nothing to recover
        assert "case none in" in script_of(rec.named(f"ox-galera-db{i}-recover")).replace("'", "")


def test_crashed_cluster_bootstraps_the_highest_node_and_clears_the_rest(stack_config):
    rec = run_program(stack_config(), SECRET, ProbedMocks({
        "db1": {"recovered": f"{U}:500", "safeToBootstrap": True}, "db2": {"recovered": f"{U}:512"},
        "db3": {"recovered": f"{U}:509"}}))
    scripts = {i: script_of(rec.named(f"ox-galera-db{i}-recover")).replace("'", "") for i in (1, 2, 3)}
    assert "case bootstrap in" in scripts[2] and f"position={U}:512" in scripts[2]
    assert "case clear in" in scripts[1] and "case none in" in scripts[3]


def test_refusal_fails_every_recover_step_naming_nodes(stack_config):
    rec = run_program(stack_config(), SECRET, ProbedMocks({
        "db1": {"seqno": 10}, "db2": {"seqno": 12, "uuid": V}, "db3": {"recovered": f"{U}:900", "sstInProgress": True}}))
    for i in (1, 2, 3):
        script = script_of(rec.named(f"ox-galera-db{i}-recover"))
        assert "case refuse in" in script
        assert "state transfer was interrupted on db3" in script and "db2: stopped, uuid " + V in script


def test_override_is_rendered_into_the_probe_and_wins(stack_config):
    cfg = stack_config()
    cfg["database"]["galera"]["forceBootstrapNode"] = "db2"
    rec = run_program(cfg, SECRET, ProbedMocks({
        "db1": {"seqno": 10}, "db2": {"seqno": 12, "uuid": V}, "db3": {"seqno": 11}}))
    assert "forceBootstrapNode db2" in script_of(rec.named("ox-galera-db1-probe"))
    assert "case bootstrap in" in script_of(rec.named("ox-galera-db2-recover")).replace("'", "")


# --- the probe and recover scripts in real bash (a private mount namespace, fakes on PATH) ---

from test_changes_take_effect import _db_box, _fake, needs_root  # noqa: E402

GRASTATE = "# GALERA saved state\nversion: 2.1\nuuid:    {uuid}\nseqno:   {seqno}\nsafe_to_bootstrap: {safe}\n"
# mariadbd --wsrep-recover: log how it was called, print the position as the server does (stderr).
MARIADBD = 'echo "mariadbd $*" >>"$FAKE/mariadbd"\necho "[Note] WSREP: Recovered position: $(cat "$FAKE/recovered")" >&2\n'
PROBE = {"datadir": "/var/lib/mysql", "config_digest": "d1", "force": ""}


def _galera_box(tmp_path, *, alive=False, seqno=-1, safe=0, recovered=f"{U}:42"):
    box = _db_box(tmp_path, alive=alive)
    _fake(box.bin / "mariadbd", MARIADBD)
    _fake(box.bin / "pgrep", "exit 1\n")  # no server of this box runs (the host's own are not ours)
    (box.fake / "recovered").write_text(recovered + "\n")
    (box.datadir / "grastate.dat").write_text(GRASTATE.format(uuid=U, seqno=seqno, safe=safe))
    return box


@needs_root
def test_probe_recovers_the_position_of_a_crashed_node(tmp_path):
    box = _galera_box(tmp_path)
    r = box.run("db/galera-probe.sh.j2", PROBE, step="ox-galera-db2-probe", host="db2")
    assert r.returncode == 0, r.stderr
    state = node_state(parse_galera_probe("ox-galera-db2-probe", r.stdout))
    assert (state.running, state.grastate, state.seqno, state.recovered) == (False, True, -1, f"{U}:42")
    assert "--wsrep-recover" in box.calls("mariadbd")[0] and "--user=mysql" in box.calls("mariadbd")[0]


@needs_root
@pytest.mark.parametrize("seqno, marker, alive", [(17, None, False), (-1, "sst_in_progress", False), (-1, None, True)])
def test_probe_leaves_recovery_alone_unless_crashed_and_whole(tmp_path, seqno, marker, alive):
    """A clean stop has its seqno; an interrupted transfer is never recovered from; a running
    server reports its own state."""
    box = _galera_box(tmp_path, seqno=seqno, safe=1, alive=alive)
    if marker:
        (box.datadir / marker).touch()
    r = box.run("db/galera-probe.sh.j2", PROBE, step="ox-galera-db1-probe", host="db1")
    assert r.returncode == 0, r.stderr
    probe = parse_galera_probe("ox-galera-db1-probe", r.stdout)
    assert box.calls("mariadbd") == [] and probe.recovered is None
    assert probe.sstInProgress == bool(marker) and probe.safeToBootstrap and probe.running == alive
    assert probe.primary == alive  # the fake server is Primary and Synced


def _recover(box, action, position="", refusal="", host="db2"):
    values = {"datadir": "/var/lib/mysql", "cluster_name": "oxcluster", "peers": [], "action": action,
              "position": position, "reason": "test", "refusal": refusal}
    return box.run("db/galera-recover.sh.j2", values, step=f"ox-galera-{host}-recover", host=host)


@needs_root
def test_recover_bootstraps_the_chosen_node_at_its_recovered_position(tmp_path):
    box = _galera_box(tmp_path)
    (box.state / "mariadb.restart-pending").write_text("innodb_flush_log_at_trx_commit\n")
    r = _recover(box, "bootstrap", f"{U}:42")
    assert r.returncode == 0, r.stderr
    assert (box.datadir / "grastate.dat").read_text() == GRASTATE.format(uuid=U, seqno=42, safe=1)
    assert box.calls("service") == ["mariadb bootstrap"] and box.marker is None
    assert r.stdout == f"galera db2 recovery: bootstrapped at {U}:42\n"


@needs_root
def test_recover_refuses_to_bootstrap_another_history(tmp_path):
    box = _galera_box(tmp_path)
    r = _recover(box, "bootstrap", f"{V}:42")
    assert r.returncode == 1 and f"names cluster {U}, the decision {V}" in r.stderr
    assert box.calls("service") == [] and "safe_to_bootstrap: 0" in (box.datadir / "grastate.dat").read_text()


@needs_root
def test_recover_clears_a_stale_flag_and_a_refusal_fails_naming_the_step(tmp_path):
    box = _galera_box(tmp_path, seqno=40, safe=1)
    r = _recover(box, "clear")
    assert r.returncode == 0, r.stderr
    assert (box.datadir / "grastate.dat").read_text() == GRASTATE.format(uuid=U, seqno=40, safe=0)
    assert box.calls("service") == []
    r = _recover(box, "refuse", refusal="Galera recovery refused: the nodes hold different cluster UUIDs; $(x)")
    assert r.returncode == 1
    assert "step ox-galera-db2-recover on db2: Galera recovery refused: the nodes hold different cluster UUIDs; $(x)" \
        in r.stderr

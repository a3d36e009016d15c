"""The clustercheck's writer decision, as a table: who answers 200 on /master."""

import importlib.util
import sys

import pytest

from components.core.render import template_path

pytest.importorskip("pymysql")


@pytest.fixture(scope="module")
def cc():
    spec = importlib.util.spec_from_file_location("clustercheck", template_path("files/clustercheck.py"))
    module = importlib.util.module_from_spec(spec)
    saved = sys.argv
    sys.argv = ["clustercheck", "10.0.0.2", "10.0.0.1,10.0.0.3"]  # this node is .2
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = saved
    return module


def node(index, state="Synced", cluster="Primary", conf="7"):
    return {"up": True, "state": state, "cluster": cluster, "ready": "ON", "index": index, "confId": conf}


DOWN = {"up": False, "error": "socket"}

# (case, me, recorded writer, peers' /status by address, claim wins?, expected answer, claim expected)
CASES = [
    ("I am the recorded writer", node(1), "10.0.0.2", {}, True, True, None),
    ("recorded writer healthy elsewhere", node(0), "10.0.0.1", {"10.0.0.1": node(1)}, True, False, None),
    ("old writer rejoined with index 0: stays put", node(1), "10.0.0.2", {"10.0.0.1": node(0)}, True, True, None),
    ("recorded writer down: claim it", node(1), "10.0.0.1", {"10.0.0.1": None}, True, True, "10.0.0.1"),
    ("recorded writer a donor: claim it", node(1), "10.0.0.1", {"10.0.0.1": node(0, "Donor/Desynced")}, True,
     True, "10.0.0.1"),
    ("claim lost to another node", node(1), "10.0.0.1", {"10.0.0.1": None}, False, False, "10.0.0.1"),
    ("I am not Synced", node(0, "Joined"), "10.0.0.2", {}, True, False, None),
    ("I am not in a Primary component", node(0, cluster="non-Primary"), "10.0.0.2", {}, True, False, None),
    ("no writer yet, I have the lowest healthy index", node(0), None, {"10.0.0.1": node(1), "10.0.0.3": node(2)},
     True, True, None),
    ("no writer yet, a healthy peer is lower", node(1), None, {"10.0.0.1": node(0), "10.0.0.3": node(2)},
     True, False, "never"),
    ("no writer yet, the lower peer is a donor", node(1), None, {"10.0.0.1": node(0, "Donor/Desynced")},
     True, True, None),
    ("no writer yet, the lower peer is in another view", node(1), None, {"10.0.0.1": node(0, conf="6")},
     True, True, None),
]


@pytest.mark.parametrize("case,me,recorded,peers,wins,expected,claimed", CASES, ids=[c[0] for c in CASES])
def test_writer_decision(cc, case, me, recorded, peers, wins, expected, claimed):
    claims = []

    def claim(expected_holder):
        claims.append(expected_holder)
        return wins

    assert cc.decide(me, recorded, lambda address: peers.get(address), claim) is expected
    if claimed == "never":
        assert claims == []
    elif claimed is not None:
        assert claims == [claimed]


def test_healthy_needs_synced_primary_ready(cc):
    assert cc.healthy(node(0))
    assert not cc.healthy(DOWN)
    assert not cc.healthy({**node(0), "ready": "OFF"})

"""Graph edges trimmed for a faster first deploy (issue 12): each step waits for what it needs,
and no longer for more. Direct dependencies and everything waited for (harness.waits_for)."""

import pytest

from harness import run_program

SECRET = {"sshPrivateKey"}


@pytest.fixture
def recording(stack_config):
    return run_program(stack_config(), SECRET)


def _urn(recording, name):
    return recording.named(name).urn


def test_clustercheck_waits_for_its_own_node_only(recording):
    """Its account and the writer table come with the bootstrap; it needs its node Synced."""
    for i in (1, 2, 3):
        waits = recording.waits_for(f"ox-dbproxy-db{i}-clustercheck")
        assert _urn(recording, f"ox-galera-db{i}-verify") in recording.named(f"ox-dbproxy-db{i}-clustercheck").dependencies
        assert _urn(recording, "ox-galera-db1-ox-grants") not in waits
        assert not {_urn(recording, f"ox-galera-db{j}-verify") for j in (1, 2, 3) if j != i} & waits


def test_whatever_logs_in_as_openexchange_still_waits_for_the_grants(recording):
    grants = _urn(recording, "ox-galera-db1-ox-grants")
    assert grants in recording.waits_for("ox-mw-mw1-initconfigdb")
    assert grants not in recording.waits_for("ox-dbproxy-mw1-haproxy")  # HAProxy checks clustercheck, not SQL


def test_registration_waits_for_the_admin_node_not_every_middleware_node(recording):
    deps = set(recording.named("ox-registration-server").dependencies)
    assert _urn(recording, "ox-mwroll-mw1-restart") in deps  # the admin daemon answers
    assert _urn(recording, "ox-mw-ready") not in deps  # every node's configure: not needed here
    waits = recording.waits_for("ox-registration-server")
    assert {_urn(recording, n) for n in ("ox-mw-mw1-configure", "ox-galera-db1-ox-grants", "ox-mw-mw1-initconfigdb")} <= waits


def test_without_frontends_registration_does_not_wait_for_other_middleware_nodes(stack_config):
    recording = run_program(stack_config(frontend=None), SECRET)
    waits = recording.waits_for("ox-registration-server")
    assert _urn(recording, "ox-mw-mw1-configure") in waits
    assert _urn(recording, "ox-mw-mw2-configure") not in waits

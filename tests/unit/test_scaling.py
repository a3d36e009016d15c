"""The step graph grows linearly with the estate, and a host's steps change only with what they use.

Evaluating the program under mocks once took minutes at a few hundred hosts: every step on every
host depended on every host's firewall, every hosts-file step on every host's facts, every
frontend on every middleware node, so the recorded dependencies grew as hosts x hosts (and the
SDK's cycle check walked them again for each new one). benchmarks/scale.py measures the time;
these tests pin the shape, which does not depend on how loaded the machine is.
"""

from __future__ import annotations

import copy
import gc

import pytest
from pulumi.runtime.rpc import UNKNOWN

from benchmarks.scale import stack_config as sized_config
from harness import UnitMocks, run_program, unwrap

SECRET = {"sshPrivateKey"}


def _edges(hosts: int, ssh_key: str) -> tuple[int, int]:
    # Two frontends at both sizes: the rolling restart's drain and readmit steps are one per
    # backend node per Apache by design (components/mw/mwrestart.py), so frontends growing with the
    # estate would make them, and only them, grow as a product.
    rec = run_program(sized_config(hosts, ssh_key, frontends=2), SECRET)
    regs = rec.non_stack
    return len(regs), sum(len(r.dependencies) for r in regs)


def test_dependency_edges_grow_linearly_with_the_hosts(ssh_key):
    """Twice the hosts, about twice the resources and about twice the edges (hosts x hosts would be four times)."""
    resources_20, edges_20 = _edges(20, ssh_key)
    resources_40, edges_40 = _edges(40, ssh_key)
    assert resources_40 <= 2.3 * resources_20, (resources_20, resources_40)
    assert edges_40 <= 2.3 * edges_20, (edges_20, edges_40)
    assert edges_40 <= 6 * resources_40  # a handful of dependencies per step, not one per host


class _NewHostPreview(UnitMocks):
    """A preview after a host was added: what its new steps print is not known yet, nor what a
    step prints whose script is not known yet (it would run)."""

    def __init__(self, new_host: str):
        self.new_host = new_host

    def new_resource(self, args):
        if args.typ == "command:remote:Command" and (
                args.name.startswith(f"{self.new_host}-") or not isinstance(unwrap(args.inputs.get("create")), str)):
            return f"{args.name}-id", {**args.inputs, "stdout": UNKNOWN, "stderr": UNKNOWN}
        return super().new_resource(args)


DB_STEPS = [f"ox-galera-db{i}-{p}" for i in (1, 2, 3) for p in ("configure", "probe", "recover")] + [
    "ox-galera-db1-bootstrap", "ox-galera-db2-join", "ox-galera-db3-join", "ox-galera-db1-restart-last",
    "ox-gtid-db4-configure", "ox-gtid-db4-start", "ox-gtid-db5-configure", "ox-gtid-db5-start"]


def test_a_new_middleware_node_leaves_the_database_steps_as_they_are(stack_config):
    """The database servers are sized from their own hosts' facts only: adding a middleware node
    (whose facts a preview does not know yet) changes none of their configure or start steps, so
    `pulumi preview` shows them unchanged (it used to show them all as updates)."""
    def steps(config, mocks=None):
        rec = run_program(config, SECRET, mocks, preview=True)
        return {r.name: unwrap({k: r.inputs.get(k) for k in ("create", "stdin", "connection")})
                for r in rec.of_type("command:remote:Command")}

    base = stack_config()
    grown = copy.deepcopy(base)
    grown["hosts"].append({"name": "mw3", "address": "10.0.0.23"})
    grown["middleware"]["nodes"].append({"host": "mw3", "jkroute": "OX3"})
    before, after = steps(base), steps(grown, _NewHostPreview("mw3"))
    assert after["mw3-hosts-file"]["create"] != before["mw1-hosts-file"]["create"]  # control: mw3's facts unknown
    assert before["mw1-hosts-file"]["create"] != after["mw1-hosts-file"]["create"]  # every /etc/hosts changes
    for name in DB_STEPS:
        assert after[name] == before[name], name
        assert isinstance(after[name]["create"], str) and "bash -c" in after[name]["create"], name


class _CollectorSeen(UnitMocks):
    """UnitMocks that note the cycle collector's settings while the program registers."""

    def __init__(self):
        self.seen: set[tuple] = set()

    def new_resource(self, args):
        self.seen.add((gc.get_threshold(), gc.get_freeze_count() > 0))
        return super().new_resource(args)


def test_the_program_runs_with_the_collector_tuned_and_a_test_process_gets_it_back(stack_config):
    """__main__.py sets the collector for one evaluation (components/core/collector.py: 30 to 40% of the CPU
    at 1,000 hosts otherwise); a process that runs it again and again has it as it was afterwards."""
    before = gc.get_threshold()
    mocks = _CollectorSeen()
    run_program(stack_config(), SECRET, mocks)
    assert mocks.seen == {((200_000, 30, 30), True)}
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

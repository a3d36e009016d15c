"""The Galera recovery steps: probe every node, decide (galera_recovery.decide), act on every node.

- probe (every node, in parallel, after its configure step): one JSON line of the node's state;
  it re-runs under converge, when any node's files change and when forceBootstrapNode changes;
- recover (every node, in parallel, after every probe): this node's part of the one decision. The
  bootstrap node starts a new Primary component and waits for Synced; the others clear a stale
  safe_to_bootstrap flag. A refusal fails every recover step with what was seen on every node.
GaleraCluster makes its bootstrap step depend on the recover steps, so the existing chain (the
first node joins or bootstraps, then the others join one at a time) follows the decision.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from ..core.hosts import Host
from ..core.parse import GaleraProbe, parse_galera_probe
from ..core.render import sha256
from .galera_recovery import Decision, NodeState, decide
from .mariadb import DATADIR


def node_state(probe: GaleraProbe) -> NodeState:
    return NodeState(host=probe.host, running=probe.running, primary=probe.primary, grastate=probe.grastate,
                     uuid=probe.uuid, seqno=probe.seqno, safe_to_bootstrap=probe.safeToBootstrap,
                     sst_in_progress=probe.sstInProgress, partial=probe.partial, recovered=probe.recovered,
                     recover_error=probe.recoverError)


def recovery_steps(step: Callable, name: str, hosts: list[Host], configured: dict[str, pulumi.Resource],
                   digests: list[pulumi.Input[str]], cluster_name: str, force: str | None) -> list[pulumi.Resource]:
    """The probe and recover steps; returns the recover steps (the bootstrap step waits for them)."""
    digest = pulumi.Output.all(*digests).apply(lambda d: sha256("".join(d)))
    probes = {h.name: step(h, "probe", "galera-probe.sh.j2", depends_on=[configured[h.name]],
                           values={"datadir": DATADIR, "config_digest": digest, "force": force or ""})
              for h in hosts}

    def decision(outs: list[str]) -> Decision:
        states = [node_state(parse_galera_probe(f"{name}-{h.name}-probe", out)) for h, out in zip(hosts, outs)]
        return decide(states, force)

    decided = pulumi.Output.all(*[p.stdout for p in probes.values()]).apply(decision)
    addresses = {h.name: h.address for h in hosts}
    return [step(h, "recover", "galera-recover.sh.j2", depends_on=list(probes.values()),
                 values={"datadir": DATADIR, "cluster_name": cluster_name,
                         "peers": [addresses[o.name] for o in hosts if o is not h],
                         "action": decided.apply(lambda d, n=h.name: d.action_for(n)),
                         "position": decided.apply(lambda d: d.position or ""),
                         "reason": decided.apply(lambda d: d.reason),
                         "refusal": decided.apply(lambda d: d.refusal or "")})
            for h in hosts]

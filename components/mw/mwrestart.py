"""MiddlewareRestarts: a change OX reads only at start reaches the nodes one at a time, each behind
a drain at every Apache (OX "Running a cluster", rolling strategy), never all at once.

The middleware's configure steps write the new settings on every node in parallel and leave the
restart pending (components/mw/templates/scripts/mw/ox-configure.sh.j2). This component then
creates, for each middleware node in config order, a chain of steps:
- `<name>-<web>-drain-<node>` (every web host, backend nodes only): balancer-manager on that
  Apache drains the node (no new sessions) and disables it, so its sticky sessions move to the
  other members before it stops, instead of failing once and leaving it in error for retry=;
- `<name>-<node>-restart` (the node): restarts OX if a restart is pending (starts it if it is
  down) and waits until the admin daemon and the HTTP listener answer;
- `<name>-<web>-readmit-<node>` (every web host): the member enabled again, and drained exactly
  as `middleware.nodes[].drained` says.
The next node's drain waits for this node's readmit at every Apache: one node out at a time. With
several Apaches it waits through `<name>-<node>-readmitted` (a waypoint on the node:
remote.waypoint), so each drain depends on one step, not on every web host's readmit; the first
node's drains wait for every Apache started through `<name>-apaches-started` alike.

Every step carries its node's restart digest (OXMiddlewareGroup.restart_digests), so under the
engine the chain runs exactly when a setting OX reads at start changed; a new node's Hazelcast
member list on the others is not one. A readmit also carries the node's drained flag: flipping it
drains or undrains the node at runtime (the site's BalancerMember status keeps it for a fresh
Apache), with nothing restarted.
"""

from __future__ import annotations

import pulumi

from ..core.parse import parse_json_line
from ..core.remote import behind, run_script, waypoint
from ..web.frontend import BALANCERS, MANAGER_PORT, ApacheFrontend
from .middleware import OXMiddlewareGroup


class MiddlewareRestarts(pulumi.ComponentResource):
    restarted: dict[str, pulumi.Resource]  # node -> its restart step
    order: list[str]  # the nodes, in the order they restart

    def __init__(self, name: str, mw: OXMiddlewareGroup, frontend: ApacheFrontend | None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:mw:MiddlewareRestarts", name, None, opts)
        members = {b.name: b for b in frontend.backends} if frontend else {}
        webs = frontend.web_hosts if frontend else []
        self.order, self.restarted = list(mw.nodes), {}
        previous = self._all(f"{name}-apaches-started", webs[0], "every Apache started",
                             list(frontend.started.values())) if frontend else []
        for node, host in mw.nodes.items():
            digest = mw.restart_digests[node]
            member = members.get(node)  # None: a provisioning node, which no Apache balances to
            drains = [self._member(name, web, node, member, "drain", digest, [*previous, frontend.started[web.name]])
                      for web in webs] if member else []
            # When the drains last ran: whenever they run, the restart and the readmits run after them
            # (a run that failed between them leaves no node drained behind an unchanged readmit).
            drained_at = pulumi.Output.all(*[_run(f"{name}-{w.name}-drain-{node}", d)
                                             for w, d in zip(webs, drains)]).apply(lambda runs: ".".join(runs))
            restart = self.restarted[node] = run_script(
                f"{name}-{node}-restart", host, "mw/ox-restart.sh.j2", parent=self, secrets=mw.node_secrets,
                values={"restart_digest": digest, "jkroute": mw.jkroutes[node], "drained_at": drained_at},
                depends_on=[mw.configured[node], *previous, *drains])
            # The restart waited for every drain: each readmit depends on it, not on every web host's drain.
            readmits = [self._member(name, web, node, member, "readmit", digest, [restart, frontend.started[web.name]],
                                     behind(restart, drained_at)) for web in webs] if member else []
            previous = self._all(f"{name}-{node}-readmitted", host, f"{node} readmitted at every Apache",
                                 readmits) if readmits else [restart]
        self.register_outputs({"order": self.order})

    def _all(self, name: str, host, what: str, steps: list[pulumi.Resource]) -> list[pulumi.Resource]:
        """What waits for all of `steps`: the step itself, or for several a waypoint after them (each
        of the next node's W drains would otherwise wait for W steps)."""
        return steps if len(steps) == 1 else [waypoint(name, host, what, steps, parent=self)]

    def _member(self, name: str, web, node: str, member, action: str, digest, depends_on, drained_at=None):
        address = pulumi.Output.concat("http://", member.address, ":8009")
        # Only a readmit depends on the drained flag: flipping it runs the readmits, nothing else.
        drained = {"drained": member.drained, "drained_at": drained_at} if action == "readmit" else {}
        return run_script(f"{name}-{web.name}-{action}-{node}", web, f"web/balancer-{action}.sh.j2", parent=self,
                          values={"node": node, "member": address, **drained,
                                  "balancers": list(BALANCERS), "manager_port": MANAGER_PORT, "restart_digest": digest},
                          depends_on=depends_on)


def _run(step: str, command) -> pulumi.Output[str]:
    """The "run" of a drain step's JSON line: digits, when it last ran."""
    return command.stdout.apply(lambda out: str(parse_json_line(step, out).get("run", "0")))

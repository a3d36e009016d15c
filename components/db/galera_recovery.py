"""Which Galera node, if any, may start a new Primary component: a pure decision.

Every node's probe (db/galera-probe.sh.j2, parsed by parse.parse_galera_probe) reports whether its
server runs and is in a Primary component, its grastate.dat (uuid, seqno, safe_to_bootstrap), the
traces of an interrupted state transfer, and, where the server is down and grastate says seqno -1
(a crash), the position `mariadbd --wsrep-recover` recovered from InnoDB. `decide` turns those
states into one decision for the whole cluster, or a refusal that names the nodes and what was seen.

The rules, each one a way recovery has destroyed data elsewhere (mariadb-operator issue numbers):
- A node in a Primary component means the cluster runs: nothing is bootstrapped; the others join it.
- Fresh nodes (no grastate.dat, nothing running) are a first deploy: nothing to recover.
- The bootstrap node is the one with the highest committed seqno of the one cluster UUID all nodes
  share, whichever node that is; after a clean stop it is the last to leave (safe_to_bootstrap: 1),
  which breaks a tie. safe_to_bootstrap is a hint, never the reason to choose a node.
- The flag is cleared on every other node, so two nodes can never both bootstrap (#1626).
- Refused, naming the nodes and what was seen:
  - an interrupted state transfer (sst_in_progress, a partial datadir): its data may be a torn copy
    and its position a lie (#1108: a bootstrap from an aborted SST lost every database); a stale
    marker is refused too, for an operator to look at (#580);
  - cluster UUIDs that differ (two histories: choosing one discards the other);
  - the zero UUID on a node that claims safe_to_bootstrap (#1701), or as the only history;
  - a position that is unknown on any node with state (a failed recovery could hide the highest);
  - a highest seqno of 0: what a failed start leaves, not a history (#959).
- `forceBootstrapNode` (database.galera.forceBootstrapNode) is the documented override: that node
  bootstraps, whatever the others say, unless a Primary component runs, or the node itself has no
  history to offer (zero UUID, no grastate, an interrupted SST), which no override can make safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ZERO_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class NodeState:
    """What the probe saw on one node."""
    host: str
    running: bool = False
    primary: bool = False          # running, in a Primary component
    grastate: bool = False         # grastate.dat exists
    uuid: str | None = None        # grastate's uuid, or the running node's wsrep_local_state_uuid
    seqno: int | None = None       # grastate's seqno (-1: unknown), or the running node's last committed
    safe_to_bootstrap: bool = False
    sst_in_progress: bool = False  # the sst_in_progress marker in the datadir
    partial: str | None = None     # why the datadir looks like a partial copy, if it does
    recovered: str | None = None   # "uuid:seqno" from mariadbd --wsrep-recover
    recover_error: str | None = None

    @property
    def position(self) -> tuple[str | None, int | None]:
        """The best known (uuid, seqno): recovered from InnoDB when grastate's seqno is -1."""
        if self.seqno is not None and self.seqno >= 0:
            return self.uuid, self.seqno
        if self.recovered:
            uuid, _, seqno = self.recovered.rpartition(":")
            return uuid, (int(seqno) if int(seqno) >= 0 else None)
        return self.uuid, None

    def seen(self) -> str:
        """What was seen, in words, for a message."""
        uuid, seqno = self.position
        parts = [f"running{' in a Primary component' if self.primary else ', not Primary'}" if self.running
                 else "stopped"]
        if not self.grastate and not self.running:
            parts.append("no grastate.dat")
        else:
            parts.append(f"uuid {uuid or '?'}")
            parts.append(f"seqno {seqno if seqno is not None else 'unknown'}")
            if self.recovered:
                parts.append(f"recovered {self.recovered}")
            if self.safe_to_bootstrap:
                parts.append("safe_to_bootstrap 1")
        if self.sst_in_progress:
            parts.append("sst_in_progress present")
        if self.partial:
            parts.append(f"partial datadir ({self.partial})")
        if self.recover_error:
            parts.append(f"recovery failed ({self.recover_error})")
        return f"{self.host}: " + ", ".join(parts)


@dataclass(frozen=True)
class Decision:
    """`bootstrap`: the node that starts the new Primary component (None: none does); `pc_bootstrap`:
    it already runs, non-Primary, and is told pc.bootstrap=YES instead of being started; `position`:
    its "uuid:seqno"; `clear`: the nodes whose stale safe_to_bootstrap flag is cleared; `refusal`:
    set when nothing may be done, naming the nodes and what was seen."""
    reason: str
    bootstrap: str | None = None
    pc_bootstrap: bool = False
    position: str | None = None
    clear: tuple[str, ...] = field(default_factory=tuple)
    refusal: str | None = None

    def action_for(self, host: str) -> str:
        """One of refuse, bootstrap, pc-bootstrap, clear, none: what the recover step on `host` does."""
        if self.refusal:
            return "refuse"
        if host == self.bootstrap:
            return "pc-bootstrap" if self.pc_bootstrap else "bootstrap"
        return "clear" if host in self.clear else "none"


def _refuse(why: str, nodes: list[NodeState]) -> Decision:
    seen = "; ".join(n.seen() for n in nodes)
    return Decision(reason="refused", refusal=f"Galera recovery refused: {why}. Seen: {seen}. Fix the state, or "
                                               "name the node to bootstrap in the cluster's forceBootstrapNode "
                                               "(database.galera, or its database.galeraClusters entry)")


def decide(nodes: list[NodeState], force: str | None = None) -> Decision:
    """The recovery decision for a cluster whose nodes (in config order) are in these states."""
    names = [n.host for n in nodes]
    if force is not None and force not in names:
        raise ValueError(f"forceBootstrapNode {force!r} is not a Galera node ({', '.join(names)})")
    by_name = {n.host: n for n in nodes}
    stopped_flags = tuple(n.host for n in nodes if n.safe_to_bootstrap and not n.running)

    primary = [n for n in nodes if n.primary]
    if primary:
        return Decision(reason=f"a Primary component runs ({', '.join(n.host for n in primary)}); nothing to recover"
                        + (f"; forceBootstrapNode {force} ignored" if force else ""), clear=stopped_flags)

    with_state = [n for n in nodes if n.grastate or n.running]
    if not with_state:
        return Decision(reason="fresh nodes (no grastate.dat anywhere, nothing running): nothing to recover")

    if force is not None:
        chosen = by_name[force]
        uuid, seqno = chosen.position
        unusable = (chosen.sst_in_progress and "its state transfer was interrupted (sst_in_progress)") \
            or (chosen.partial and f"its datadir is a partial copy ({chosen.partial})") \
            or (not chosen.grastate and not chosen.running and "it has no grastate.dat (never a member)") \
            or ((uuid in (None, ZERO_UUID)) and "it has the zero UUID (no history)")
        if unusable:
            return _refuse(f"forceBootstrapNode {force} cannot be bootstrapped: {unusable}", nodes)
        position = f"{uuid}:{seqno}" if seqno is not None and seqno >= 0 else None
        return Decision(reason=f"forceBootstrapNode {force}: bootstrapping it as told", bootstrap=force,
                        pc_bootstrap=chosen.running, position=position,
                        clear=tuple(h for h in stopped_flags if h != force))

    # Every reason to refuse is named at once, so one look at the message shows all that is wrong.
    problems = []
    interrupted = [n for n in nodes if n.sst_in_progress or n.partial]
    if interrupted:
        problems.append("a state transfer was interrupted on " + ", ".join(n.host for n in interrupted)
                        + " (its datadir may be a torn copy)")
    zero_flag = [n for n in with_state if n.safe_to_bootstrap and (n.position[0] in (None, ZERO_UUID))]
    if zero_flag:
        problems.append("safe_to_bootstrap: 1 on a node with the zero UUID ("
                        + ", ".join(n.host for n in zero_flag) + ")")
    mismatched = [n for n in with_state if n.recovered and n.uuid not in (None, ZERO_UUID)
                  and n.recovered.rpartition(":")[0] != n.uuid]
    if mismatched:
        problems.append("grastate.dat and the recovered position name different cluster UUIDs on "
                        + ", ".join(n.host for n in mismatched))
    histories = {n.host: n.position[0] for n in with_state if n.position[0] not in (None, ZERO_UUID)}
    if len(set(histories.values())) > 1:
        problems.append("the nodes hold different cluster UUIDs ("
                        + ", ".join(f"{h} {u}" for h, u in histories.items()) + ")")
    unknown = [n for n in with_state if n.position[1] is None and n.position[0] != ZERO_UUID]
    if not histories or len(unknown) == len(with_state):
        problems.append("every position is unknown" + ("" if histories else " (no node has a cluster UUID)"))
    elif unknown:
        problems.append("the position of " + ", ".join(n.host for n in unknown)
                        + " is unknown, and it could hold the highest seqno")
    if problems:
        return _refuse("; ".join(problems), nodes)

    candidates = [n for n in with_state if n.position[0] not in (None, ZERO_UUID) and n.position[1] is not None]
    best = max(n.position[1] for n in candidates)
    if best <= 0:
        return _refuse(f"the highest seqno is {best}: what a failed start leaves, not a history", nodes)
    top = [n for n in candidates if n.position[1] == best]
    chosen = next((n for n in top if n.safe_to_bootstrap), top[0])

    running_other = [n for n in nodes if n.running and n is not chosen]
    if not chosen.running and running_other:
        return _refuse(f"{chosen.host} holds the highest seqno but is stopped while "
                       + ", ".join(n.host for n in running_other)
                       + " run outside a Primary component; stop them before it is bootstrapped", nodes)

    uuid, seqno = chosen.position
    why = "the last to leave (safe_to_bootstrap: 1)" if chosen.safe_to_bootstrap else "the highest seqno"
    return Decision(reason=f"{chosen.host} has {why}: {uuid}:{seqno}", bootstrap=chosen.host,
                    pc_bootstrap=chosen.running, position=f"{uuid}:{seqno}",
                    clear=tuple(h for h in stopped_flags if h != chosen.host))

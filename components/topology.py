"""The estate's topology as a picture: hosts grouped by role, and the flows between them.

Built from the typed stack config (components/core/config.py), the same one Estate wires the
components from: clients -> (floating address) -> Apache -> OX nodes by jkroute -> HAProxy on each
OX node -> the Galera writer (3307) and readers (3306); OX -> the GTID pair (writes to the master
or its floating address, reads from the slave); NFS mounts; Galera peers; GTID replication; other
stacks by StackReference (database.fromStacks, database.clients).
`write()` puts `topology.dot`, `.svg` and `.png` in a directory (the images need Graphviz's `dot`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import graphviz

from .core.config import EstateConfig, parse

_STYLE = {"fontname": "Helvetica", "fontsize": "11"}
# Fill colours by role, and the colour of each kind of flow.
_FILL = {"web": "#e3f2fd", "mw": "#e8f5e9", "galera": "#fff3e0", "gtid": "#fce4ec", "nfs": "#ede7f6",
         "standalone": "#fff3e0"}
_HTTP, _SQL, _REPL, _NFS, _VIP = "#1565c0", "#2e7d32", "#e65100", "#6a1b9a", "#616161"
_LEGEND = "blue: HTTP   green: SQL   orange: replication   purple: filestore   grey dashed: floating address"


def for_stack(stack: str, overrides: dict[str, Any] | None = None) -> graphviz.Digraph:
    """The topology of `stacks/Pulumi.<stack>.yaml`."""
    from .plan import NAMESPACE, stack_config

    config, secret_keys = stack_config(stack, overrides)
    raw = {k.split(":", 1)[1]: _decode(v) for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
    return topology(parse(raw, {k.split(":", 1)[1] for k in secret_keys}), stack)


def _decode(value: str) -> Any:
    return json.loads(value) if value[:1] in "[{" else value


def topology(cfg: EstateConfig, title: str = "") -> graphviz.Digraph:
    # compound: an edge may end at a cluster's border (lhead/ltail), standing for all its nodes.
    g = graphviz.Digraph("estate", graph_attr={"rankdir": "TB", "compound": "true", "newrank": "true",
                                               "nodesep": "0.5", "ranksep": "0.9", "labelloc": "t",
                                               "label": f"ox-estate: {title}\n{_LEGEND}",
                                               "fontsize": "16", "fontname": "Helvetica"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white", **_STYLE},
                         edge_attr=_STYLE)
    addr = {h.name: h.address or "(assigned)" for h in cfg.hosts}
    g.node("clients", "clients\n(browsers, apps)", shape="ellipse", fillcolor="#f5f5f5")
    mw = _middleware(g, cfg, addr)
    _frontend(g, cfg, addr)
    _databases(g, cfg, addr, mw)
    _filestore(g, cfg, addr, mw)
    _other_stacks(g, cfg, mw)
    return g


def _in_order(row: graphviz.Digraph, nodes: list[str]) -> None:
    """Side by side, left to right in config order (invisible edges hold the order)."""
    row.attr(rank="same")
    for a, b in zip(nodes, nodes[1:]):
        row.edge(a, b, style="invis")


def _host(name: str, addr: dict, *lines: str) -> str:
    return "\n".join([f"{name}  {addr[name]}", *lines])


def _middleware(g: graphviz.Digraph, cfg: EstateConfig, addr: dict) -> list[str]:
    """OX nodes, each with its HAProxy; returns the OX node ids."""
    if not cfg.middleware:
        return []
    galeras = cfg.database.of_kind("galera") if cfg.database else []
    with g.subgraph(name="cluster_mw") as c:
        c.attr(label=f"mw: OX middleware, Hazelcast cluster {cfg.middleware.cluster_name}", style="filled",
               fillcolor=_FILL["mw"], **_STYLE)
        hosts = [n.host for n in cfg.middleware.nodes]
        with c.subgraph() as row:
            for n in cfg.middleware.nodes:
                role = "provisioning (no frontend traffic)" if n.role == "provisioning" else f"jkroute {n.jkroute}"
                row.node(f"ox_{n.host}", _host(n.host, addr, f"OX App Suite :8009, {role}"
                                               + (", drained" if n.drained else "")))
            _in_order(row, [f"ox_{h}" for h in hosts])
        if galeras:
            ports = "".join(f"\n127.0.0.1:{r} read{_of(t)}\n127.0.0.1:{w} write{_of(t)}"
                            for t in galeras for r, w in [cfg.database.proxy_ports(t)])
            with c.subgraph() as row:
                for h in hosts:
                    row.node(f"haproxy_{h}", f"HAProxy on {h}{ports}", shape="component")
                _in_order(row, [f"haproxy_{h}" for h in hosts])
            for h in hosts:
                c.edge(f"ox_{h}", f"haproxy_{h}", "configdb/userdb", color=_SQL, fontcolor=_SQL)
    return [n.host for n in cfg.middleware.nodes]


def _frontend(g: graphviz.Digraph, cfg: EstateConfig, addr: dict) -> None:
    if not cfg.frontend or not cfg.middleware:
        return
    webs = [n.host for n in cfg.middleware.nodes if n.role == "backend"] \
        if cfg.frontend.mode == "colocated" else list(cfg.frontend.nodes)
    with g.subgraph(name="cluster_web") as c:
        c.attr(label="web: Apache frontends (mod_proxy_balancer, sticky on JSESSIONID)", style="filled",
               fillcolor=_FILL["web"], **_STYLE)
        for w in webs:
            where = " (on the OX node)" if cfg.frontend.mode == "colocated" else ""
            c.node(f"web_{w}", _host(w, addr, f"Apache :80{where}"))
    entry = "clients"
    if cfg.frontend.floating_address:
        g.node("vip_web", f"floating address\n{cfg.frontend.floating_address}\n(keepalived, VRRP {cfg.frontend.vrrp_router_id})",
               shape="octagon", style="dashed,filled", fillcolor="#fafafa")
        g.edge("clients", "vip_web", "HTTP", color=_HTTP, fontcolor=_HTTP)
        entry = "vip_web"
        for w in webs:
            g.edge("vip_web", f"web_{w}", "held by one", style="dashed", color=_VIP, fontcolor=_VIP)
    else:
        for w in webs:
            g.edge(entry, f"web_{w}", "HTTP", color=_HTTP, fontcolor=_HTTP)
    for w in webs:
        for n in cfg.middleware.nodes:
            if n.role == "backend":
                g.edge(f"web_{w}", f"ox_{n.host}", f"route {n.jkroute}" + (" (drained)" if n.drained else ""),
                       color=_HTTP, fontcolor=_HTTP, style="dashed" if n.drained else "solid")


def _of(t) -> str:
    """Names a topology in a label, except the single-key one of its kind (`galera`, `gtid`)."""
    return "" if t.name == t.kind else f" ({t.name})"


def _databases(g: graphviz.Digraph, cfg: EstateConfig, addr: dict, mw: list[str]) -> None:
    db = cfg.database
    if not db:
        return
    for t in db.topologies():
        holds = _holds(cfg, t)
        if t.kind == "galera":
            _galera(g, cfg, t, addr, mw, holds)
        elif t.kind == "gtid":
            _gtid(g, t, addr, mw, holds)
        else:
            s = t.spec.host
            with g.subgraph(name="cluster_standalone") as c:
                c.attr(label=f"db: standalone MariaDB ({holds})", style="filled",
                       fillcolor=_FILL["standalone"], **_STYLE)
                c.node(f"db_{s}", _host(s, addr, "MariaDB :3306"), shape="cylinder")
            for m in mw:
                g.edge(f"ox_{m}", f"db_{s}", ":3306", color=_SQL, fontcolor=_SQL)


def _holds(cfg: EstateConfig, t) -> str:
    """What OX keeps in a database topology: the configdb, its userdb, or both."""
    db = cfg.database
    parts = ["configdb"] if db.configdb == t.name else []
    if t.name in (db.userdbs or [db.configdb]):
        parts.append(f"userdb {t.ox_name}")
    return ", ".join(parts) or "no OX data"


def _galera(g: graphviz.Digraph, cfg: EstateConfig, t, addr: dict, mw: list[str], holds: str) -> None:
    nodes, cluster = t.spec.nodes, f"cluster_{t.name}"
    wsrep = "wsrep" if t.name == "galera" else f"wsrep_{t.name}"
    with g.subgraph(name=cluster) as c:
        c.attr(label=f"db/galera{_of(t)}: {t.spec.cluster_name} ({holds})\n"
                     "one writer at a time, elected by clustercheck /master; reads on every Synced node",
               style="filled", fillcolor=_FILL["galera"], **_STYLE)
        with c.subgraph() as row:  # side by side: the cluster stays short
            row.attr(rank="same")
            for n in nodes:
                row.node(f"db_{n}", _host(n, addr, "MariaDB :3306, clustercheck :9200"), shape="cylinder")
            _in_order(row, [f"db_{n}" for n in nodes])
        # Every node replicates to every other: one group (a full mesh of edges would cross the picture).
        c.node(wsrep, "wsrep group communication :4567\nsynchronous, every node to every node",
               shape="ellipse", style="dashed,filled", fillcolor="#fafafa", color=_REPL, fontcolor=_REPL)
        for n in nodes:
            c.edge(f"db_{n}", wsrep, dir="both", color=_REPL, style="bold")
    if not mw:
        return
    read, write = cfg.database.proxy_ports(t)
    for i, m in enumerate(mw):  # each edge ends at the cluster: it stands for the writer and the readers
        g.edge(f"haproxy_{m}", f"db_{nodes[i % len(nodes)]}", f"{write} write: writer\n{read} read: all",
               lhead=cluster, color=_SQL, fontcolor=_SQL)


def _gtid(g: graphviz.Digraph, t, addr: dict, mw: list[str], holds: str) -> None:
    gtid = t.spec
    master, slave = gtid.master.host, gtid.slave.host
    both = gtid.mode == "master-master"
    with g.subgraph(name=f"cluster_{t.name}") as c:
        c.attr(label=f"db/gtid{_of(t)}: {gtid.mode} ({holds})", style="filled", fillcolor=_FILL["gtid"], **_STYLE)
        c.node(f"db_{master}", _host(master, addr, f"MariaDB :3306, {'master' if not both else 'master 1'}, "
                                     f"server_id {gtid.master.server_id}"), shape="cylinder")
        c.node(f"db_{slave}", _host(slave, addr, f"MariaDB :3306, {'slave' if not both else 'master 2'}, "
                                    f"server_id {gtid.slave.server_id}"), shape="cylinder")
        c.edge(f"db_{master}", f"db_{slave}", "GTID replication", dir="both" if both else "forward",
               color=_REPL, fontcolor=_REPL, style="bold")
    write = f"db_{master}"
    if gtid.floating_address:
        vip = f"vip_{t.name}"
        g.node(vip, f"floating address\n{gtid.floating_address}\n(keepalived, VRRP {gtid.vrrp_router_id})",
               shape="octagon", style="dashed,filled", fillcolor="#fafafa")
        for h in (master, slave):
            g.edge(vip, f"db_{h}", "held by one", style="dashed", color=_VIP, fontcolor=_VIP)
        write = vip
    if mw:  # every OX node connects directly: one edge from the group stands for all of them
        tail = f"ox_{mw[-1]}"
        g.edge(tail, write, "write :3306", ltail="cluster_mw", color=_SQL, fontcolor=_SQL)
        if not both:
            g.edge(tail, f"db_{slave}", "read :3306", ltail="cluster_mw", color=_SQL, fontcolor=_SQL)


def _filestore(g: graphviz.Digraph, cfg: EstateConfig, addr: dict, mw: list[str]) -> None:
    fs = cfg.filestore
    if not fs or not fs.server:
        return
    with g.subgraph(name="cluster_nfs") as c:
        c.attr(label=f"nfs: filestore ({fs.implementation})", labelloc="b", style="filled", fillcolor=_FILL["nfs"], **_STYLE)
        c.node(f"nfs_{fs.server}", _host(fs.server, addr, f"export {fs.export_path}"), shape="folder")
    how = "NFS mount" if fs.client_mount == "nfs" else "shared path (preprovisioned)"
    if mw:  # every OX node mounts it: one edge from the group stands for all of them
        g.edge(f"ox_{mw[-1]}", f"nfs_{fs.server}", f"every OX node: {how}\n{fs.mount_path}", ltail="cluster_mw",
               style="dashed", color=_NFS, fontcolor=_NFS)


def _other_stacks(g: graphviz.Digraph, cfg: EstateConfig, mw: list[str]) -> None:
    """StackReference edges (components/core/stackref.py): the database stacks this stack's OX
    registers userdbs from, and the other stacks' middleware this stack's databases serve. The
    picture is drawn from this stack's config alone: the other stacks appear by name."""
    db = cfg.database
    if not db:
        return
    for i, stack in enumerate(db.from_stacks):
        node = f"stack_{i}"
        g.node(node, f"database stack {stack}\n(its userdbs; Galera through each OX node's HAProxy)",
               shape="tab", style="dashed,filled", fillcolor=_FILL["galera"])
        if mw:
            g.edge(f"ox_{mw[-1]}", node, "StackReference: registered here, SQL :3306", ltail="cluster_mw",
                   style="dashed", color=_SQL, fontcolor=_SQL)
    if db.clients and db.topologies():
        g.node("db_clients", "other stacks' OX nodes\n" + "\n".join(map(str, db.clients)), shape="tab",
               style="dashed,filled", fillcolor=_FILL["mw"])
        first = db.topologies()[0]
        target = f"db_{_first_host(first)}"
        g.edge("db_clients", target, "database.clients: :3306, clustercheck :9200\n(StackReference to this stack)",
               lhead=f"cluster_{first.name}", style="dashed", color=_SQL, fontcolor=_SQL)


def _first_host(t) -> str:
    if t.kind == "galera":
        return t.spec.nodes[0]
    return t.spec.master.host if t.kind == "gtid" else t.spec.host


def write(g: graphviz.Digraph, out: str | Path) -> list[Path]:
    """`topology.dot` always; `.svg` and `.png` where Graphviz's `dot` is installed."""
    out = Path(out)
    dot = out / "topology.dot"
    dot.write_text(g.source)
    written = [dot]
    if shutil.which("dot"):
        for fmt in ("svg", "png"):
            data = g.pipe(format=fmt)
            (out / f"topology.{fmt}").write_bytes(data)
            written.append(out / f"topology.{fmt}")
    return written

"""ReadWriteSplit: OX's path to its Galera clusters (oxpedia "HAproxy" and "Clustercheck").

Creates:
- `<name>-<db>-clustercheck` on every node of every Galera cluster: the clustercheck service on
  :9200, which answers `/` on Synced nodes and `/master` on its cluster's single writer;
- `<name>-clusterchecks-ready` with several Galera clusters: a waypoint after every clustercheck;
- `<name>-<mw>-haproxy` on every middleware node: one HAProxy with a read listener (round robin)
  and a write listener (the writer) per cluster (this stack's, and another stack's read through
  `database.fromStacks`) on 127.0.0.1, waiting until each has one writer UP;
  with document converters also the `converter` listener (127.0.0.1:8008, round robin over the
  frontends' Apache), since one HAProxy per node holds one configuration.

A database stack without middleware (`database.clients`) gets the clustercheck steps only.

ConverterProxy: the same step with only the converter listener, for an estate with converters
but without Galera (`<name>-<mw>-haproxy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from ..core.hosts import Host
from ..core.parse import parse_json_line
from ..core.remote import run_script, waypoint
from ..core.render import render, verbatim

CLUSTERCHECK_DIR = "/usr/local/lib/ox-estate"
CLUSTERCHECK = f"{CLUSTERCHECK_DIR}/clustercheck.py"
# One OX node holds a few hundred DB connections (its pools); HAProxy needs two FDs for each,
# and the page's 256000 fails to start where the FD limit is lower (20000 was seen here).
MAXCONN = 4096
# The cluster of that name (the single-cluster key database.galera) keeps oxpedia's listener names.
PLAIN_LISTENERS = "galera"


@dataclass(frozen=True)
class ProxiedCluster:
    """One Galera cluster behind every middleware node's HAProxy."""
    name: str
    hosts: list[Host]
    read_port: int
    write_port: int
    # node -> its verify step (Synced): the node's clustercheck starts after it
    verified: dict[str, pulumi.Resource] = field(default_factory=dict)
    # Another stack's cluster (components/core/stackref.py): its clustercheck is that stack's own,
    # and its nodes are only addresses here (hosts.remote_node).
    remote: bool = False

    @property
    def listeners(self) -> tuple[str, str]:
        suffix = "" if self.name == PLAIN_LISTENERS else f"-{self.name}"
        return f"mysql-read{suffix}", f"mysql-write{suffix}"


@dataclass(frozen=True)
class ReadWriteSplitArgs:
    clusters: list[ProxiedCluster]
    mw_hosts: list[Host]
    converter_frontends: list[Host] = field(default_factory=list)  # for the converter listener


class ReadWriteSplit(pulumi.ComponentResource):
    endpoints: dict[str, dict[str, str]]  # cluster name -> writeEndpoint, readEndpoint as OX sees them
    proxies: pulumi.Output[list]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ReadWriteSplitArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:db:ReadWriteSplit", name, None, opts)

        checks = []
        for cluster in args.clusters:
            if cluster.remote:  # its clustercheck is its own stack's
                continue
            for h in cluster.hosts:  # each node's clustercheck asks its own cluster's peers only
                peers = [p.address for p in cluster.hosts if p is not h]
                files = pulumi.Output.all(h.address, *peers).apply(lambda addrs: {
                    "program_text": verbatim("files/clustercheck.py"),
                    **{key: render(template, program=CLUSTERCHECK, self_address=addrs[0], peers=addrs[1:])
                       for key, template in (("unit_text", "files/ox-clustercheck.service.j2"),
                                             ("init_text", "files/ox-clustercheck.init.j2"))},
                })
                checks.append(run_script(f"{name}-{h.name}-clustercheck", h, "db/clustercheck.sh.j2", parent=self,
                                         values={"program": CLUSTERCHECK, "program_dir": CLUSTERCHECK_DIR,
                                                 "files": files},
                                         # Its own node Synced (verify) is all it needs: its account and
                                         # the writer table come with the bootstrap, not with the OX
                                         # grants, which run meanwhile (whatever logs in as
                                         # openexchange waits for them).
                                         depends_on=[cluster.verified[h.name]] if h.name in cluster.verified else []))

        # Every HAProxy waits for every clustercheck. With several clusters, through one waypoint:
        # middleware nodes + checks edges, not middleware nodes x checks (both grow with the estate).
        # One cluster's 3 checks stay direct, so an estate with one cluster keeps its steps.
        local = [c for c in args.clusters if not c.remote]
        if len(local) > 1 and args.mw_hosts:
            checks = [waypoint(f"{name}-clusterchecks-ready", local[0].hosts[0], "every clustercheck started",
                               checks, parent=self)]
        proxies = haproxy_steps(name, self, args.mw_hosts, args.clusters, args.converter_frontends, depends_on=checks)
        self.endpoints = {c.name: {"writeEndpoint": f"127.0.0.1:{c.write_port}", "readEndpoint": f"127.0.0.1:{c.read_port}"}
                          for c in args.clusters}
        self.proxies = _parsed(name, proxies)
        self.ready = list(proxies.values())
        self.register_outputs({"endpoints": self.endpoints, "proxies": self.proxies})


class ConverterProxy(pulumi.ComponentResource):
    """HAProxy's converter listener on every middleware node, where no Galera split needs HAProxy."""

    proxies: pulumi.Output[list]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, mw_hosts: list[Host], frontends: list[Host],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:mw:ConverterProxy", name, None, opts)
        proxies = haproxy_steps(name, self, mw_hosts, [], frontends)
        self.proxies = _parsed(name, proxies)
        self.ready = list(proxies.values())
        self.register_outputs({"proxies": self.proxies})


def _pairs(hosts: list[Host]) -> pulumi.Output[list]:
    return pulumi.Output.all(*[pulumi.Output.all(h.name, h.address) for h in hosts])


def listener_values(cluster: ProxiedCluster) -> dict:
    """A cluster's listeners as haproxy.cfg.j2 and haproxy.sh.j2 take them (without its nodes)."""
    read, write = cluster.listeners
    return {"name": cluster.name, "named": cluster.name != PLAIN_LISTENERS, "read_listener": read,
            "write_listener": write, "read_port": cluster.read_port, "write_port": cluster.write_port}


def haproxy_steps(name: str, parent: pulumi.Resource, mw_hosts: list[Host], clusters: list[ProxiedCluster],
                  converter_frontends: list[Host], depends_on: list[pulumi.Resource] = ()) -> dict:
    """`<name>-<mw>-haproxy` on every middleware node: one haproxy.cfg with each Galera cluster's
    listeners and the converter listener (if `converter_frontends`)."""
    listeners = [listener_values(c) for c in clusters]

    def config(pairs: list) -> str:
        *nodes, frontends = pairs
        return render("files/haproxy.cfg.j2", clusters=[{**l, "nodes": n} for l, n in zip(listeners, nodes)],
                      converter_frontends=frontends, maxconn=MAXCONN)

    rendered = pulumi.Output.all(*[_pairs(c.hosts) for c in clusters], _pairs(converter_frontends)).apply(config)
    return {h.name: run_script(f"{name}-{h.name}-haproxy", h, "mw/haproxy.sh.j2", parent=parent,
                               values={"config": rendered, "clusters": listeners}, depends_on=depends_on)
            for h in mw_hosts}


def _parsed(name: str, proxies: dict) -> pulumi.Output[list]:
    return pulumi.Output.all(*[
        p.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-haproxy", out)) for n, p in proxies.items()
    ])

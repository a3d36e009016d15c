"""HostBaseline: what every estate host gets before any tier touches it.

Creates, per host:
- `<host>-facts`: reports OS, memory, CPUs, hostname and the packages its roles need (one JSON
  line, parsed by `parse.parse_facts`); changes nothing.
- `<name>-facts-ready` (on the first host): a waypoint (remote.waypoint) that waits for every
  host's facts;
- `<host>-hosts-file`: a managed /etc/hosts block naming every estate host under its estate
  name and its own hostname, taken from every host's facts: the block is rendered once, and each
  hosts-file step waits for the waypoint, not for N facts steps.

Tiers build on `HostBaseline.hosts`: the same hosts, whose steps wait for the baseline, and on
`HostBaseline.host_facts`: each host's own facts, so a host's steps change only with its facts.
"""

from __future__ import annotations

import dataclasses

import pulumi

from ..db import mariadb, mycnf
from .config import EstateConfig, Role
from .hosts import Host
from .parse import parse_facts
from .remote import behind, run_script, waypoint
from .render import render

def packages_for(cfg: EstateConfig, host: str, roles: frozenset[Role]) -> list[str]:
    """The Debian packages the tiers install on this host. The facts step reports their versions
    before anything is installed (null when missing)."""
    packages: set[str] = set()
    if Role.DB in roles:
        galera = any(host in t.spec.nodes for t in cfg.database.of_kind("galera"))
        packages.update(mariadb.packages(mycnf.release_of(cfg), galera=galera))
    if Role.MW in roles:
        packages.add("mariadb-client")  # initconfigdb and its probe
        if (cfg.database and cfg.database.of_kind("galera")) or cfg.document_converter:  # components/db/dbproxy.py
            packages.update(["haproxy", "socat"])
    if Role.WEB in roles:
        packages.add("apache2")
    if Role.NFS in roles:
        packages.add("nfs-kernel-server" if cfg.filestore.implementation == "kernel" else "nfs-ganesha")
    return sorted(packages)


class HostBaseline(pulumi.ComponentResource):
    hosts: dict[str, Host]
    host_facts: dict[str, pulumi.Output[dict]]  # host -> its own facts
    facts: pulumi.Output[dict]  # every host's, for the stack output

    def __init__(self, name: str, cfg: EstateConfig, hosts: dict[str, Host], opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:host:Baseline", name, None, opts)

        facts_steps = {
            h.name: run_script(f"{h.name}-facts", h, "facts.sh.j2", parent=self,
                               values={"packages": packages_for(cfg, h.name, h.roles)})
            for h in hosts.values()
        }
        facts = {n: step.stdout.apply(lambda out, n=n: parse_facts(f"{n}-facts", out)) for n, step in facts_steps.items()}
        all_facts = waypoint(f"{name}-facts-ready", next(iter(hosts.values())), "every host's facts",
                             list(facts_steps.values()), parent=self)

        # address, estate name, and the machine's own hostname where it differs.
        entries = pulumi.Output.all(
            *[pulumi.Output.all(h.address, facts[h.name]).apply(
                lambda af, n=h.name: [af[0], [n] + ([af[1].hostname] if af[1].hostname != n else [])])
              for h in hosts.values()]
        )
        block = behind(all_facts, entries.apply(lambda e: render("files/hosts-block.j2", entries=e)))
        self.hosts = {}
        for h in hosts.values():
            step = run_script(f"{h.name}-hosts-file", h, "hosts-file.sh.j2", parent=self,
                              values={"block": block}, depends_on=[all_facts])
            self.hosts[h.name] = dataclasses.replace(h, ready=(*h.ready, step))

        self.host_facts = {n: f.apply(lambda f: f.model_dump()) for n, f in facts.items()}
        self.facts = pulumi.Output.all(**self.host_facts)
        self.register_outputs({"facts": self.facts})

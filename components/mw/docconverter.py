"""DocumentConverterNodes: OX document converter nodes (oxpedia "DocumentConverter Quickinstall Guide").

Converter nodes are nodes of their own: no configdb, no Hazelcast cluster. The frontends' Apache
balances to them (balancer://oxcluster_docs, sticky on the route after JSESSIONID's first dot;
components/web/frontend.py), and only the middleware nodes may reach that endpoint.

Creates, per node (`<name>-<host>-<phase>`):
- `configure`: OX's converter packages (preinstalled: the service must exist; repository: OX's
  apt repository, as the middleware's packages), `com.openexchange.server.backendRoute` and
  `networkListenerHost=*` in server.properties, `jobProcessorCount` in documentconverter.properties;
  a change leaves a restart pending;
- `start`: starts the service, or restarts it when `configure` changed something, and waits until
  it answers on :8008/documentconverterws. It carries the digest of what `configure` writes, so
  under the engine it runs exactly when that changes (components/web/frontend.py's pattern);
- `check`: one JSON line (host, route, url); it carries the same digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi

from ..core.hosts import Host
from ..core.parse import parse_json_line
from ..core.remote import phase_steps
from ..core.render import sha256, verbatim

PORT = 8008
PATH = "/documentconverterws"
# Converter packages (the guide: server, api, readerengine, which pulls in its pdf2svg).
SERVER_PACKAGES = ["open-xchange-documentconverter-server", "open-xchange-documentconverter-api", "readerengine"]
# The middleware's side of it (the guide's middleware nodes).
CLIENT_PACKAGES = ["open-xchange-documentconverter-api", "open-xchange-documentconverter-client"]
LISTENER_HOST = "*"  # clustered setups listen on every address, not only on localhost


@dataclass(frozen=True)
class ConverterNode:
    host: Host
    route: str  # its backendRoute, and the route= of its BalancerMember


@dataclass(frozen=True)
class DocumentConverterArgs:
    nodes: list[ConverterNode]
    job_processor_count: int = 3
    package_source: str = "preinstalled"  # as the middleware's: "preinstalled" or "repository"
    repository_url: str = ""
    repository_user: str = ""
    repository_password: pulumi.Input[str] | None = None  # repository source only; on stdin
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def config_digest(values: dict) -> str:
    """What a node's configure step writes that the converter reads at start: its values and the script."""
    return sha256(json.dumps(values, sort_keys=True) + verbatim("scripts/dc/dc-configure.sh.j2"))


class DocumentConverterNodes(pulumi.ComponentResource):
    routes: dict[str, str]  # host -> route
    members: list[tuple[pulumi.Input[str], str]]  # (address, route): the frontends' BalancerMembers
    status: pulumi.Output[list]
    ready: list[pulumi.Resource]  # every node's start step: the converters answer

    def __init__(self, name: str, args: DocumentConverterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:dc:DocumentConverterNodes", name, None, opts)
        step = phase_steps(name, self)
        repository = args.package_source == "repository"
        secrets = {"OX_REPOSITORY_PASSWORD": args.repository_password} if repository else {}
        source = {"source": args.package_source, "packages": SERVER_PACKAGES,
                  "repository_url": args.repository_url, "repository_user": args.repository_user,
                  "repository_host": args.repository_url.split("://", 1)[-1].split("/", 1)[0]}

        checks, self.ready = {}, []
        for node in args.nodes:
            values = {"route": node.route, "listener_host": LISTENER_HOST,
                      "job_processor_count": args.job_processor_count}
            configure = step(node.host, "configure", "dc/dc-configure.sh.j2", values={**source, **values},
                             secrets=secrets, depends_on=args.depends_on)
            digest = config_digest({**source, **values})
            common = {"route": node.route, "port": PORT, "path": PATH, "config_digest": digest}
            start = step(node.host, "start", "dc/dc-start.sh.j2", values=common, depends_on=[configure])
            url = pulumi.Output.concat("http://", node.host.address, f":{PORT}{PATH}")
            checks[node.host.name] = step(node.host, "check", "dc/dc-check.sh.j2", values={**common, "url": url},
                                          depends_on=[start])
            self.ready.append(start)

        self.routes = {n.host.name: n.route for n in args.nodes}
        self.members = [(n.host.address, n.route) for n in args.nodes]
        self.status = pulumi.Output.all(*[
            c.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-check", out)) for n, c in checks.items()
        ])
        self.register_outputs({"routes": self.routes, "status": self.status})

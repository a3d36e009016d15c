"""OXMiddlewareGroup: the OX App Suite middleware nodes of one OX cluster.

Creates, as steps named `<group>-<node>-<phase>`:
- ox-user (every node): the open-xchange user and group with the estate's fixed uid/gid;
- packages (every node): OX's packages, preinstalled (golden image) or from OX's repository,
  with the Hazelcast session storage when there are several nodes;
- initconfigdb (first node, once per OX cluster): the configdb on its write host; an existing
  configdb is adopted, never re-initialized;
- configure (every node, in parallel): oxinstaller with identical options but a unique --jkroute,
  hazelcast.properties (static join over every node), the replication monitor setting for the
  configdb's topology; starts the service where it is not running and waits for the admin
  daemon. A running node is never restarted here: a change that needs one is left pending for
  the node's restart step, which components/mw/mwrestart.py chains one node after another (a new
  node's member list alone needs none: see the script).
- ready (on the first node): a waypoint (remote.waypoint) that waits for every node's configure
  step; what needs the whole group configured (every frontend, the registration) waits for it.

`restart_digests` (per node) is what that chain runs on: the digest of everything configure
writes that OX reads only at start (so not the Hazelcast member list).

The provisioning node (role "provisioning") is configured like the others and joins the
Hazelcast cluster, but is never a frontend backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi

from ..core.hosts import Host
from ..core.remote import phase_steps, waypoint
from ..core.render import render, sha256, verbatim
from ..core.secrets import StackSecrets
from ..core.versions import appsuite_before
from ..db.grants import OX_DB_USER
from .docconverter import CLIENT_PACKAGES

OX_PACKAGES = ["open-xchange", "open-xchange-admin", "open-xchange-authentication-database", "open-xchange-grizzly",
               "open-xchange-appsuite-backend", "open-xchange-appsuite-manifest"]
CONFIGDB_NAME = "configdb"
# With document converters: each node's converter URL, the local HAProxy listener (dbproxy.py) that
# round-robins over the frontends (the guide's final setup: no frontend is a single point of failure).
CONVERTER_URL = "http://127.0.0.1:8008/documentconverterws"


@dataclass(frozen=True)
class ConfigdbEndpoints:
    """How OX nodes reach the configdb, and whether OX must watch replication lag."""
    read_host: pulumi.Input[str]
    read_port: int
    write_host: pulumi.Input[str]
    write_port: int
    replication_monitor: bool


@dataclass(frozen=True)
class OXNode:
    host: Host
    jkroute: str  # unique in the cluster: the route suffix of its JSESSIONID
    role: str = "backend"  # or "provisioning": in the cluster, never behind the frontends
    drained: bool = False  # no new sessions at the frontends (components/mw/mwrestart.py)


@dataclass(frozen=True)
class OXMiddlewareGroupArgs:
    nodes: list[OXNode]  # the first node initializes the configdb
    configdb: ConfigdbEndpoints
    secrets: StackSecrets
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # the databases, ready
    cluster_name: str = "ox-cluster"  # Hazelcast's group name
    server_name: str = "oxserver"  # registerserver -n, oxinstaller --servername
    servermemory_mb: int = 2048
    appsuite_version: str = "8"
    package_source: str = "preinstalled"  # or "repository": OX's apt repository
    repository_url: str = ""
    repository_user: str = ""  # its password is secrets.ox_repository_password
    uid: int = 2001  # open-xchange's, as on the filestore
    gid: int = 2001
    document_converters: bool = False  # the converter client, through the node's HAProxy


class OXMiddlewareGroup(pulumi.ComponentResource):
    nodes: dict[str, Host]
    backends: list[tuple[str, pulumi.Input[str], str]]  # (host, address, jkroute) behind the frontends
    admin_host: Host  # where the registration runs: the provisioning node if there is one
    users: dict[str, pulumi.Resource]  # each node's open-xchange user step (the filestore needs it)
    ready: list[pulumi.Resource]  # the waypoint after every node's configure step
    configured: dict[str, pulumi.Resource]  # node -> its configure step
    restart_digests: dict[str, pulumi.Output[str]]  # node -> digest of what OX reads only at start
    node_secrets: dict[str, pulumi.Input[str]]  # what a node's steps read on stdin

    def __init__(self, name: str, mw: OXMiddlewareGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:mw:OXMiddlewareGroup", name, None, opts)
        configdb, secrets = mw.configdb, mw.secrets
        self.nodes = {n.host.name: n.host for n in mw.nodes}
        first = mw.nodes[0].host
        provisioning = [n.host for n in mw.nodes if n.role == "provisioning"]
        self.admin_host = provisioning[0] if provisioning else first
        self.backends = [(n.host.name, n.host.address, n.jkroute) for n in mw.nodes if n.role == "backend"]
        group_password = appsuite_before(mw.appsuite_version, (7, 10, 2))

        step = phase_steps(name, self)

        ids = {"uid": mw.uid, "gid": mw.gid}
        converters = mw.document_converters
        packages = OX_PACKAGES + (["open-xchange-sessionstorage-hazelcast"] if len(mw.nodes) > 1 else []) \
            + (CLIENT_PACKAGES if converters else [])
        repo = {"OX_REPOSITORY_PASSWORD": secrets.ox_repository_password} if mw.package_source == "repository" else {}
        prepared, self.users = {}, {}
        for n in mw.nodes:
            host = n.host
            user = self.users[host.name] = step(host, "ox-user", "ox-user.sh.j2", values=ids)
            prepared[host.name] = step(host, "packages", "mw/ox-packages.sh.j2", secrets=repo, depends_on=[user],
                                    values={"source": mw.package_source, "packages": packages,
                                            "repository_url": mw.repository_url,
                                            "repository_host": _url_host(mw.repository_url),
                                            "repository_user": mw.repository_user})

        endpoints = {"write_host": configdb.write_host, "write_port": configdb.write_port,
                     "db_user": OX_DB_USER, "db_name": CONFIGDB_NAME}
        configdb_ready = step(first, "initconfigdb", "mw/initconfigdb.sh.j2", values=endpoints,
                              secrets={"CONFIGDB_PASSWORD": secrets.configdb_password},
                              depends_on=[prepared[first.name], *mw.depends_on])

        addresses = [h.address for h in self.nodes.values()]
        hazelcast = pulumi.Output.all(*addresses).apply(lambda members: render(
            "ox/hazelcast.properties.j2", cluster_name=mw.cluster_name, members=members, interfaces=members))
        node_secrets = {"CONFIGDB_PASSWORD": secrets.configdb_password,
                        "OX_ADMIN_MASTER_PASSWORD": secrets.ox_admin_master_password}
        if group_password:
            node_secrets["HAZELCAST_GROUP_PASSWORD"] = secrets.hazelcast_group_password
        self.node_secrets = node_secrets
        self.configured, self.restart_digests = {}, {}
        for n in mw.nodes:
            values = {**endpoints, "read_host": configdb.read_host, "read_port": configdb.read_port,
                      "server_name": mw.server_name, "cluster_name": mw.cluster_name, "jkroute": n.jkroute,
                      "servermemory": mw.servermemory_mb, "hazelcast_group_password": group_password,
                      "replication_monitor": str(configdb.replication_monitor).lower(),
                      "converter_url": CONVERTER_URL if converters else ""}
            self.configured[n.host.name] = step(n.host, "configure", "mw/ox-configure.sh.j2",
                                                secrets=node_secrets, depends_on=[prepared[n.host.name], configdb_ready],
                                                values={**values, "hazelcast": hazelcast})
            self.restart_digests[n.host.name] = restart_digest(values, multi_node=len(mw.nodes) > 1)
        self.ready = [waypoint(f"{name}-ready", first, "every middleware node's configure step",
                               list(self.configured.values()), parent=self)]
        self.configdb_write_host = pulumi.Output.all(configdb.write_host, configdb.write_port).apply(
            lambda hp: f"{hp[0]}:{hp[1]}")
        self.backend_routes = {h: r for h, _, r in self.backends}
        self.jkroutes = {n.host.name: n.jkroute for n in mw.nodes}
        self.drained = [n.host.name for n in mw.nodes if n.drained]
        self.register_outputs({"backends": self.backend_routes, "configdbWriteHost": self.configdb_write_host,
                               "drained": self.drained})


def restart_digest(values: dict, multi_node: bool) -> pulumi.Output[str]:
    """The digest of what a node's configure step writes that OX reads only at start: its values
    without the Hazelcast member list, whether it joins others at all, and the script itself."""
    script = verbatim("scripts/mw/ox-configure.sh.j2")
    return pulumi.Output.all(**values).apply(lambda v: sha256(
        json.dumps({**v, "multi_node": multi_node}, sort_keys=True, default=str) + script))


def _url_host(url: str | None) -> str:
    if not url:
        return ""
    return url.split("://", 1)[-1].split("/", 1)[0]

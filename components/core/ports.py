"""The estate's port table: which port of which role is open to whom. One table, two renderers.

- AWS (`aws_hosts.py`): one security group per role (and `admin` on every instance); each row
  is an ingress rule, with the source role's security group as the peer.
- Static hosts (`firewall.py`): each host's nftables ruleset holds the rows for its roles, with
  the addresses of the source role's hosts as the peer set.

What listens where, and why a port is absent (checked against the templates):

| port | listener | peers |
|---|---|---|
| 3306 | MariaDB on every DB host | OX nodes (HAProxy, or direct to a GTID pair or standalone), other stacks' OX nodes (`database.clients`), other DB hosts (GTID replication; Galera's own peers) |
| 4444, 4567 (tcp+udp), 4568 | Galera SST, group communication, IST | Galera nodes |
| 9200 | clustercheck on every Galera node (says which node is the writer) | HAProxy on the OX nodes (this stack's, and `database.clients`); the other Galera nodes (each asks its peers' /status before it claims the writer role) |
| 5701 | Hazelcast on every OX node | the other OX nodes |
| 8009 | OX's HTTP connector | Apache: the web hosts, or in colocated mode the backend OX hosts themselves (they are web hosts then, `EstateConfig.roles_of`) |
| 8008 | OX's document converter (`documentConverter.nodes`) | Apache: the web hosts (`balancer://oxcluster_docs`; the middleware reaches it only through Apache) |
| 2049 | NFSv4 (nfs-kernel-server or nfs-ganesha; v4 only, so no rpcbind or mountd) | OX nodes |
| 80, 443 | Apache | anyone |
| 8088 (`frontend.ADMIN_PORT`) | Apache's admin listener: SOAP and balancer-manager | `frontend.adminNetworks` |
| VRRP (IP protocol 112, no port) | keepalived, for a floating address (`components/core/floating.py`) | the same role's hosts: the GTID masters, the frontends |
| 22 | sshd | the admin networks (AWS: `aws.adminCidr`; static: `firewall.sshFrom`, the bastion, and the firewall refuses a ruleset that would shut out the deploying side) |

Never open to another host, so never in the table: HAProxy's Galera listeners (a read and a write
port per cluster: 3306/3307 for `galera`, config.DatabaseSpec.proxy_ports) and 8008 (the converter
listener) on OX nodes (bound to 127.0.0.1), OX's RMI admin port 1099 (localhost; the admin tools run on the node itself).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from ..web.frontend import ADMIN_PORT
from .config import Role

# Sources (and, for ADMIN, a destination) besides the roles.
ANYWHERE = "0.0.0.0/0"
ADMIN = "admin"  # as a destination: every host; as a source: the networks that administer the estate
# frontend.adminNetworks (the networks that may reach SOAP and balancer-manager), for a port that
# only they may reach. Empty: nobody.
ADMIN_NETWORKS = "adminNetworks"
# database.clients: other stacks' middleware networks, for a database stack that serves them
# (components/core/stackref.py). Unset: the rows are not there at all.
DB_CLIENTS = "dbClients"

SSH_PORT = 22
VRRP = "vrrp"
VRRP_PROTOCOL = 112  # IANA; AWS security groups take it by number  # the table's SSH row; static hosts open `ssh.port` instead where it differs


class PortRule(NamedTuple):
    to: str  # a Role, or ADMIN (every host)
    first: int
    last: int
    proto: Literal["tcp", "udp", "vrrp"]  # vrrp: IP protocol 112, which has no ports (first = last = 0)
    source: str  # a Role, ADMIN, ADMIN_NETWORKS or ANYWHERE
    why: str

    @property
    def key(self) -> str:
        """A short name for the row, e.g. `db-tcp3306-from-mw` (AWS rule names, nftables comments)."""
        ports = "" if self.proto == VRRP else str(self.first)
        return f"{self.to}-{self.proto}{ports}-from-{self.source}"


PORT_RULES: list[PortRule] = [
    PortRule(Role.DB, 3306, 3306, "tcp", Role.MW, "configdb and userdbs from OX (local HAProxy)"),
    PortRule(Role.DB, 3306, 3306, "tcp", Role.DB, "GTID replication between DB servers"),
    PortRule(Role.DB, 4444, 4444, "tcp", Role.DB, "Galera state snapshot transfer"),
    PortRule(Role.DB, 4567, 4567, "tcp", Role.DB, "Galera group communication"),
    PortRule(Role.DB, 4567, 4567, "udp", Role.DB, "Galera group communication"),
    PortRule(Role.DB, 4568, 4568, "tcp", Role.DB, "Galera incremental state transfer"),
    PortRule(Role.DB, 9200, 9200, "tcp", Role.MW, "clustercheck, polled by HAProxy on OX nodes"),
    PortRule(Role.DB, 3306, 3306, "tcp", DB_CLIENTS, "configdb and userdbs from other stacks' OX nodes"),
    PortRule(Role.DB, 9200, 9200, "tcp", DB_CLIENTS, "clustercheck, polled by other stacks' HAProxy"),
    # Each clustercheck asks its peers' /status before it claims the writer role (found in the lab:
    # without this row HAProxy never saw a writer).
    PortRule(Role.DB, 9200, 9200, "tcp", Role.DB, "clustercheck peers: the writer decision"),
    PortRule(Role.MW, 5701, 5701, "tcp", Role.MW, "Hazelcast cluster"),
    PortRule(Role.MW, 8009, 8009, "tcp", Role.WEB, "Apache balancer to OX"),
    PortRule(Role.DC, 8008, 8008, "tcp", Role.WEB, "Apache balancer to the document converters"),
    # keepalived's adverts between the peers of a floating address (unicast, so only from them).
    PortRule(Role.DB, 0, 0, VRRP, Role.DB, "VRRP adverts between the GTID masters (floating write address)"),
    PortRule(Role.WEB, 0, 0, VRRP, Role.WEB, "VRRP adverts between the frontends (floating client address)"),
    PortRule(Role.NFS, 2049, 2049, "tcp", Role.MW, "NFSv4 filestore mounts"),
    PortRule(Role.WEB, 80, 80, "tcp", ANYWHERE, "HTTP from clients"),
    PortRule(Role.WEB, 443, 443, "tcp", ANYWHERE, "HTTPS from clients"),
    # Further listeners for the admin networks only go here too, with ADMIN_NETWORKS as source.
    PortRule(Role.WEB, ADMIN_PORT, ADMIN_PORT, "tcp", ADMIN_NETWORKS, "Apache admin listener: SOAP and balancer-manager"),
    # On static hosts the admin networks are firewall.sshFrom and the bastion (the text is the AWS
    # rule's description, kept as it was so no deployed rule changes).
    PortRule(ADMIN, SSH_PORT, SSH_PORT, "tcp", ADMIN, "SSH for deployment, from aws.adminCidr only"),
]

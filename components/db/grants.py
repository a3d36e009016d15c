"""The database user OX connects as: one place for its name and privileges."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pulumi

from ..core.hosts import Host
from ..core.remote import run_script
from ..core.secrets import native_hash

OX_DB_USER = "openexchange"
# oxpedia "Creating Open-Xchange user" (grep GRANT /opt/open-xchange/sbin/initconfigdb).
OX_DB_PRIVILEGES = ("CREATE, LOCK TABLES, REFERENCES, INDEX, DROP, DELETE, ALTER, SELECT, UPDATE, INSERT, "
                    "CREATE TEMPORARY TABLES, SHOW VIEW, SHOW DATABASES")


def client_hosts(networks: Sequence[str]) -> list[str]:
    """database.clients as MariaDB account hosts: a network as `address/netmask` (MariaDB's form
    for a network, `'openexchange'@'10.0.1.0/255.255.255.0'`), a /32 as its address."""
    hosts = []
    for network in map(ipaddress.IPv4Network, networks):
        hosts.append(str(network.network_address) if network.prefixlen == 32
                     else f"{network.network_address}/{network.netmask}")
    return hosts


def grant_openexchange(name: str, write_instance: Host, clients: Sequence[pulumi.Input[str]],
                       password: pulumi.Output[str], parent: pulumi.Resource,
                       depends_on: Sequence[pulumi.Resource]) -> pulumi.Resource:
    """`<name>-ox-grants` on a write instance, for each middleware address (or client network, as
    `client_hosts` writes it) in `clients`."""
    return run_script(f"{name}-ox-grants", write_instance, "db/ox-grants.sh.j2", parent=parent,
                      values={"user": OX_DB_USER, "privileges": OX_DB_PRIVILEGES, "clients": list(clients)},
                      secrets={"CONFIGDB_HASH": native_hash(password)}, depends_on=depends_on)

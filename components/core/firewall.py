"""HostFirewall: nftables on static hosts, from the port table that makes AWS's security groups.

Creates, per host, `<name>-<host>-nftables`: the table `inet ox_estate` (policy drop on input;
loopback, established/related, ICMP, SSH from the admin networks, and the port table's rows for
this host's roles, each from its source role's hosts only), loaded with `nft -f` in one
transaction and only when it differs from what is loaded. The step refuses a ruleset that would
not admit its own SSH connection (the deploying side), so a change can never lock the deployer
out. The ruleset is persisted for boot; the step's undo removes the table again.

Ordering: every other step on every host waits for all the firewall steps (`HostFirewall.hosts`),
through `<name>-ready` (a waypoint on the first host: remote.waypoint), which waits for them all.
Peers are admitted by role, so nothing the estate needs is cut, and a fresh host is closed before
any service listens; waiting for *all* hosts' firewalls, not just its own, matters when a host is
added: its peers must admit it before its first step talks to them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pulumi

from .config import Role
from .hosts import Host
from .ports import ADMIN, ADMIN_NETWORKS, ANYWHERE, DB_CLIENTS, PORT_RULES, SSH_PORT, PortRule
from .remote import run_script, waypoint
from .render import render

TABLE = "inet ox_estate"


@dataclass(frozen=True)
class HostFirewallArgs:
    hosts: dict[str, Host]  # every estate host: each one's peers are found by role
    ssh_port: int = 22
    ssh_from: list[str] = dataclasses.field(default_factory=list)  # CIDRs that may SSH to every host
    bastion: str | None = None  # its address (or DNS name) joins the admin networks
    admin_networks: list[str] = dataclasses.field(default_factory=list)  # frontend.adminNetworks
    db_clients: list[str] = dataclasses.field(default_factory=list)  # database.clients


def host_rules(roles: Iterable[Role], ssh_port: int = SSH_PORT) -> list[PortRule]:
    """The table's rows for a host in `roles` (every host gets the ADMIN rows), with the SSH row
    on the port sshd listens on."""
    roles = set(roles)
    rows = [r for r in PORT_RULES if r.to == ADMIN or r.to in roles]
    return [r._replace(first=ssh_port, last=ssh_port) if (r.to, r.first) == (ADMIN, SSH_PORT) else r for r in rows]


def _bastion_address(bastion: str | None) -> str | None:
    try:
        return str(ipaddress.IPv4Address(bastion)) if bastion else None
    except ValueError:
        return None  # a DNS name: the step resolves it on the host


def admin_cidrs(ssh_from: Iterable[str], bastion: str | None) -> list[str]:
    """The admin networks of a static estate: firewall.sshFrom and the bastion's address."""
    cidrs = [str(ipaddress.IPv4Network(c)) for c in ssh_from]
    address = _bastion_address(bastion)
    if address:
        cidrs.append(f"{address}/32")
    return list(dict.fromkeys(cidrs))


def ruleset_values(host: str, roles: Iterable[Role], addresses: Mapping[str, str],
                   roles_by_host: Mapping[str, Iterable[Role]], ssh_port: int, admin: list[str],
                   admin_networks: list[str], db_clients: list[str] = ()) -> dict:
    """What `files/ox-estate.nft.j2` renders for `host`: the peer sets and the rules.

    addresses, roles_by_host: every estate host's address and roles (peers are the hosts of a
    row's source role). A row whose source has no hosts admits nobody and is left out."""
    def hosts_in(role: str) -> list[str]:
        found = {addresses[h] for h, rs in roles_by_host.items() if role in set(rs)}
        return sorted(found, key=ipaddress.IPv4Address)

    sets: dict[str, list[str]] = {}
    rules, closed = [], []
    for row in host_rules(roles, ssh_port):
        if row.source == ANYWHERE:
            peer_set, elements = None, None
        elif row.source == ADMIN:
            peer_set, elements = "from_admin", admin
        elif row.source == ADMIN_NETWORKS:
            peer_set, elements = "from_admin_networks", admin_networks
        elif row.source == DB_CLIENTS:
            if not db_clients:  # no other stack uses these databases: the rows do not apply
                continue
            peer_set, elements = "from_db_clients", list(db_clients)
        else:
            peer_set, elements = f"from_{row.source}", hosts_in(row.source)
        # A source with no hosts admits nobody: the row is left out. The admin set stays, even
        # empty: the step adds a bastion known only by name to it.
        if peer_set and not elements and row.source != ADMIN:
            closed.append(row.key)
            continue
        if peer_set:
            sets[peer_set] = list(elements)
        ports = str(row.first) if row.first == row.last else f"{row.first}-{row.last}"
        rules.append({"key": row.key, "proto": row.proto, "ports": ports, "set": peer_set})
    return {"host": host, "roles": sorted(roles), "sets": sets, "rules": rules, "closed": closed}


class HostFirewall(pulumi.ComponentResource):
    """`hosts`: the same hosts, whose steps wait for every host's firewall step."""

    hosts: dict[str, Host]

    def __init__(self, name: str, args: HostFirewallArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:hosts:HostFirewall", name, None, opts)
        admin = admin_cidrs(args.ssh_from, args.bastion)
        bastion_name = args.bastion if args.bastion and not _bastion_address(args.bastion) else ""
        roles_by_host = {n: sorted(h.roles) for n, h in args.hosts.items()}
        addresses = pulumi.Output.all(**{n: h.address for n, h in args.hosts.items()})

        steps = []
        for h in args.hosts.values():
            ruleset = addresses.apply(lambda a, h=h: render("files/ox-estate.nft.j2", **ruleset_values(
                h.name, h.roles, a, roles_by_host, args.ssh_port, admin, args.admin_networks, args.db_clients)))
            values = {"ruleset": ruleset, "admin": admin, "ssh_port": args.ssh_port, "bastion_name": bastion_name,
                      "unit": render("files/ox-estate-firewall.service.j2")}
            steps.append(run_script(f"{name}-{h.name}-nftables", h, "firewall.sh.j2", parent=self, values=values,
                                    delete_template="firewall-remove.sh.j2"))

        first = next(iter(args.hosts.values()))
        ready = waypoint(f"{name}-ready", first, "every host's firewall", steps, parent=self)
        self.hosts = {n: dataclasses.replace(h, ready=(*h.ready, ready)) for n, h in args.hosts.items()}
        self.register_outputs({})

"""FloatingAddress: one address that keepalived moves between peer hosts (oxpedia's HA notes: "it
is sufficient to take over the IP address on the other"), for the GTID master-master pair's
writes and for the Apache frontends' clients.

Creates:
- `<name>-vrrp-password`: the VRRP PASS authentication (8 characters, VRRPv2's limit), a
  pulumi_random secret that reaches each host only on stdin and lands in a 0600 file;
- `<name>-<host>-keepalived` on every peer: keepalived with one VRRP instance (unicast to the
  other peers, state BACKUP and nopreempt everywhere, so a returning node never takes the address
  back), the check script that decides whether this host may hold the address, and the service
  (`ox-keepalived`: a systemd unit, or an init script where systemd is not PID 1), started or
  reloaded when something changed; its undo stops keepalived and removes what it wrote;
- `<name>-<host>-answers` on every peer, after all of them: waits until the service (MariaDB,
  Apache) answers through the floating address from this host, and prints one JSON line saying whether this host holds it.

The check kinds:
- `gtid`: the holder keeps the address while its local server answers and is writable. A host
  that does not hold it may take it only when its own server is writable AND either its peer's
  MariaDB port refuses the connection (the peer host answers, its server is dead) or the peer's
  port answers and this host's replication from it runs (the peer gave the address up, e.g. its
  keepalived stopped or its server went read-only). A cut link (the peer's port times out) never
  lets a backup take the address, so the two masters never hold it at once; the price is that a
  whole dead host (no refusal either) also leaves the address where it was, for an operator.
- `apache`: the local Apache answers HTTP on 127.0.0.1:80 (any status).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_random as random

from .hosts import Host
from .parse import parse_json_line
from .remote import run_script
from .render import render

# Next to the configuration: each host's check names its own peers. (Not under /usr/local: a host
# may share /usr, as the lab's do.)
CHECK_DIR = "/etc/keepalived"
CHECK = f"{CHECK_DIR}/ox-vip-check"
SERVICE = "ox-keepalived"
CONFIG = "/etc/keepalived/ox-estate.conf"
# VRRP timing: adverts every second; a backup declares the master dead after 3 missed adverts
# plus skew. The check runs every second, so a failed check moves the address in ~1-2 s.
ADVERT_INT = 1
CHECK_INTERVAL = 1
CHECK_TIMEOUT = 2
# The connect timeout of the gtid check's peer probe: a cut link must fail the check well within
# the backup's master-down interval (3 x ADVERT_INT + skew).
PEER_TIMEOUT = 1
# The service behind the address, by check kind: the answers step connects to it through the address.
SERVICE_PORTS = {"gtid": 3306, "apache": 80}
PASSWORD_LENGTH = 8  # VRRPv2 PASS authentication carries at most 8 characters


@dataclass(frozen=True)
class FloatingAddressArgs:
    address: str  # "a.b.c.d/prefix" (config: floatingAddress)
    router_id: int  # the VRRP virtual router id, 1-255
    hosts: list[Host]  # the peers, in priority order: the first holds the address at first
    check: Literal["gtid", "apache"]
    depends_on: list[pulumi.Resource] = dataclasses.field(default_factory=list)  # the service it fronts, ready


def priority(index: int) -> int:
    """The VRRP priority of the index-th peer: 100, 90, 80 ... (never below 10)."""
    return max(100 - 10 * index, 10)


def keepalived_config(host: str, self_address: str, peers: list[str], args: FloatingAddressArgs,
                      index: int) -> str:
    """keepalived.conf for one peer. It keeps two placeholders the step fills on the host: the
    interface that holds the host's address, and the VRRP password (a secret, from stdin)."""
    return render("files/keepalived.conf.j2", host=host, self_address=self_address, peers=peers,
                  address=args.address, router_id=args.router_id, priority=priority(index),
                  advert_int=ADVERT_INT, check=CHECK, check_interval=CHECK_INTERVAL,
                  check_timeout=CHECK_TIMEOUT, instance=f"ox_vip_{args.router_id}")


def check_script(kind: str, address: str, peers: list[str]) -> str:
    return render(f"files/vip-check-{kind}.sh.j2", address=str(ipaddress.IPv4Interface(address).ip),
                  peers=peers, peer_timeout=PEER_TIMEOUT)


def _files(host: str, self_address: str, peers: list[str], args: FloatingAddressArgs, index: int) -> dict[str, str]:
    """What the keepalived step writes on one peer; `peers` are the other peers' addresses."""
    return {
        "config": keepalived_config(host, self_address, peers, args, index),
        "check_text": check_script(args.check, args.address, peers),
        "init_text": render("files/ox-keepalived.init.j2", config=CONFIG),
        "unit_text": render("files/ox-keepalived.service.j2", config=CONFIG),
    }


class FloatingAddress(pulumi.ComponentResource):
    address: str  # without the prefix: what clients and OX use
    holders: pulumi.Output[list]  # per peer: {"host", "address", "holds"} after the deploy
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: FloatingAddressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:net:FloatingAddress", name, None, opts)
        if len(args.hosts) < 2:
            raise ValueError(f"{name}: a floating address needs two or more hosts")
        self.address = str(ipaddress.IPv4Interface(args.address).ip)
        prefix = ipaddress.IPv4Interface(args.address).network.prefixlen
        password = random.RandomPassword(f"{name}-vrrp-password", length=PASSWORD_LENGTH, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        addresses = pulumi.Output.all(*[h.address for h in args.hosts])

        steps = []
        for i, h in enumerate(args.hosts):
            files = addresses.apply(lambda a, i=i, h=h: _files(h.name, a[i], a[:i] + a[i + 1:], args, i))
            steps.append(run_script(
                f"{name}-{h.name}-keepalived", h, "net/keepalived.sh.j2", parent=self,
                values={"files": files, "self_address": h.address, "prefix": prefix, "config_path": CONFIG,
                        "check": CHECK, "check_dir": CHECK_DIR, "service": SERVICE},
                secrets={"VRRP_PASSWORD": password.result}, depends_on=args.depends_on,
                delete_template="net/keepalived-remove.sh.j2"))
        answers = {h.name: run_script(f"{name}-{h.name}-answers", h, "net/vip-answers.sh.j2", parent=self,
                                      values={"address": self.address, "port": SERVICE_PORTS[args.check]},
                                      depends_on=steps)
                   for h in args.hosts}
        self.holders = pulumi.Output.all(*[
            a.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-answers", out)) for n, a in answers.items()
        ])
        self.ready = list(answers.values())
        self.register_outputs({"address": self.address, "holders": self.holders})

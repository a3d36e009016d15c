"""Host providers: where the estate's machines come from.

Two providers yield the same `Host` objects, so components never know which one made them:

- `static`: existing machines, reached over SSH (optionally through a bastion).
- `aws`: a VPC (or a given one), subnets, one security group per role with rules limited to
  the peers that need each port, a key pair, and Debian 12 instances (AMI looked up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from .config import EstateConfig, ProviderKind, Role


@dataclass(frozen=True)
class Host:
    name: str
    address: pulumi.Input[str]  # private address: what peers use
    connection: remote.ConnectionArgs | None  # None: another stack's node (remote_node)
    roles: frozenset[Role]
    ready: tuple[pulumi.Resource, ...] = field(default=())  # what must exist before a step runs here
    # The stack's `converge` token: rendered into this host's probe-and-repair steps (remote.py).
    converge: str = ""
    # Steps need root. An SSH user other than root (Debian's cloud images log in as "admin", their
    # root login disabled) runs them through `sudo -n`: passwordless sudo, or a clear failure.
    sudo: bool = False


def remote_node(name: str, address: str) -> Host:
    """A database node of another stack (components/core/stackref.py): an address this stack's
    HAProxy reaches, never a host it runs a step on (no connection, no roles)."""
    return Host(name=name, address=address, connection=None, roles=frozenset())


def provision_hosts(cfg: EstateConfig, ssh_key: pulumi.Output[str], parent: pulumi.Resource) -> dict[str, Host]:
    """The estate's hosts by name, from the configured provider."""
    if cfg.provider == ProviderKind.STATIC:
        return static_hosts(cfg, ssh_key)
    from .aws_hosts import AwsHosts  # pulumi_aws is large; import it only where it is used

    return AwsHosts("hosts", cfg, ssh_key, pulumi.ResourceOptions(parent=parent)).hosts


def static_hosts(cfg: EstateConfig, ssh_key: pulumi.Output[str]) -> dict[str, Host]:
    return {
        h.name: Host(
            name=h.name,
            address=h.address,
            connection=connection(cfg, h.address, ssh_key),
            roles=frozenset(cfg.roles_of(h.name)),
            converge=cfg.converge or "",
            sudo=cfg.ssh.user != "root",
        )
        for h in cfg.hosts
    }


def connection(cfg: EstateConfig, address: pulumi.Input[str], ssh_key: pulumi.Output[str]) -> remote.ConnectionArgs:
    bastion = cfg.ssh.bastion
    proxy = (
        remote.ProxyConnectionArgs(host=bastion.address, port=bastion.port, user=bastion.user, private_key=ssh_key)
        if bastion
        else None
    )
    return remote.ConnectionArgs(
        host=address,
        port=cfg.ssh.port,
        user=cfg.ssh.user,
        private_key=ssh_key,
        proxy=proxy,
        # New instances take a while to start sshd; keep retrying rather than fail the step.
        dial_error_limit=30,
    )

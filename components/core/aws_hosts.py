"""AwsHosts: the estate's machines as Debian 12 EC2 instances.

Creates (children of the component): a VPC with an internet gateway and public subnets (or uses
a given VPC and subnets), one security group per role (db, mw, web, nfs, dc, admin) whose ingress
rules admit only the peers that need each port (`SG_RULES`), a key pair from the stack's SSH
key, and one instance per configured host with the security groups of its roles.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .config import AwsSettings, EstateConfig, Role
from .hosts import Host, connection
from .ports import ADMIN, ADMIN_NETWORKS, ANYWHERE, DB_CLIENTS, PORT_RULES, VRRP, VRRP_PROTOCOL
from .sshkeys import public_key_of

# The port table is shared with the static hosts' firewall (components/core/ports.py).
SG_RULES = PORT_RULES

DEBIAN_OWNER = "136693071363"  # Debian's official AMI publisher account


class AwsHosts(pulumi.ComponentResource):
    hosts: dict[str, Host]

    def __init__(self, name: str, cfg: EstateConfig, ssh_key: pulumi.Output[str], opts: pulumi.ResourceOptions):
        super().__init__("ox-estate:hosts:AwsHosts", name, None, opts)
        assert cfg.aws is not None  # config validation guarantees it
        aws_cfg = cfg.aws
        child = pulumi.ResourceOptions(parent=self)

        vpc_id, subnet_ids = self._network(name, aws_cfg, child)
        networks = {ADMIN_NETWORKS: [str(n) for n in cfg.frontend.admin_networks] if cfg.frontend else [],
                    DB_CLIENTS: [str(n) for n in cfg.database.clients] if cfg.database else []}
        groups = self._security_groups(name, aws_cfg, networks, vpc_id, child)
        key_pair = aws.ec2.KeyPair(
            f"{name}-key",
            public_key=public_key_of(cfg.secrets.ssh_private_key.get_secret_value()),
            opts=child,
        )
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[DEBIAN_OWNER],
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=["debian-12-amd64-*"]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )

        self.hosts = {}
        for i, spec in enumerate(cfg.hosts):
            roles = frozenset(cfg.roles_of(spec.name))
            instance = aws.ec2.Instance(
                f"{name}-{spec.name}",
                ami=ami.id,
                instance_type=spec.instance_type or _instance_type(aws_cfg, _main_role(roles)),
                subnet_id=subnet_ids[i % len(subnet_ids)],
                private_ip=spec.address,
                vpc_security_group_ids=[groups[ADMIN].id] + [groups[r].id for r in sorted(roles)],
                key_name=key_pair.key_name,
                associate_public_ip_address=cfg.ssh.bastion is None,
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(volume_size=aws_cfg.root_volume_gb, encrypted=True),
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required"),
                tags={"Name": spec.name, "ox-estate:roles": ",".join(sorted(roles))},
                opts=child,
            )
            # Through a bastion we reach the private address; otherwise the public one.
            ssh_address = instance.private_ip if cfg.ssh.bastion else instance.public_ip
            self.hosts[spec.name] = Host(
                name=spec.name,
                address=instance.private_ip,
                connection=connection(cfg, ssh_address, ssh_key),
                roles=roles,
                ready=(instance,),
                converge=cfg.converge or "",
                sudo=cfg.ssh.user != "root",
            )

        self.register_outputs({"privateAddresses": {n: h.address for n, h in self.hosts.items()}})

    def _network(self, name: str, cfg: AwsSettings, child: pulumi.ResourceOptions):
        if cfg.vpc_id:
            return cfg.vpc_id, cfg.subnet_ids
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=str(cfg.vpc_cidr), enable_dns_hostnames=True, opts=child)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        routes = aws.ec2.RouteTable(
            f"{name}-routes",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE, gateway_id=gateway.id)],
            opts=child,
        )
        zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))
        subnet_ids = []
        for i, cidr in enumerate(cfg.subnet_cidrs):
            subnet = aws.ec2.Subnet(
                f"{name}-subnet-{i}",
                vpc_id=vpc.id,
                cidr_block=str(cidr),
                availability_zone=zones.names.apply(lambda names, i=i: names[i % len(names)]),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-subnet-{i}-routes", subnet_id=subnet.id, route_table_id=routes.id, opts=child)
            subnet_ids.append(subnet.id)
        return vpc.id, subnet_ids

    def _security_groups(self, name: str, cfg: AwsSettings, networks: dict[str, list[str]], vpc_id,
                         child: pulumi.ResourceOptions):
        groups = {
            group: aws.ec2.SecurityGroup(f"{name}-sg-{group}", vpc_id=vpc_id, description=f"ox-estate {group} hosts", opts=child)
            for group in [*Role, ADMIN]
        }
        for group, sg in groups.items():
            aws.vpc.SecurityGroupEgressRule(f"{name}-sg-{group}-egress", security_group_id=sg.id,
                                            ip_protocol="-1", cidr_ipv4=ANYWHERE, opts=child)
        for rule in SG_RULES:
            for suffix, peer in _peers(rule.source, cfg, networks, groups):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-sg-{rule.key}{suffix}",
                    security_group_id=groups[rule.to].id,
                    # VRRP is an IP protocol without ports: by number, and no port range.
                    from_port=None if rule.proto == VRRP else rule.first,
                    to_port=None if rule.proto == VRRP else rule.last,
                    ip_protocol=str(VRRP_PROTOCOL) if rule.proto == VRRP else rule.proto,
                    description=rule.why,
                    opts=child,
                    **peer,
                )
        return groups


def _peers(source: str, cfg: AwsSettings, networks: dict[str, list[str]], groups: dict) -> list[tuple[str, dict]]:
    """(rule name suffix, peer arguments) for a table row's source: a CIDR or a security group.
    networks: the configured networks of ADMIN_NETWORKS and DB_CLIENTS."""
    if source == ANYWHERE:
        return [("", {"cidr_ipv4": ANYWHERE})]
    if source == ADMIN:
        return [("", {"cidr_ipv4": str(cfg.admin_cidr)})]
    if source in networks:  # one rule per configured network; none: nobody
        return [(f"-{i}", {"cidr_ipv4": cidr}) for i, cidr in enumerate(networks[source])]
    return [("", {"referenced_security_group_id": groups[source].id})]


def _instance_type(cfg: AwsSettings, role: Role) -> str:
    """The configured type for a role; a role the configured map leaves out gets the default's."""
    return cfg.instance_types.get(role) or AwsSettings.model_fields["instance_types"].default_factory()[role]


def _main_role(roles: frozenset[Role]) -> Role:
    # A host in several roles is sized for the heaviest one.
    for role in (Role.MW, Role.DB, Role.DC, Role.NFS, Role.WEB):
        if role in roles:
            return role
    return Role.WEB

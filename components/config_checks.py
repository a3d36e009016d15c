"""Rules that relate fields of the stack config: host references, duplicates, roles, placements,
and sections that nothing would use. Each problem is (key path, message); config.parse reports
them all at once, before any resource exists.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import TYPE_CHECKING, Any

from .config_fields import NAMESPACE, ProviderKind, Role
from .sshkeys import public_key_of
from .versions import DB_RELEASES, appsuite_line, recommended_sql_mode, supported_releases

if TYPE_CHECKING:
    from .config import EstateConfig

Problems = list[tuple[str, str]]


def role_references(cfg: EstateConfig) -> dict[Role, list[tuple[str, str]]]:
    """Every host reference in the config, by role, as (key path, host name)."""
    refs: dict[Role, list[tuple[str, str]]] = {role: [] for role in Role}
    db = cfg.database
    if db and db.galera:
        refs[Role.DB] += [(f"database.galera.nodes[{i}]", n) for i, n in enumerate(db.galera.nodes)]
    if db and db.gtid:
        refs[Role.DB] += [(f"database.gtid.{side}.host", getattr(db.gtid, side).host) for side in ("master", "slave")]
    if db and db.standalone:
        refs[Role.DB].append(("database.standalone.host", db.standalone.host))
    if cfg.middleware:
        refs[Role.MW] += [(f"middleware.nodes[{i}].host", n.host) for i, n in enumerate(cfg.middleware.nodes)]
    if cfg.frontend:
        refs[Role.WEB] += [(f"frontend.nodes[{i}]", n) for i, n in enumerate(cfg.frontend.nodes)]
        if cfg.frontend.mode == "colocated" and cfg.middleware:
            refs[Role.WEB] += [(f"middleware.nodes[{i}].host", n.host)
                               for i, n in enumerate(cfg.middleware.nodes) if n.role == "backend"]
    if cfg.filestore and cfg.filestore.server:
        refs[Role.NFS].append(("filestore.server", cfg.filestore.server))
    if cfg.document_converter:
        refs[Role.DC] += [(f"documentConverter.nodes[{i}].host", n.host)
                          for i, n in enumerate(cfg.document_converter.nodes)]
    return refs


def duplicates(values: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The (path, value) pairs whose value appeared earlier in the list."""
    counts = Counter(v for _, v in values)
    seen: set[Any] = set()
    dups = []
    for path, v in values:
        if counts[v] > 1 and v in seen:
            dups.append((path, v))
        seen.add(v)
    return dups


def cross_checks(cfg: EstateConfig) -> Problems:
    return [*_host_checks(cfg), *_provider_checks(cfg), *_database_checks(cfg), *_middleware_checks(cfg),
            *_frontend_checks(cfg), *_filestore_checks(cfg), *_converter_checks(cfg), *_firewall_checks(cfg),
            *_floating_checks(cfg)]


def _host_checks(cfg: EstateConfig) -> Problems:
    problems: Problems = []
    names = {h.name for h in cfg.hosts}
    for path, name in duplicates([(f"hosts[{i}].name", h.name) for i, h in enumerate(cfg.hosts)]):
        problems.append((path, f"duplicate host name '{name}'"))
    addresses = [(f"hosts[{i}].address", h.address) for i, h in enumerate(cfg.hosts) if h.address]
    for path, addr in duplicates(addresses):
        problems.append((path, f"duplicate address {addr}"))
    if len(cfg.hosts) > 1:
        for path, addr in addresses:
            if ipaddress.IPv4Address(addr).is_loopback:
                problems.append((path, f"{addr} is a loopback address: the other hosts cannot reach it"))

    refs = role_references(cfg)
    for role_refs in refs.values():
        for path, name in role_refs:
            if name not in names:
                problems.append((path, f"unknown host '{name}' (not in {NAMESPACE}:hosts)"))
    # One DB server per host: two would fight over port 3306 and the datadir.
    for path, name in duplicates(refs[Role.DB]):
        problems.append((path, f"host '{name}' already holds a database server"))
    for path, name in duplicates(refs[Role.MW]):
        problems.append((path, f"host '{name}' is listed twice as a middleware node"))
    for path, name in duplicates([r for r in refs[Role.WEB] if r[0].startswith("frontend.")]):
        problems.append((path, f"host '{name}' is listed twice as a frontend"))
    for path, name in duplicates(refs[Role.DC]):
        problems.append((path, f"host '{name}' is listed twice as a document converter"))
    return problems


def _provider_checks(cfg: EstateConfig) -> Problems:
    problems: Problems = []
    if cfg.provider == ProviderKind.STATIC:
        for i, h in enumerate(cfg.hosts):
            if h.address is None:
                problems.append((f"hosts[{i}].address", f"static host '{h.name}' needs an address"))
            if h.instance_type is not None:
                problems.append((f"hosts[{i}].instanceType", "only the aws provider creates instances; "
                                                             "a static host's type is what it is"))
        if cfg.aws is not None:
            problems.append(("aws", "the static provider uses no aws settings: remove the section "
                                    "(or set provider: aws)"))
    elif cfg.aws is None:
        problems.append(("aws", "the aws provider needs an 'aws' section (at least adminCidr)"))
    else:
        aws = cfg.aws
        if aws.vpc_id and not aws.subnet_ids:
            problems.append(("aws.subnetIds", "an existing VPC (aws.vpcId) needs the ids of its subnets to use"))
        if aws.subnet_ids and not aws.vpc_id:
            problems.append(("aws.vpcId", "existing subnets (aws.subnetIds) need the VPC they belong to"))
        if aws.vpc_id and ({"vpc_cidr", "subnet_cidrs"} & aws.model_fields_set):
            problems.append(("aws.vpcId", "with an existing VPC, vpcCidr and subnetCidrs are not used: remove them"))
        if not aws.vpc_id:
            for i, subnet in enumerate(aws.subnet_cidrs):
                if not subnet.subnet_of(aws.vpc_cidr):
                    problems.append((f"aws.subnetCidrs[{i}]", f"{subnet} is not inside vpcCidr {aws.vpc_cidr}"))

    if cfg.secrets.ssh_private_key is None:
        problems.append(("sshPrivateKey", "missing SSH private key for the hosts: "
                         f"pulumi config set --secret {NAMESPACE}:sshPrivateKey < key"))
    else:
        try:
            public_key_of(cfg.secrets.ssh_private_key.get_secret_value())
        except ValueError as e:
            problems.append(("sshPrivateKey", str(e)[:200]))
    return problems


def _database_checks(cfg: EstateConfig) -> Problems:
    problems: Problems = []
    db = cfg.versions.database
    if (db.flavor, db.version) not in DB_RELEASES:
        problems.append(("versions.database.version",
                         f"unknown {db.flavor} version '{db.version}' (supported: {', '.join(supported_releases())})"))
        return problems  # the rest depends on a known release
    if cfg.database is None:
        return problems

    spec = cfg.database
    if spec.galera and spec.galera.force_bootstrap_node is not None \
            and spec.galera.force_bootstrap_node not in spec.galera.nodes:
        problems.append(("database.galera.forceBootstrapNode",
                         f"'{spec.galera.force_bootstrap_node}' is not one of database.galera.nodes "
                         f"({', '.join(spec.galera.nodes)})"))
    for path, name in [("database.configdb", spec.configdb)] + [
        (f"database.userdbs[{i}]", n) for i, n in enumerate(spec.userdbs)
    ]:
        if getattr(spec, name) is None:
            problems.append((path, f"'{name}' is named but database.{name} is not configured"))
    for path, name in duplicates([(f"database.userdbs[{i}]", n) for i, n in enumerate(spec.userdbs)]):
        problems.append((path, f"'{name}' is listed twice: OX would register the same database twice"))
    if spec.gtid and spec.gtid.master.server_id == spec.gtid.slave.server_id:
        problems.append(("database.gtid.slave.serverId",
                         f"server-id {spec.gtid.slave.server_id} is already the master's; the pair needs distinct ids"))
    if spec.gtid and spec.gtid.mode == "master-master":
        master, second = spec.gtid.domain_of(spec.gtid.master), spec.gtid.domain_of(spec.gtid.slave)
        if master == second:
            problems.append(("database.gtid.slave.gtidDomainId",
                             f"both masters would use gtid_domain_id {master}: master-master needs a distinct "
                             "domain per side (one domain breaks replication)"))

    line = appsuite_line(cfg.versions.appsuite)
    allowed = recommended_sql_mode(db.flavor, db.version, line)
    if allowed is None:
        problems.append(("versions.appsuite",
                         f"App Suite {cfg.versions.appsuite} is not supported on {db.flavor} {db.version}"))
    elif spec.tuning.sql_mode is not None:
        bad = [m for m in cfg.sql_mode.split(",") if m not in allowed]
        if bad:
            problems.append(("database.tuning.sqlMode",
                             f"{', '.join(bad)} not supported for App Suite {cfg.versions.appsuite} on "
                             f"{db.flavor} {db.version} (allowed: {','.join(allowed)})"))
    return problems


def _middleware_checks(cfg: EstateConfig) -> Problems:
    problems: Problems = []
    mw = cfg.middleware
    if not mw:
        return problems
    routes = [(f"middleware.nodes[{i}].jkroute", n.jkroute) for i, n in enumerate(mw.nodes)]
    for path, route in duplicates(routes):
        problems.append((path, f"duplicate jkroute '{route}': each node needs its own route"))
    for i, node in enumerate(mw.nodes):
        if node.drained and node.role != "backend":
            problems.append((f"middleware.nodes[{i}].drained", "only a backend node takes sessions from the "
                             "frontends: a provisioning node cannot be drained"))
    backends = [n for n in mw.nodes if n.role == "backend"]
    if backends and all(n.drained for n in backends):
        problems.append(("middleware.nodes", "every backend node is drained: new sessions would have nowhere to "
                         "go (undrain at least one)"))
    if mw.package_source == "repository":
        if not mw.repository_url:
            problems.append(("middleware.repositoryUrl", "packageSource 'repository' needs a repositoryUrl"))
        if cfg.secrets.ox_repository_password is None:
            problems.append(("oxRepositoryPassword", "packageSource 'repository' needs the repository password: "
                             f"pulumi config set --secret {NAMESPACE}:oxRepositoryPassword"))
    else:
        for key in ("repository_url", "repository_user"):
            if getattr(mw, key) is not None:
                problems.append((f"middleware.{mw.model_fields[key].alias}", "is set, but packageSource is "
                                 "'preinstalled': nothing would use it (set packageSource: repository)"))
    if cfg.database is None:
        problems.append(("middleware", "middleware needs a database section for its configdb"))
    elif cfg.database.galera:
        # Each middleware node's HAProxy listens on 127.0.0.1:3306/3307 for the Galera cluster.
        db_hosts = {name for _, name in role_references(cfg)[Role.DB]}
        for i, node in enumerate(mw.nodes):
            if node.host in db_hosts:
                problems.append((f"middleware.nodes[{i}].host",
                                 f"'{node.host}' runs a database server on port 3306, where this node's HAProxy "
                                 "(the Galera read/write split) must listen: put them on different hosts"))
    if mw.first_context and cfg.filestore is None:
        problems.append(("middleware.firstContext", "a context needs a filestore to live on: add a filestore "
                                                    "section (nothing would create this context)"))
    return problems


def _frontend_checks(cfg: EstateConfig) -> Problems:
    problems: Problems = []
    fe, mw = cfg.frontend, cfg.middleware
    if not fe:
        return problems
    backends = [n for n in mw.nodes if n.role == "backend"] if mw else []
    if not backends:
        problems.append(("frontend", "a frontend needs middleware backend nodes behind it (middleware.nodes)"))
    if fe.mode == "dedicated" and not fe.nodes:
        problems.append(("frontend.nodes", "dedicated frontends need at least one host"))
    if fe.mode == "colocated" and fe.nodes:
        problems.append(("frontend.nodes", "colocated frontends run on the middleware nodes; leave nodes empty"))
    return problems


def _filestore_checks(cfg: EstateConfig) -> Problems:
    fs = cfg.filestore
    if not fs:
        return []
    problems: Problems = []
    if (fs.server is None) == (fs.s3_uri is None):
        problems.append(("filestore", "set either server (an NFS filestore) or s3Uri (an S3 filestore), not both"))
    if cfg.middleware is None:
        problems.append(("filestore", "no middleware would use this filestore: add middleware nodes, or remove it"))
    return problems


def _converter_checks(cfg: EstateConfig) -> Problems:
    """Converter nodes sit behind the frontends' balancer://oxcluster_docs, for the middleware only."""
    dc = cfg.document_converter
    if not dc:
        return []
    problems: Problems = []
    if cfg.middleware is None:
        problems.append(("documentConverter", "converter nodes serve the middleware: add middleware nodes, "
                                              "or remove this section"))
    if cfg.frontend is None:
        problems.append(("documentConverter", "the middleware reaches the converters through the frontends' "
                                              "Apache (balancer://oxcluster_docs): add a frontend section"))
    # One route namespace: Apache picks the member by the text after JSESSIONID's first dot, and a
    # converter's session id is a JSESSIONID too, so a route may name one node only.
    routes = [(f"documentConverter.nodes[{i}].route", n.route) for i, n in enumerate(dc.nodes)]
    for path, route in duplicates(routes):
        problems.append((path, f"duplicate route '{route}': each converter node needs its own route"))
    jkroutes = {n.jkroute: i for i, n in enumerate(cfg.middleware.nodes)} if cfg.middleware else {}
    for path, route in routes:
        if route in jkroutes:
            problems.append((path, f"route '{route}' is already middleware.nodes[{jkroutes[route]}].jkroute: "
                                   "a converter needs a route of its own (e.g. DC1)"))
    mw_hosts = {n.host: i for i, n in enumerate(cfg.middleware.nodes)} if cfg.middleware else {}
    for i, node in enumerate(dc.nodes):
        if node.host in mw_hosts:
            problems.append((f"documentConverter.nodes[{i}].host",
                             f"'{node.host}' is middleware.nodes[{mw_hosts[node.host]}].host: a converter is a "
                             "node of its own (no Hazelcast, no DB access; its server.properties is its own)"))
    return problems


def _firewall_checks(cfg: EstateConfig) -> Problems:
    """The host firewall admits SSH only from firewall.sshFrom and the bastion; AWS has its own."""
    if cfg.provider == ProviderKind.AWS:
        if "firewall" in cfg.model_fields_set:
            return [("firewall", "the aws provider's security groups are the firewall there (SSH from "
                                 "aws.adminCidr); remove the firewall section")]
        return []
    if cfg.firewall.enabled and not cfg.firewall.ssh_from and cfg.ssh.bastion is None:
        return [("firewall.sshFrom", "the host firewall admits SSH only from firewall.sshFrom and the bastion: "
                                     "list the networks you deploy from (e.g. [203.0.113.0/24]), "
                                     "or set firewall.enabled: false")]
    return []


def floating_groups(cfg: EstateConfig) -> list[tuple[str, str, int, list[str]]]:
    """The floating addresses configured, as (key path, address/prefix, VRRP router id, the host
    names that share it): the GTID masters, and the frontends (dedicated nodes or colocated backends)."""
    groups = []
    db = cfg.database
    if db and db.gtid and db.gtid.floating_address:
        groups.append(("database.gtid", db.gtid.floating_address, db.gtid.vrrp_router_id,
                       [db.gtid.master.host, db.gtid.slave.host]))
    fe = cfg.frontend
    if fe and fe.floating_address:
        hosts = (list(fe.nodes) if fe.mode == "dedicated" else
                 [n.host for n in cfg.middleware.nodes if n.role == "backend"] if cfg.middleware else [])
        groups.append(("frontend", fe.floating_address, fe.vrrp_router_id, hosts))
    return groups


def _floating_checks(cfg: EstateConfig) -> Problems:
    """keepalived moves an address between hosts on one layer-2 network: each address lies in its
    peers' network, belongs to no host, and each group has its own address and VRRP router id."""
    problems: Problems = []
    db = cfg.database
    if db and db.gtid and db.gtid.floating_address and db.gtid.mode != "master-master":
        problems.append(("database.gtid.floatingAddress", "a floating write address needs mode master-master "
                         "(a slave is read-only: moving the address to it would stop every write)"))
    groups = floating_groups(cfg)
    if groups and cfg.provider == ProviderKind.AWS:
        for path, *_ in groups:
            problems.append((f"{path}.floatingAddress", "keepalived moves an address by ARP on a shared network, "
                             "which an AWS VPC does not honour: use a load balancer there, or remove the key"))
        return problems
    addresses = {h.name: h.address for h in cfg.hosts if h.address}
    by_address = {a: n for n, a in addresses.items()}
    for path, floating, _, hosts in groups:
        key = f"{path}.floatingAddress"
        interface = ipaddress.IPv4Interface(floating)
        if len(hosts) < 2:
            problems.append((key, f"a floating address moves between two or more hosts; {path} has {len(hosts)}"))
        owner = by_address.get(str(interface.ip))
        if owner:
            problems.append((key, f"{interface.ip} is host '{owner}'s own address: a floating address is one "
                                  "no host has"))
        for name in hosts:
            if name in addresses and ipaddress.IPv4Address(addresses[name]) not in interface.network:
                problems.append((key, f"host '{name}' ({addresses[name]}) is not in {interface.network}: the "
                                      "address can only move between hosts on its network"))
    for (path, floating, router_id, hosts), (path2, floating2, router_id2, hosts2) in zip(groups, groups[1:]):
        if ipaddress.IPv4Interface(floating).ip == ipaddress.IPv4Interface(floating2).ip:
            problems.append((f"{path2}.floatingAddress", f"{floating2} is already {path}.floatingAddress"))
        if router_id == router_id2:
            problems.append((f"{path2}.vrrpRouterId", f"VRRP router id {router_id2} is already {path}'s: two "
                             "groups on one network with one id take each other's adverts"))
        for name in sorted(set(hosts) & set(hosts2)):
            problems.append((f"{path2}.floatingAddress", f"host '{name}' would hold both floating addresses "
                             "(one keepalived per host): put the GTID pair and the frontends on different hosts"))
    return problems

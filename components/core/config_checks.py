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
    for t in cfg.database.topologies() if cfg.database else []:
        if t.kind == "galera":
            refs[Role.DB] += [(f"{t.path}.nodes[{i}]", n) for i, n in enumerate(t.spec.nodes)]
        elif t.kind == "gtid":
            refs[Role.DB] += [(f"{t.path}.{side}.host", getattr(t.spec, side).host) for side in ("master", "slave")]
        else:
            refs[Role.DB].append((f"{t.path}.host", t.spec.host))
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
    problems += _topology_names(cfg)
    problems += _composition_checks(cfg)
    for t in spec.of_kind("galera"):
        force = t.spec.force_bootstrap_node
        if force is not None and force not in t.spec.nodes:
            problems.append((f"{t.path}.forceBootstrapNode",
                             f"'{force}' is not one of {t.path}.nodes ({', '.join(t.spec.nodes)})"))
    for t in spec.of_kind("gtid"):
        pair = t.spec
        if pair.master.server_id == pair.slave.server_id:
            problems.append((f"{t.path}.slave.serverId",
                             f"server-id {pair.slave.server_id} is already the master's; the pair needs distinct ids"))
        if pair.mode == "master-master" and pair.domain_of(pair.master) == pair.domain_of(pair.slave):
            problems.append((f"{t.path}.slave.gtidDomainId",
                             f"both masters would use gtid_domain_id {pair.domain_of(pair.master)}: master-master "
                             "needs a distinct domain per side (one domain breaks replication)"))
    problems += _proxy_port_checks(cfg)

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


# The estate's own component names (components/estate.py): a topology `<name>` becomes the
# component `<estate>-<name>`, its floating address `<estate>-<name>-vip`, its read instance
# `oxdb_<name>_read`; none of these may meet another's.
_RESERVED_NAMES = ("firewall", "baseline", "dbproxy", "dcproxy", "dc", "mw", "mwroll", "fs", "web", "registration")


def _topology_names(cfg: EstateConfig) -> Problems:
    """Names are unique across kinds, clear of the estate's own names, and every name the configdb
    and userdbs use exists."""
    problems: Problems = []
    spec = cfg.database
    topologies = spec.topologies()
    # The single keys first, so a clash is reported on the list entry that repeats their name.
    named = sorted([(f"{t.path}.name" if t.path.endswith("]") else t.path, t.name) for t in topologies],
                   key=lambda pn: pn[0].endswith(".name"))
    for path, name in duplicates(named):
        first = next(p for p, n in named if n == name)
        problems.append((path, f"database topology name '{name}' is already {first}'s: each needs its own name"))
    for path, name in named:
        word = next((r for r in _RESERVED_NAMES if name == r or name.startswith(f"{r}-")), None)
        if word:
            problems.append((path, f"'{name}' would clash with the estate's own '{word}' resources: choose "
                                   "another name"))
        elif name.endswith(("-read", "-vip")):
            problems.append((path, f"'{name}' ends like the names of another topology's read instance or "
                                   "floating address: choose another name"))
    galera_names = [(f"{t.path}.clusterName", t.spec.cluster_name) for t in spec.of_kind("galera")]
    for path, cluster in duplicates(galera_names):
        problems.append((path, f"wsrep cluster name '{cluster}' is already another Galera cluster's: a node given "
                               "the wrong peers could join it (set clusterName)"))
    known = {t.name for t in topologies}
    for path, name in [("database.configdb", spec.configdb)] + [
        (f"database.userdbs[{i}]", n) for i, n in enumerate(spec.userdbs)
    ]:
        if name in known:
            continue
        if name in ("galera", "gtid", "standalone"):
            problems.append((path, f"'{name}' is named but database.{name} is not configured"))
        else:
            problems.append((path, f"'{name}' names no database topology (configured: "
                                   f"{', '.join(sorted(known)) or 'none'})"))
    for path, name in duplicates([(f"database.userdbs[{i}]", n) for i, n in enumerate(spec.userdbs)]):
        problems.append((path, f"'{name}' is listed twice: OX would register the same database twice"))
    return problems


def _composition_checks(cfg: EstateConfig) -> Problems:
    """database.fromStacks and database.clients: what another stack's databases need of this one.
    What the referenced stacks export is checked when they are read (components/core/stackref.py)."""
    problems: Problems = []
    spec = cfg.database
    stacks = [(f"database.fromStacks[{i}]", s.split("/")[-1]) for i, s in enumerate(spec.from_stacks)]
    for path, stack in duplicates(stacks):
        problems.append((path, f"stack '{stack}' is listed twice: its userdbs would be registered twice"))
    if spec.from_stacks and not cfg.middleware:
        problems.append(("database.fromStacks", "only middleware registers userdbs: add a middleware section, or "
                                                "remove fromStacks"))
    return problems


# Loopback ports an OX node already uses (components/core/ports.py): HAProxy may not take them.
MW_LOCAL_PORTS = {8008: "the document converter listener", 8009: "OX's HTTP connector",
                   1099: "OX's RMI admin port", 5701: "Hazelcast"}


def _proxy_port_checks(cfg: EstateConfig) -> Problems:
    """Each Galera cluster's HAProxy read/write ports on every middleware node: both or neither set,
    distinct, and clear of every other cluster's and of what the node already runs."""
    problems: Problems = []
    taken: dict[int, str] = {}
    for t in cfg.database.of_kind("galera"):
        if (t.spec.read_port is None) != (t.spec.write_port is None):
            missing = "writePort" if t.spec.write_port is None else "readPort"
            problems.append((f"{t.path}.{missing}", "set both readPort and writePort, or neither (then they are "
                                                    "derived from the cluster's name)"))
            continue
        read, write = cfg.database.proxy_ports(t)
        configured = t.spec.read_port is not None
        for key, port in (("readPort", read), ("writePort", write)):
            where = f"{t.path}.{key}"
            how = "" if configured else f" (derived from the name '{t.name}')"
            if port in MW_LOCAL_PORTS:
                problems.append((where, f"HAProxy port {port}{how} is {MW_LOCAL_PORTS[port]} on the middleware "
                                        f"nodes: set {t.path}.readPort and writePort to a free pair"))
            elif port in taken:
                problems.append((where, f"HAProxy port {port}{how} is already {taken[port]}: set {t.path}.readPort "
                                        "and writePort to a free pair"))
            else:
                taken[port] = f"{t.path}.{key}" + ("" if configured else f" (derived from '{t.name}')")
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
    elif any(3306 in cfg.database.proxy_ports(t) for t in cfg.database.of_kind("galera")):
        # This node's HAProxy listens on 127.0.0.1:3306 for a Galera cluster (`galera`'s default).
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
    for t in cfg.database.of_kind("gtid") if cfg.database else []:
        if t.spec.floating_address:
            groups.append((t.path, t.spec.floating_address, t.spec.vrrp_router_id, [t.spec.master.host, t.spec.slave.host]))
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
    for t in cfg.database.of_kind("gtid") if cfg.database else []:
        if t.spec.floating_address and t.spec.mode != "master-master":
            problems.append((f"{t.path}.floatingAddress", "a floating write address needs mode master-master "
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
    for i, (path2, floating2, router_id2, hosts2) in enumerate(groups):  # each against every earlier group
        for path, floating, router_id, hosts in groups[:i]:
            if ipaddress.IPv4Interface(floating).ip == ipaddress.IPv4Interface(floating2).ip:
                problems.append((f"{path2}.floatingAddress", f"{floating2} is already {path}.floatingAddress"))
            if router_id == router_id2:
                problems.append((f"{path2}.vrrpRouterId", f"VRRP router id {router_id2} is already {path}'s: two "
                                 "groups on one network with one id take each other's adverts"))
            for name in sorted(set(hosts) & set(hosts2)):
                problems.append((f"{path2}.floatingAddress", f"host '{name}' would hold both floating addresses "
                                 "(one keepalived per host): put the GTID pair and the frontends on different hosts"))
    return problems

"""The stack's configuration: one pydantic model, read once, validated before anything is created.

Every key lives in the `ox-estate:` namespace of `stacks/Pulumi.<stack>.yaml`. Structured
keys are set with `pulumi config set --path`, secrets with `pulumi config set --secret`.
Errors name the key path as Pulumi's `--path` syntax writes it
(`ox-estate:middleware.nodes[1].jkroute`), and every error is reported at once.

Shape and single-field rules live on the models; rules that relate fields (host references,
duplicates, roles) live in `_cross_checks`, which reports a key path per problem.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)

from pydantic.alias_generators import to_camel

from .config_checks import cross_checks, role_references
from .config_fields import (  # noqa: F401 (ProviderKind, Role: components import them from here)
    MAX_DEPTH, MAX_LIST, NAMESPACE, Address, Bool, Cidr, ConvergeToken, DataDir, DbName, DottedVersion, Email,
    FloatingAddress, GaleraClusterName, GcacheSize, HostName, HostOrAddress, HostRef, InstanceType, Int, JkRoute,
    LoginMapping, ObjectName, Port,
    ProviderKind, RepositoryUrl, RepositoryUser, Role, S3Uri, ServerId, SqlMode, StackName, SubnetId, Token, TrustedCidr,
    UnixUser, VpcId, VrrpRouterId, raw_problems, show,
)
from .versions import DbFlavor, appsuite_line, recommended_sql_mode


class ConfigError(ValueError):
    """A stack config that cannot be deployed. `problems` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"{NAMESPACE}:{path}: {msg}" if path else f"{NAMESPACE}: {msg}" for path, msg in problems]
        super().__init__("invalid stack config:\n  " + "\n  ".join(lines))


# Field types (whole-string patterns, numbers without coercion, safe paths and networks) live in
# config_fields.py; the models below say which field is which.


class _Model(BaseModel):
    # validate_default: a default passes the same rules (and conversions) as a configured value.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
                              validate_default=True)


# --- hosts -------------------------------------------------------------------------------


class HostSpec(_Model):
    name: HostName
    address: Address | None = None  # required for static hosts; AWS assigns one if absent
    instance_type: InstanceType | None = None  # AWS only; defaults per role


class Bastion(_Model):
    address: HostOrAddress
    user: UnixUser = "root"
    port: Port = 22


class SshSettings(_Model):
    user: UnixUser = "root"
    port: Port = 22
    bastion: Bastion | None = None


class AwsSettings(_Model):
    # The region is the AWS provider's own setting: `pulumi config set aws:region eu-central-1`.
    vpc_id: VpcId | None = None  # an existing VPC instead of a new one
    vpc_cidr: Cidr = "10.20.0.0/16"
    subnet_cidrs: list[Cidr] = Field(default_factory=lambda: ["10.20.1.0/24"], min_length=1, max_length=16)
    # with vpc_id: its existing subnets
    subnet_ids: list[SubnetId] = Field(default_factory=list, max_length=16)
    admin_cidr: TrustedCidr
    instance_types: dict[Role, InstanceType] = Field(
        default_factory=lambda: {Role.DB: "m6i.large", Role.MW: "m6i.xlarge", Role.WEB: "t3.medium", Role.NFS: "t3.medium",
                                 Role.DC: "c6i.xlarge"}
    )
    root_volume_gb: Int(8, 16384) = 30


# --- database ----------------------------------------------------------------------------


class DbVersion(_Model):
    flavor: DbFlavor = DbFlavor.MARIADB
    version: DottedVersion = "10.11"


class Versions(_Model):
    database: DbVersion = DbVersion()
    appsuite: DottedVersion = "8"

    @field_validator("appsuite")
    @classmethod
    def _appsuite(cls, v: str) -> str:
        appsuite_line(v)  # raises with a message naming the bad value
        return v


class GaleraSpec(_Model):
    cluster_name: GaleraClusterName = "ox-galera"
    nodes: list[HostRef] = Field(max_length=15)
    sst_method: Literal["mariabackup", "rsync"] = "mariabackup"
    # Recovery override: when no node is in a Primary component, bootstrap this one (one of `nodes`)
    # instead of the one the recovery decision would choose, or where it refuses (differing UUIDs,
    # an interrupted SST on another node, unknown positions). Ignored while a Primary component
    # runs; never bootstraps a node without a history (zero UUID, no grastate, interrupted SST).
    # Remove it once the cluster is back: a later recovery should decide again.
    force_bootstrap_node: HostRef | None = None
    # Galera's write-set cache (gcache.size): a node that was away for less than it holds rejoins
    # by IST instead of a full SST. Read at start only: a change restarts the nodes one at a time.
    gcache_size: GcacheSize = "128M"
    # HAProxy's loopback ports for this cluster on every middleware node (both or neither). Default:
    # 3306/3307 for the cluster named `galera`, otherwise derived from the name (DatabaseSpec.proxy_ports).
    read_port: Port | None = None
    write_port: Port | None = None

    @field_validator("nodes")
    @classmethod
    def _odd_quorum(cls, v: list[str]) -> list[str]:
        # An even or tiny cluster loses quorum on a split or a single failure.
        if len(v) < 3 or len(v) % 2 == 0:
            raise ValueError(f"a Galera cluster needs an odd number of nodes, at least 3 (got {len(v)})")
        return v


class NamedGaleraSpec(GaleraSpec):
    """A Galera cluster of database.galeraClusters; its wsrep cluster name defaults to its name."""
    name: DbName

    @model_validator(mode="before")
    @classmethod
    def _cluster_name_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "clusterName" not in data and "cluster_name" not in data and "name" in data:
            return {**data, "clusterName": data["name"]}
        return data


class GtidMember(_Model):
    host: HostRef
    server_id: ServerId
    # Default: 1 for the master; in master-master mode 2 for the second master (GtidSpec.domain_of).
    gtid_domain_id: Int(0, 4294967295) | None = None


class GtidSpec(_Model):
    mode: Literal["master-slave", "master-master"] = "master-slave"
    master: GtidMember
    slave: GtidMember  # in master-master mode the second master
    # master-master only: the write address OX registers and connects to, held by keepalived on
    # one master at a time (components/core/floating.py), with the prefix of the masters' network.
    floating_address: FloatingAddress | None = None
    vrrp_router_id: VrrpRouterId = 51

    def domain_of(self, member: GtidMember) -> int:
        """A member's gtid_domain_id. Master-master needs one per side (one domain with strict mode
        broke both directions in 1.6 s here); a slave shares its master's."""
        master = self.master.gtid_domain_id if self.master.gtid_domain_id is not None else 1
        if member is self.master:
            return master
        if member.gtid_domain_id is not None:
            return member.gtid_domain_id
        # The second master's default: 2, or the next free one when the master took 2.
        return (2 if master != 2 else 3) if self.mode == "master-master" else master


class NamedGtidSpec(GtidSpec):
    """A GTID pair of database.gtidPairs."""
    name: DbName


class StandaloneSpec(_Model):
    host: HostRef
    server_id: ServerId = 1


# What the single-topology keys are named: database.galera, database.gtid, database.standalone.
GALERA, GTID, STANDALONE = "galera", "gtid", "standalone"
# HAProxy's ports for the cluster named `galera` (oxpedia "HAproxy": reads 3306, writes 3307). Other
# clusters get a pair derived from their name alone, so adding or removing a cluster moves no
# other cluster's ports; two names that land on one pair are refused (config_checks), never moved.
GALERA_PORTS = (3306, 3307)
DERIVED_PORT_BASE, DERIVED_PORT_PAIRS = 23306, 1000


@dataclass(frozen=True)
class DbTopology:
    """One database topology of the estate, whichever key configured it."""
    name: str
    kind: Literal["galera", "gtid", "standalone"]
    path: str  # its key path, for errors: database.galera, database.galeraClusters[1], ...
    spec: GaleraSpec | GtidSpec | StandaloneSpec

    @property
    def ox_name(self) -> str:
        """The name OX registers it under (registerdatabase -n): oxdb_galera, oxdb_users_a."""
        return "oxdb_" + self.name.replace("-", "_")


class DbTuning(_Model):
    # "ox": innodb_flush_log_at_trx_commit=0 as OX recommends (a crash of every node at once loses
    # about the last second); "strict": 1, every commit durable.
    durability: Literal["ox", "strict"] = "ox"
    buffer_pool_percent: Int(10, 80) = 50
    max_connections: Int(50, 100000) = 505
    sql_mode: SqlMode | None = None  # default: the matrix for the DB and App Suite versions


class DatabaseSpec(_Model):
    galera: GaleraSpec | None = None  # the Galera cluster named `galera`
    gtid: GtidSpec | None = None  # the GTID pair named `gtid`
    standalone: StandaloneSpec | None = None  # named `standalone`
    galera_clusters: list[NamedGaleraSpec] = Field(default_factory=list, max_length=32)
    gtid_pairs: list[NamedGtidSpec] = Field(default_factory=list, max_length=32)
    configdb: DbName  # the name of the topology that holds the configdb
    userdbs: list[DbName] = Field(default_factory=list, max_length=64)  # empty: the configdb's topology also holds userdbs
    tuning: DbTuning = DbTuning()
    # A database stack used by other stacks' middleware: the networks their OX nodes are in. The
    # `openexchange` grants and the firewall's 3306 and clustercheck admit exactly these (and this
    # stack's own middleware nodes, if any); the consumer refuses a node outside them.
    clients: list[TrustedCidr] = Field(default_factory=list, max_length=64)
    # The database stacks whose userdbs this stack's middleware registers (StackReference).
    from_stacks: list[StackName] = Field(default_factory=list, max_length=32)

    def topologies(self) -> list[DbTopology]:
        """Every database topology, the single-key ones under their fixed names, in config order."""
        found = [DbTopology(GALERA, "galera", "database.galera", self.galera)] if self.galera else []
        found += [DbTopology(g.name, "galera", f"database.galeraClusters[{i}]", g)
                  for i, g in enumerate(self.galera_clusters)]
        found += [DbTopology(GTID, "gtid", "database.gtid", self.gtid)] if self.gtid else []
        found += [DbTopology(p.name, "gtid", f"database.gtidPairs[{i}]", p) for i, p in enumerate(self.gtid_pairs)]
        found += [DbTopology(STANDALONE, "standalone", "database.standalone", self.standalone)] if self.standalone else []
        return found

    def of_kind(self, kind: str) -> list[DbTopology]:
        return [t for t in self.topologies() if t.kind == kind]

    def named(self, name: str) -> DbTopology | None:
        return next((t for t in self.topologies() if t.name == name), None)

    @property
    def used(self) -> list[str]:
        """The topologies OX uses: the configdb's, then the userdbs (the configdb's when none is named)."""
        return list(dict.fromkeys([self.configdb, *(self.userdbs or [self.configdb])]))

    @staticmethod
    def proxy_ports(topology: DbTopology) -> tuple[int, int]:
        """A Galera cluster's HAProxy (read, write) ports: configured, 3306/3307 for `galera`, or
        derived from its name alone (crc32: the same on every run and machine)."""
        spec = topology.spec
        if spec.read_port is not None and spec.write_port is not None:
            return spec.read_port, spec.write_port
        if topology.name == GALERA:
            return GALERA_PORTS
        read = DERIVED_PORT_BASE + 2 * (zlib.crc32(topology.name.encode()) % DERIVED_PORT_PAIRS)
        return read, read + 1


# --- middleware, frontend, filestore -------------------------------------------------------


class MiddlewareNode(_Model):
    host: HostRef
    jkroute: JkRoute
    # "provisioning": joins the Hazelcast cluster but takes no frontend traffic (seed 001, >500k mailboxes).
    role: Literal["backend", "provisioning"] = "backend"
    # Out of new sessions at every Apache (balancer-manager Drain, status N, and BalancerMember
    # status=+N so a restart keeps it); sessions already stuck to it stay. false: back in.
    drained: Bool = False


class FirstContext(_Model):
    """An optional first context (createcontext), with its admin user."""
    context_id: Int(1, 2147483647) = 1
    name: ObjectName = "context1"
    admin_user: ObjectName = "oxadmin"
    admin_email: Email = "oxadmin@example.com"
    quota_mb: Int(1, 2**40) = 1000
    mappings: list[LoginMapping] = Field(default_factory=list, max_length=100)  # login mappings (the mail domain)


class MiddlewareSpec(_Model):
    cluster_name: Token = "ox-cluster"  # Hazelcast group name
    server_name: Token = "oxserver"  # registerserver -n
    nodes: list[MiddlewareNode] = Field(min_length=1, max_length=500)
    servermemory_mb: Int(512, 1048576) = 2048
    package_source: Literal["preinstalled", "repository"] = "preinstalled"
    # e.g. https://software.open-xchange.com/products/appsuite/stable/backend/DebianBookworm
    repository_url: RepositoryUrl | None = None
    repository_user: RepositoryUser | None = None  # the password is the secret oxRepositoryPassword
    first_context: FirstContext | None = None


class FrontendSpec(_Model):
    mode: Literal["dedicated", "colocated"] = "dedicated"
    nodes: list[HostRef] = Field(default_factory=list, max_length=50)  # dedicated mode only
    admin_networks: list[TrustedCidr] = Field(default_factory=list, max_length=64)  # may reach SOAP, balancer-manager
    max_connections: Int(100, 200000) = 8000
    # The clients' address, held by keepalived on one frontend whose Apache answers (two or more
    # frontends; components/core/floating.py), with the prefix of the frontends' network.
    floating_address: FloatingAddress | None = None
    vrrp_router_id: VrrpRouterId = 52


class FilestoreSpec(_Model):
    server: HostRef | None = None  # the NFS server; or, for an object store, s3Uri instead
    # registerfilestore -t s3://<id>
    s3_uri: S3Uri | None = None
    implementation: Literal["kernel", "ganesha"] = "kernel"
    export_path: DataDir = "/var/opt/filestore"
    mount_path: DataDir = "/var/opt/filestore"
    # The open-xchange user and group: the same ids on every middleware node and the NFS server.
    # Defaults clear of Debian's system range (allocated downward from 999) and of the first
    # human users (from 1000).
    uid: Int(100, 65533) = 2001
    gid: Int(100, 65533) = 2001
    # "nfs": an fstab entry and a mount on every middleware node. "preprovisioned": the platform
    # already provides the shared path there (another mount mechanism, or the lab's shared dir).
    client_mount: Literal["nfs", "preprovisioned"] = "nfs"
    size_mb: Int(1, 2**40) = 1_000_000  # registerfilestore -s
    max_contexts: Int(1, 10_000_000) = 5000  # registerfilestore -x

    @property
    def uri(self) -> str:
        """What registerfilestore registers: the NFS mount, or the S3 filestore."""
        return self.s3_uri or f"file:{self.mount_path}"


class FirewallSpec(_Model):
    """nftables on static hosts (components/core/firewall.py): each port open only to its peers (the
    table in components/core/ports.py). AWS hosts get security groups from the same table instead."""
    enabled: Bool = True
    # Networks that may SSH to every host; the bastion's address is added automatically.
    ssh_from: list[TrustedCidr] = Field(default_factory=list, max_length=64)


class ConverterNode(_Model):
    host: HostRef
    # Apache's route= for this node, and its com.openexchange.server.backendRoute (DC1, DC2, ...).
    route: JkRoute


class DocumentConverterSpec(_Model):
    """OX document converter nodes (oxpedia "DocumentConverter Quickinstall Guide"): nodes of their
    own, outside the Hazelcast cluster and without DB access, behind every frontend's
    balancer://oxcluster_docs, which only the middleware nodes may reach."""
    nodes: list[ConverterNode] = Field(min_length=1, max_length=50)
    job_processor_count: Int(1, 256) = 3  # com.openexchange.documentconverter.jobProcessorCount


# --- secrets -------------------------------------------------------------------------------

# Config key -> what it is. Absent ones (except the SSH key) are generated with pulumi_random.
SECRET_KEYS: dict[str, str] = {
    "sshPrivateKey": "private key for SSH to every host (OpenSSH or PEM format)",
    "mysqlRootPassword": "MariaDB root password",
    "sstPassword": "Galera SST user password",
    "replicationPassword": "GTID replication user password",
    "configdbPassword": "password of the 'openexchange' DB user",
    "oxAdminMasterPassword": "OX admin master (oxadminmaster) password",
    "hazelcastGroupPassword": "Hazelcast group password (App Suite before 7.10.2)",
    "oxContextAdminPassword": "password of the first context's admin user",
    "oxRepositoryPassword": "credentials for OX's package repository",
}


def _password(v: SecretStr) -> SecretStr:
    # Control characters are refused for every key before the model (config_fields.raw_problems).
    if not 1 <= len(v.get_secret_value()) <= 256:
        raise ValueError("a password needs 1-256 characters")
    return v


def _netrc_password(v: SecretStr) -> SecretStr:
    # apt's auth.conf is netrc: whitespace would split the password into further tokens.
    if any(c.isspace() for c in v.get_secret_value()):
        raise ValueError("the repository password cannot hold whitespace (apt's auth.conf splits on it)")
    return v


Password = Annotated[SecretStr, AfterValidator(_password)]


class Secrets(_Model):
    ssh_private_key: SecretStr | None = None  # checked by parsing it (sshkeys.public_key_of)
    mysql_root_password: Password | None = None
    sst_password: Password | None = None
    replication_password: Password | None = None
    configdb_password: Password | None = None
    ox_admin_master_password: Password | None = None
    hazelcast_group_password: Password | None = None
    ox_context_admin_password: Password | None = None
    ox_repository_password: Annotated[Password, AfterValidator(_netrc_password)] | None = None


# --- the whole stack -----------------------------------------------------------------------


class EstateConfig(_Model):
    provider: ProviderKind
    ssh: SshSettings = SshSettings()
    aws: AwsSettings | None = None
    hosts: list[HostSpec] = Field(min_length=1, max_length=MAX_LIST)
    versions: Versions = Versions()
    database: DatabaseSpec | None = None
    middleware: MiddlewareSpec | None = None
    frontend: FrontendSpec | None = None
    filestore: FilestoreSpec | None = None
    document_converter: DocumentConverterSpec | None = None
    firewall: FirewallSpec = FirewallSpec()  # static hosts only
    secrets: Secrets = Secrets()
    # Any new value re-runs every probe-and-repair step (services up, mounts, checks) once: under
    # the engine, a step whose inputs are unchanged never runs again (components/core/remote.py).
    converge: ConvergeToken | None = None

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)

    def roles_of(self, name: str) -> set[Role]:
        return {role for role, hosts in role_references(self).items() for _, ref in hosts if ref == name}

    @property
    def sql_mode(self) -> str:
        """The sql_mode the DB servers get: the configured one, or the matrix's."""
        if self.database and self.database.tuning.sql_mode is not None:
            return ",".join(m.strip().upper() for m in self.database.tuning.sql_mode.split(","))
        db = self.versions.database
        return ",".join(recommended_sql_mode(db.flavor, db.version, appsuite_line(self.versions.appsuite)) or ())


# --- reading Pulumi config -----------------------------------------------------------------


def _error_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse(raw: dict[str, Any], secret_keys: set[str] = frozenset(),
          problems: list[tuple[str, str]] | None = None) -> EstateConfig:
    """Build the model from `{key: value}` without the namespace. Raises ConfigError.

    `problems`: ones found while reading the raw values (load), reported with the rest."""
    problems = list(problems or [])
    data: dict[str, Any] = {"secrets": {}}
    rejected: set[str] = set()
    for key, value in raw.items():
        raw_found = raw_problems(key, value, multiline_ok=key == "sshPrivateKey") if key_known(key) else []
        problems += raw_found
        if raw_found:
            rejected.add(key)
        elif key in SECRET_KEYS:
            if key not in secret_keys:
                problems.append((key, f"holds a secret but is stored in plain text: "
                                      f"pulumi config set --secret {NAMESPACE}:{key}"))
            data["secrets"][key] = value
        elif key_known(key):
            data[key] = value
        else:
            problems.append((show(key)[1:-1] if len(key) > 64 else key, "unknown key (known: " + ", ".join(
                sorted(_CONFIG_KEYS | set(SECRET_KEYS))) + ")"))
    try:
        cfg = EstateConfig.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = err["loc"][1:] if err["loc"][:1] == ("secrets",) else err["loc"]
            if loc and loc[0] in rejected:
                continue  # already reported, and left out
            problems.append((_error_path(loc), err["msg"].removeprefix("Value error, ")))
        raise ConfigError(problems) from None
    if rejected:  # the cross checks would miss those keys, and blame others for it
        raise ConfigError(problems)
    problems += cross_checks(cfg)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg


# Top-level keys in their one spelling (camelCase). `secrets` is the model's own field, never a
# key: secrets come only as their own keys, each checked for --secret.
_CONFIG_KEYS = {f.alias or n for n, f in EstateConfig.model_fields.items() if n != "secrets"}


def key_known(key: str) -> bool:
    return key in _CONFIG_KEYS or key in SECRET_KEYS


def load() -> EstateConfig:
    """Read every `ox-estate:*` key of the running stack. Call once, before creating resources."""
    from pulumi.runtime import config as runtime_config

    all_config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for full_key, value in all_config.items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        try:
            raw[key] = _decode(value)
        except RecursionError:
            problems.append((key, f"nested deeper than {MAX_DEPTH} levels"))
    secret_keys = {k for k in raw if runtime_config.is_config_secret(f"{NAMESPACE}:{k}")}
    secret_keys |= {k.partition(":")[2] for k in runtime_config.get_config_secret_keys_env()}
    return parse(raw, secret_keys, problems)


def _decode(value: Any) -> Any:
    # Structured config reaches the program as JSON text; plain values stay strings.
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value

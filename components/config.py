"""The stack's configuration: one pydantic model, read once, validated before anything is created.

Every key lives in the `ox-estate:` namespace of `stacks/Pulumi.<stack>.yaml`. Structured
keys are set with `pulumi config set --path`, secrets with `pulumi config set --secret`.
Errors name the key path as Pulumi's `--path` syntax writes it
(`ox-estate:middleware.nodes[1].jkroute`), and every error is reported at once.

Shape and single-field rules live on the models; rules that relate fields (host references,
duplicates, roles) live in `_cross_checks`, which reports a key path per problem.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from .sshkeys import public_key_of
from .versions import DbFlavor, appsuite_line, recommended_sql_mode, supported_releases, DB_RELEASES

NAMESPACE = "ox-estate"


class ConfigError(ValueError):
    """A stack config that cannot be deployed. `problems` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"{NAMESPACE}:{path}: {msg}" if path else f"{NAMESPACE}: {msg}" for path, msg in problems]
        super().__init__("invalid stack config:\n  " + "\n  ".join(lines))


# --- field types -------------------------------------------------------------------------

_HOSTNAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# A jkroute is the text after the first dot of JSESSIONID and must equal Apache's route= exactly,
# so no dots, separators or spaces (lab-findings: Apache balancer).
_JKROUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def _hostname(v: str) -> str:
    if not _HOSTNAME.match(v):
        raise ValueError(f"'{v}' is not a host name (lowercase letters, digits and '-', starting with a letter)")
    return v


def _jkroute(v: str) -> str:
    if not _JKROUTE.match(v):
        raise ValueError(
            f"'{v}' is not a valid route token: use 1-32 letters, digits, '-' or '_' (no dots: "
            "the route is what follows the first dot of JSESSIONID)"
        )
    return v


# `converge` is rendered into the probe-and-repair steps' scripts (as a comment), so it is a plain
# token: `pulumi up -c ox-estate:converge=$(date +%s)`.
_CONVERGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")


def converge_token(v: str) -> str:
    if not _CONVERGE.fullmatch(v):
        raise ValueError("a converge token is 1-64 letters, digits or . _ : + - (for example $(date +%s))")
    return v


def _cidr(v: Any) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(v), strict=True)
    except ValueError as e:
        raise ValueError(f"'{v}' is not an IPv4 CIDR: {e}") from None


def _address(v: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(v)))
    except ValueError:
        raise ValueError(f"'{v}' is not an IPv4 address") from None


HostName = Annotated[str, AfterValidator(_hostname)]
HostRef = Annotated[str, AfterValidator(_hostname)]
JkRoute = Annotated[str, AfterValidator(_jkroute)]
Cidr = Annotated[Any, AfterValidator(_cidr)]
Address = Annotated[Any, AfterValidator(_address)]
ServerId = Annotated[int, Field(ge=1, le=4294967295)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# --- hosts -------------------------------------------------------------------------------


class ProviderKind(StrEnum):
    AWS = "aws"
    STATIC = "static"


class Role(StrEnum):
    DB = "db"
    MW = "mw"
    WEB = "web"
    NFS = "nfs"


class HostSpec(_Model):
    name: HostName
    address: Address | None = None  # required for static hosts; AWS assigns one if absent
    instance_type: str | None = None  # AWS only; defaults per role


class Bastion(_Model):
    address: str
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)


class SshSettings(_Model):
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    bastion: Bastion | None = None


class AwsSettings(_Model):
    # The region is the AWS provider's own setting: `pulumi config set aws:region eu-central-1`.
    vpc_id: str | None = None  # use an existing VPC instead of creating one
    vpc_cidr: Cidr = "10.20.0.0/16"
    subnet_cidrs: list[Cidr] = Field(default_factory=lambda: ["10.20.1.0/24"], min_length=1)
    subnet_ids: list[str] = Field(default_factory=list)  # with vpc_id: existing subnets
    admin_cidr: Cidr
    instance_types: dict[Role, str] = Field(
        default_factory=lambda: {Role.DB: "m6i.large", Role.MW: "m6i.xlarge", Role.WEB: "t3.medium", Role.NFS: "t3.medium"}
    )
    root_volume_gb: int = Field(30, ge=8)


# --- database ----------------------------------------------------------------------------


class DbVersion(_Model):
    flavor: DbFlavor = DbFlavor.MARIADB
    version: str = "10.11"


class Versions(_Model):
    database: DbVersion = DbVersion()
    appsuite: str = "8"

    @field_validator("appsuite")
    @classmethod
    def _appsuite(cls, v: str) -> str:
        appsuite_line(v)  # raises with a message naming the bad value
        return v


class GaleraSpec(_Model):
    cluster_name: str = Field("ox-galera", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    nodes: list[HostRef]
    sst_method: Literal["mariabackup", "rsync"] = "mariabackup"

    @field_validator("nodes")
    @classmethod
    def _odd_quorum(cls, v: list[str]) -> list[str]:
        # An even or tiny cluster loses quorum on a split or a single failure.
        if len(v) < 3 or len(v) % 2 == 0:
            raise ValueError(f"a Galera cluster needs an odd number of nodes, at least 3 (got {len(v)})")
        return v


class GtidMember(_Model):
    host: HostRef
    server_id: ServerId
    gtid_domain_id: int | None = Field(None, ge=0, le=4294967295)


class GtidSpec(_Model):
    mode: Literal["master-slave", "master-master"] = "master-slave"
    master: GtidMember
    slave: GtidMember  # in master-master mode the second master


class StandaloneSpec(_Model):
    host: HostRef
    server_id: ServerId = 1


TopologyName = Literal["galera", "gtid", "standalone"]


class DbTuning(_Model):
    # "ox": innodb_flush_log_at_trx_commit=0 as OX recommends (a crash of every node at once loses
    # about the last second); "strict": 1, every commit durable.
    durability: Literal["ox", "strict"] = "ox"
    buffer_pool_percent: int = Field(50, ge=10, le=80)
    max_connections: int = Field(505, ge=50)
    sql_mode: str | None = None  # default: the matrix for the DB and App Suite versions


class DatabaseSpec(_Model):
    galera: GaleraSpec | None = None
    gtid: GtidSpec | None = None
    standalone: StandaloneSpec | None = None
    configdb: TopologyName
    userdbs: list[TopologyName] = Field(default_factory=list)  # empty: the configdb cluster also holds userdbs
    tuning: DbTuning = DbTuning()


# --- middleware, frontend, filestore -------------------------------------------------------


class MiddlewareNode(_Model):
    host: HostRef
    jkroute: JkRoute
    # "provisioning": joins the Hazelcast cluster but takes no frontend traffic (seed 001, >500k mailboxes).
    role: Literal["backend", "provisioning"] = "backend"


class FirstContext(_Model):
    """An optional first context (createcontext), with its admin user."""
    context_id: int = Field(1, ge=1)
    name: str = Field("context1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    admin_user: str = Field("oxadmin", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    admin_email: str = "oxadmin@example.com"
    quota_mb: int = Field(1000, ge=1)
    mappings: list[str] = Field(default_factory=list)  # login mappings (e.g. the mail domain)


class MiddlewareSpec(_Model):
    cluster_name: str = Field("ox-cluster", pattern=r"^[A-Za-z0-9_-]{1,64}$")  # Hazelcast group name
    server_name: str = Field("oxserver", pattern=r"^[A-Za-z0-9_-]{1,64}$")  # registerserver -n
    nodes: list[MiddlewareNode] = Field(min_length=1)
    servermemory_mb: int = Field(2048, ge=512)
    package_source: Literal["preinstalled", "repository"] = "preinstalled"
    repository_url: str | None = None  # e.g. https://software.open-xchange.com/products/appsuite/stable/backend/DebianBookworm
    repository_user: str | None = None  # the password is the secret oxRepositoryPassword
    first_context: FirstContext | None = None


class FrontendSpec(_Model):
    mode: Literal["dedicated", "colocated"] = "dedicated"
    nodes: list[HostRef] = Field(default_factory=list)  # dedicated mode only
    admin_networks: list[Cidr] = Field(default_factory=list)  # may reach SOAP and balancer-manager
    max_connections: int = Field(8000, ge=100)


class FilestoreSpec(_Model):
    server: HostRef | None = None  # the NFS server; or, for an object store, s3Uri instead
    s3_uri: str | None = Field(None, pattern=r"^s3://[A-Za-z0-9._-]+$")  # registerfilestore -t s3://<id>
    implementation: Literal["kernel", "ganesha"] = "kernel"
    export_path: str = Field("/var/opt/filestore", pattern=r"^/[A-Za-z0-9._/-]*$")
    mount_path: str = Field("/var/opt/filestore", pattern=r"^/[A-Za-z0-9._/-]*$")
    # The open-xchange user and group: the same ids on every middleware node and the NFS server.
    # Defaults clear of Debian's system range (allocated downward from 999) and of the first
    # human users (from 1000).
    uid: int = Field(2001, ge=100, le=65533)
    gid: int = Field(2001, ge=100, le=65533)
    # "nfs": an fstab entry and a mount on every middleware node. "preprovisioned": the platform
    # already provides the shared path there (another mount mechanism, or the lab's shared dir).
    client_mount: Literal["nfs", "preprovisioned"] = "nfs"
    size_mb: int = Field(1_000_000, ge=1)  # registerfilestore -s
    max_contexts: int = Field(5000, ge=1)  # registerfilestore -x

    @property
    def uri(self) -> str:
        """What registerfilestore registers: the NFS mount, or the S3 filestore."""
        return self.s3_uri or f"file:{self.mount_path}"


class FirewallSpec(_Model):
    """nftables on static hosts (components/firewall.py): each port open only to its peers (the
    table in components/ports.py). AWS hosts get security groups from the same table instead."""
    enabled: bool = True
    # Networks that may SSH to every host; the bastion's address is added automatically.
    ssh_from: list[Cidr] = Field(default_factory=list)


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


class Secrets(_Model):
    ssh_private_key: SecretStr | None = None
    mysql_root_password: SecretStr | None = None
    sst_password: SecretStr | None = None
    replication_password: SecretStr | None = None
    configdb_password: SecretStr | None = None
    ox_admin_master_password: SecretStr | None = None
    hazelcast_group_password: SecretStr | None = None
    ox_context_admin_password: SecretStr | None = None
    ox_repository_password: SecretStr | None = None


# --- the whole stack -----------------------------------------------------------------------


class EstateConfig(_Model):
    provider: ProviderKind
    ssh: SshSettings = SshSettings()
    aws: AwsSettings | None = None
    hosts: list[HostSpec] = Field(min_length=1)
    versions: Versions = Versions()
    database: DatabaseSpec | None = None
    middleware: MiddlewareSpec | None = None
    frontend: FrontendSpec | None = None
    filestore: FilestoreSpec | None = None
    firewall: FirewallSpec = FirewallSpec()  # static hosts only
    secrets: Secrets = Secrets()
    # Any new value re-runs every probe-and-repair step (services up, mounts, checks) once: under
    # the engine, a step whose inputs are unchanged never runs again (components/remote.py).
    converge: Annotated[str, AfterValidator(converge_token)] | None = None

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)

    def roles_of(self, name: str) -> set[Role]:
        return {role for role, hosts in _role_references(self).items() for _, ref in hosts if ref == name}

    @property
    def sql_mode(self) -> str:
        """The sql_mode the DB servers get: the configured one, or the matrix's."""
        if self.database and self.database.tuning.sql_mode is not None:
            return self.database.tuning.sql_mode
        db = self.versions.database
        return ",".join(recommended_sql_mode(db.flavor, db.version, appsuite_line(self.versions.appsuite)) or ())


def _role_references(cfg: EstateConfig) -> dict[Role, list[tuple[str, str]]]:
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
    return refs


def _duplicates(values: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The (path, value) pairs whose value appeared earlier in the list."""
    counts = Counter(v for _, v in values)
    seen: set[Any] = set()
    dups = []
    for path, v in values:
        if counts[v] > 1 and v in seen:
            dups.append((path, v))
        seen.add(v)
    return dups


def _cross_checks(cfg: EstateConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    names = [h.name for h in cfg.hosts]

    for path, name in _duplicates([(f"hosts[{i}].name", h.name) for i, h in enumerate(cfg.hosts)]):
        problems.append((path, f"duplicate host name '{name}'"))
    addresses = [(f"hosts[{i}].address", h.address) for i, h in enumerate(cfg.hosts) if h.address]
    for path, addr in _duplicates(addresses):
        problems.append((path, f"duplicate address {addr}"))

    refs = _role_references(cfg)
    for role_refs in refs.values():
        for path, name in role_refs:
            if name not in names:
                problems.append((path, f"unknown host '{name}' (not in {NAMESPACE}:hosts)"))
    # One DB server per host: two would fight over port 3306 and the datadir.
    for path, name in _duplicates(refs[Role.DB]):
        problems.append((path, f"host '{name}' already holds a database server"))
    for path, name in _duplicates(refs[Role.MW]):
        problems.append((path, f"host '{name}' is listed twice as a middleware node"))

    if cfg.provider == ProviderKind.STATIC:
        for i, h in enumerate(cfg.hosts):
            if h.address is None:
                problems.append((f"hosts[{i}].address", f"static host '{h.name}' needs an address"))
    elif cfg.aws is None:
        problems.append(("aws", "the aws provider needs an 'aws' section (at least adminCidr)"))
    if cfg.secrets.ssh_private_key is None:
        problems.append(("sshPrivateKey", "missing SSH private key for the hosts: "
                         f"pulumi config set --secret {NAMESPACE}:sshPrivateKey < key"))
    else:
        try:
            public_key_of(cfg.secrets.ssh_private_key.get_secret_value())
        except ValueError as e:
            problems.append(("sshPrivateKey", str(e)))

    problems += _database_checks(cfg)
    problems += _middleware_checks(cfg)
    problems += _firewall_checks(cfg)
    return problems


def _database_checks(cfg: EstateConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    db = cfg.versions.database
    if (db.flavor, db.version) not in DB_RELEASES:
        problems.append(("versions.database.version",
                         f"unknown {db.flavor} version '{db.version}' (supported: {', '.join(supported_releases())})"))
        return problems  # the rest depends on a known release
    if cfg.database is None:
        return problems

    spec = cfg.database
    for path, name in [("database.configdb", spec.configdb)] + [
        (f"database.userdbs[{i}]", n) for i, n in enumerate(spec.userdbs)
    ]:
        if getattr(spec, name) is None:
            problems.append((path, f"'{name}' is named but database.{name} is not configured"))
    if spec.gtid and spec.gtid.master.server_id == spec.gtid.slave.server_id:
        problems.append(("database.gtid.slave.serverId",
                         f"server-id {spec.gtid.slave.server_id} is already the master's; the pair needs distinct ids"))
    if spec.gtid and spec.gtid.mode == "master-master":
        d1, d2 = spec.gtid.master.gtid_domain_id, spec.gtid.slave.gtid_domain_id
        if d1 is not None and d1 == d2:
            problems.append(("database.gtid.slave.gtidDomainId",
                             "master-master needs a distinct gtid_domain_id per side (same domain breaks replication)"))

    line = appsuite_line(cfg.versions.appsuite)
    allowed = recommended_sql_mode(db.flavor, db.version, line)
    if allowed is None:
        problems.append(("versions.appsuite",
                         f"App Suite {cfg.versions.appsuite} is not supported on {db.flavor} {db.version}"))
    elif spec.tuning.sql_mode is not None:
        modes = [m.strip().upper() for m in spec.tuning.sql_mode.split(",") if m.strip()]
        bad = [m for m in modes if m not in allowed]
        if bad:
            problems.append(("database.tuning.sqlMode",
                             f"{', '.join(bad)} not supported for App Suite {cfg.versions.appsuite} on "
                             f"{db.flavor} {db.version} (allowed: {','.join(allowed)})"))
    return problems


def _firewall_checks(cfg: EstateConfig) -> list[tuple[str, str]]:
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


def _middleware_checks(cfg: EstateConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    mw = cfg.middleware
    if mw:
        routes = [(f"middleware.nodes[{i}].jkroute", n.jkroute) for i, n in enumerate(mw.nodes)]
        for path, route in _duplicates(routes):
            problems.append((path, f"duplicate jkroute '{route}': each node needs its own route"))
        if mw.package_source == "repository" and not mw.repository_url:
            problems.append(("middleware.repositoryUrl", "packageSource 'repository' needs a repositoryUrl"))
        if mw.package_source == "repository" and cfg.secrets.ox_repository_password is None:
            problems.append(("oxRepositoryPassword", "packageSource 'repository' needs the repository password: "
                             f"pulumi config set --secret {NAMESPACE}:oxRepositoryPassword"))
        if cfg.database is None:
            problems.append(("middleware", "middleware needs a database section for its configdb"))
    fs = cfg.filestore
    if fs and (fs.server is None) == (fs.s3_uri is None):
        problems.append(("filestore", "set either server (an NFS filestore) or s3Uri (an S3 filestore), not both"))
    fe = cfg.frontend
    if fe:
        backends = [n for n in mw.nodes if n.role == "backend"] if mw else []
        if not backends:
            problems.append(("frontend", "a frontend needs middleware backend nodes behind it (middleware.nodes)"))
        if fe.mode == "dedicated" and not fe.nodes:
            problems.append(("frontend.nodes", "dedicated frontends need at least one host"))
        if fe.mode == "colocated" and fe.nodes:
            problems.append(("frontend.nodes", "colocated frontends run on the middleware nodes; leave nodes empty"))
    return problems


# --- reading Pulumi config -----------------------------------------------------------------


def _error_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse(raw: dict[str, Any], secret_keys: set[str] = frozenset()) -> EstateConfig:
    """Build the model from `{key: value}` without the namespace. Raises ConfigError."""
    problems: list[tuple[str, str]] = []
    data: dict[str, Any] = {"secrets": {}}
    for key, value in raw.items():
        if key in SECRET_KEYS:
            if key not in secret_keys:
                problems.append((key, f"holds a secret but is stored in plain text: "
                                      f"pulumi config set --secret {NAMESPACE}:{key}"))
            data["secrets"][key] = value
        elif key in EstateConfig.model_fields or key in {f.alias for f in EstateConfig.model_fields.values()}:
            data[key] = value
        else:
            problems.append((key, "unknown key (known: " + ", ".join(sorted(
                [f.alias or n for n, f in EstateConfig.model_fields.items() if n != "secrets"] + list(SECRET_KEYS)
            )) + ")"))
    try:
        cfg = EstateConfig.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = err["loc"][1:] if err["loc"][:1] == ("secrets",) else err["loc"]
            problems.append((_error_path(loc), err["msg"].removeprefix("Value error, ")))
        raise ConfigError(problems) from None
    problems += _cross_checks(cfg)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg


def load() -> EstateConfig:
    """Read every `ox-estate:*` key of the running stack. Call once, before creating resources."""
    from pulumi.runtime import config as runtime_config

    all_config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw: dict[str, Any] = {}
    for full_key, value in all_config.items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        raw[key] = _decode(value)
    secret_keys = {k for k in raw if runtime_config.is_config_secret(f"{NAMESPACE}:{k}")}
    secret_keys |= {k.partition(":")[2] for k in runtime_config.get_config_secret_keys_env()}
    return parse(raw, secret_keys)


def _decode(value: Any) -> Any:
    # Structured config reaches the program as JSON text; plain values stay strings.
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value

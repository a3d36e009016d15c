"""Config validation: every bad stack config fails with the key path, before any resource exists."""

import pytest

from components.core import config
from components.core.config import ConfigError, parse
from harness import run_program

SECRET = {"sshPrivateKey"}

# (case, overrides, key path named in the error, words the message must contain)
BAD_CONFIGS = [
    ("galera of two", {"database": {"galera": {"nodes": ["db1", "db2"]}, "configdb": "galera"}},
     "database.galera.nodes", "odd number of nodes, at least 3 (got 2)"),
    ("galera of four", {"database": {"galera": {"nodes": ["db1", "db2", "db3", "db4"]}, "configdb": "galera"}},
     "database.galera.nodes", "(got 4)"),
    ("duplicate jkroute", {"middleware": {"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX1"}]}},
     "middleware.nodes[1].jkroute", "duplicate jkroute 'OX1'"),
    ("jkroute with a dot", {"middleware": {"nodes": [{"host": "mw1", "jkroute": "OX.1"}]}},
     "middleware.nodes[0].jkroute", "not a valid route token"),
    ("jkroute with a space", {"middleware": {"nodes": [{"host": "mw1", "jkroute": "OX 1"}]}},
     "middleware.nodes[0].jkroute", "not a valid route token"),
    ("duplicate host name", {"hosts": [{"name": "db1", "address": "10.0.0.11"}, {"name": "db1", "address": "10.0.0.12"}],
                             "database": None, "middleware": None, "filestore": None, "frontend": None},
     "hosts[1].name", "duplicate host name 'db1'"),
    ("duplicate address", {"hosts": [{"name": "db1", "address": "10.0.0.11"}, {"name": "db2", "address": "10.0.0.11"}],
                           "database": None, "middleware": None, "filestore": None, "frontend": None},
     "hosts[1].address", "duplicate address 10.0.0.11"),
    ("bad address", {"hosts": [{"name": "db1", "address": "10.0.0.300"}],
                     "database": None, "middleware": None, "filestore": None, "frontend": None},
     "hosts[0].address", "not an IPv4 address"),
    ("same server-id", {"database": {"gtid": {"master": {"host": "db4", "serverId": 7}, "slave": {"host": "db5", "serverId": 7}},
                                     "configdb": "gtid"}},
     "database.gtid.slave.serverId", "server-id 7 is already the master's"),
    ("unknown mariadb version", {"versions": {"database": {"flavor": "mariadb", "version": "10.3"}}},
     "versions.database.version", "unknown mariadb version '10.3' (supported: mariadb 10.11)"),
    ("unknown flavor", {"versions": {"database": {"flavor": "postgres", "version": "16"}}},
     "versions.database.flavor", "'mariadb' or 'mysql'"),
    ("missing ssh key", {"sshPrivateKey": None},
     "sshPrivateKey", "missing SSH private key"),
    ("ssh key that is not a key", {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----"},
     "sshPrivateKey", "not a usable unencrypted private key"),
    ("cidr that does not parse", {"frontend": {"nodes": ["web1"], "adminNetworks": ["10.0.0.0/33"]}},
     "frontend.adminNetworks[0]", "not an IPv4 CIDR"),
    ("cidr with host bits", {"frontend": {"nodes": ["web1"], "adminNetworks": ["10.0.0.5/24"]}},
     "frontend.adminNetworks[0]", "has host bits set"),
    ("aws admin cidr", {"provider": "aws", "aws": {"adminCidr": "office"}},
     "aws.adminCidr", "not an IPv4 CIDR"),
    ("frontend without middleware", {"middleware": None},
     "frontend", "needs middleware backend nodes"),
    ("frontend with only a provisioning node",
     {"middleware": {"nodes": [{"host": "mw1", "jkroute": "PROV", "role": "provisioning"}]}},
     "frontend", "needs middleware backend nodes"),
    ("sql_mode the matrix does not allow", {"database": {"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera",
                                                         "tuning": {"sqlMode": "NO_ENGINE_SUBSTITUTION,STRICT_TRANS_TABLES"}}},
     "database.tuning.sqlMode", "STRICT_TRANS_TABLES not supported for App Suite 8 on mariadb 10.11"),
    ("only_full_group_by on mariadb", {"database": {"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera",
                                                    "tuning": {"sqlMode": "ONLY_FULL_GROUP_BY"}}},
     "database.tuning.sqlMode", "ONLY_FULL_GROUP_BY not supported"),
    ("app suite too old for mariadb 10.11", {"versions": {"appsuite": "7.8.4"}},
     "versions.appsuite", "App Suite 7.8.4 is not supported on mariadb 10.11"),
    ("unknown host reference", {"filestore": {"server": "nfs9"}},
     "filestore.server", "unknown host 'nfs9'"),
    ("two db servers on one host", {"database": {"galera": {"nodes": ["db1", "db2", "db3"]},
                                                 "standalone": {"host": "db1"}, "configdb": "galera"}},
     "database.standalone.host", "already holds a database server"),
    ("configdb names an absent topology", {"database": {"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "gtid"}},
     "database.configdb", "'gtid' is named but database.gtid is not configured"),
    ("static host without address", {"hosts": [{"name": "db1"}], "database": None, "middleware": None,
                                     "filestore": None, "frontend": None},
     "hosts[0].address", "static host 'db1' needs an address"),
    ("typo in a key", {"middleware": {"nodes": [{"host": "mw1", "jkroute": "OX1"}], "clustername": "x"}},
     "middleware.clustername", "Extra inputs are not permitted"),
    ("unknown top-level key", {"databse": {}},
     "databse", "unknown key"),
    ("drained is not a boolean", {"middleware": {"nodes": [{"host": "mw1", "jkroute": "OX1", "drained": "yes"},
                                                           {"host": "mw2", "jkroute": "OX2"}]}},
     "middleware.nodes[0].drained", "true or false is expected"),
    ("every backend drained", {"middleware": {"nodes": [{"host": "mw1", "jkroute": "OX1", "drained": True},
                                                        {"host": "mw2", "jkroute": "OX2", "drained": "true"}]}},
     "middleware.nodes", "every backend node is drained"),
    ("a drained provisioning node", {"middleware": {"nodes": [
        {"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "PROV", "role": "provisioning", "drained": True}]}},
     "middleware.nodes[1].drained", "a provisioning node cannot be drained"),
]


@pytest.mark.parametrize("case,overrides,path,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_key(stack_config, case, overrides, path, words):
    """The error names the key path the operator must fix, in Pulumi's --path syntax."""
    with pytest.raises(ConfigError) as err:
        parse(stack_config(**overrides), SECRET)
    assert f"ox-estate:{path}: " in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize("case,overrides,path,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_registers_nothing(stack_config, case, overrides, path, words):
    """The program fails before registering any resource: only the root stack exists."""
    recording = None
    with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        recording = run_program(stack_config(**overrides), SECRET)
    assert recording is None or recording.non_stack == []
    # The harness recorded into a Recording the program never returned; check the monitor side too.
    from pulumi.runtime.settings import SETTINGS
    registered = [urn for urn in SETTINGS.monitor.resources if "pulumi:pulumi:Stack" not in urn]
    assert registered == []


def test_plain_text_password_is_refused(stack_config):
    """A password set without --secret would sit in the stack file in clear text."""
    with pytest.raises(ConfigError, match=r"ox-estate:mysqlRootPassword: holds a secret but is stored in plain text"):
        parse(stack_config(mysqlRootPassword="hunter2hunter2"), SECRET)


def test_every_problem_is_reported_at_once(stack_config):
    """An operator fixes the whole file in one go rather than one error per run."""
    cfg = stack_config(middleware={"nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX1"}]},
                       filestore={"server": "nfs9"})
    with pytest.raises(ConfigError) as err:
        parse(cfg, SECRET)
    paths = [p for p, _ in err.value.problems]
    assert "middleware.nodes[1].jkroute" in paths and "filestore.server" in paths


# The stack files in stacks/ are validated through config.load(), as the CLI passes them, in
# tests/unit/test_reference_stacks.py.


def test_valid_config_defaults(stack_config):
    cfg = parse(stack_config(), SECRET)
    assert cfg.versions.database.version == "10.11"
    assert cfg.sql_mode == "NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
    assert cfg.database.tuning.durability == "ox"
    assert cfg.roles_of("db1") == {config.Role.DB}
    assert cfg.middleware.nodes[1].jkroute == "OX2"


def test_colocated_frontend_gives_backends_the_web_role(stack_config):
    cfg = parse(stack_config(frontend={"mode": "colocated"}), SECRET)
    assert cfg.roles_of("mw1") == {config.Role.MW, config.Role.WEB}


def test_valid_sql_mode_subset_is_accepted(stack_config):
    cfg = parse(stack_config(database={"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera",
                                       "tuning": {"sqlMode": "NO_ENGINE_SUBSTITUTION"}}), SECRET)
    assert cfg.sql_mode == "NO_ENGINE_SUBSTITUTION"


# --- the catalogue (tests/unit/config_catalogue.py) ----------------------------------------

from config_catalogue import CATALOGUE, DROP, edited  # noqa: E402
from conftest import BASE_CONFIG  # noqa: E402


def _catalogue_config(ssh_key: str, case: str, edits: dict) -> tuple[dict, set[str]]:
    cfg = edited({**BASE_CONFIG, "sshPrivateKey": ssh_key}, edits)
    # Secrets are set with --secret, except in the cases about plain text.
    secret_keys = SECRET if "plaintext" in case else SECRET | set(config.SECRET_KEYS)
    return cfg, secret_keys


def _named(problems: list[tuple[str, str]], path: str, words: str) -> bool:
    return any(p.startswith(path) and words in m for p, m in problems)


def test_the_catalogue_is_large_and_varied():
    """At least 120 invalid configs, each with its own name, covering every top-level section."""
    assert len(CATALOGUE) >= 120
    assert len({case for case, *_ in CATALOGUE}) == len(CATALOGUE)
    sections = {path.split(".")[0].split("[")[0] for _, _, path, _ in CATALOGUE}
    assert {"hosts", "ssh", "aws", "versions", "database", "middleware", "frontend", "filestore", "firewall",
            "converge", "secrets", "mysqlRootPassword", "oxRepositoryPassword", "documentConverter"} <= sections


@pytest.mark.parametrize("case,edits,path,words", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue_config_is_refused_naming_the_key(ssh_key, case, edits, path, words):
    """Refused by config.parse with the key path and the reason; the message stays short whatever
    the value (a 10 MB value is not echoed back)."""
    cfg, secret_keys = _catalogue_config(ssh_key, case, edits)
    with pytest.raises(ConfigError) as err:
        parse(cfg, secret_keys)
    assert _named(err.value.problems, path, words), err.value.problems
    assert len(str(err.value)) < 4000


@pytest.mark.parametrize("case,edits,path,words", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue_config_registers_nothing(ssh_key, case, edits, path, words):
    """Through the whole program (config as the CLI passes it, JSON text): the same error, and
    no resource registered, not even a random password."""
    cfg, secret_keys = _catalogue_config(ssh_key, case, edits)
    recording = None
    with pytest.raises(ConfigError) as err:
        recording = run_program(cfg, secret_keys)
    assert recording is None
    assert _named(err.value.problems, path, words), err.value.problems
    from pulumi.runtime.settings import SETTINGS
    assert [urn for urn in SETTINGS.monitor.resources if "pulumi:pulumi:Stack" not in urn] == []


VALID_CONTROLS = [
    ("the base config", {}),
    ("a first context with mappings", {"middleware.firstContext": {"contextId": 7, "name": "ctx.1",
                                                                   "adminEmail": "ops+ox@mail.example.com",
                                                                   "mappings": ["example.com", "ox@example.com"]}}),
    ("master-master with default domains", {"database.gtid.mode": "master-master"}),
    ("master-master with the master on domain 2", {"database.gtid.mode": "master-master",
                                                   "database.gtid.master.gtidDomainId": 2}),
    ("numbers as text, as the CLI passes plain values", {"database.gtid.master.serverId": "41", "ssh.port": "2222"}),
    ("booleans as text", {"firewall.enabled": "false", "firewall.sshFrom": DROP}),
    ("a filestore under /srv", {"filestore.exportPath": "/srv/ox/filestore", "filestore.mountPath": "/srv/ox/fs"}),
    ("a bastion by DNS name", {"ssh.bastion": {"address": "jump-1.ops.example.com", "user": "deploy", "port": 2222}}),
    ("OX's repository", {"middleware.packageSource": "repository", "oxRepositoryPassword": "s3cr3t!\"'$`\\",
                         "middleware.repositoryUrl": "https://software.example.com/products/appsuite/stable/backend/",
                         "middleware.repositoryUser": "customer-1"}),
    ("passwords with shell and SQL metacharacters", {"mysqlRootPassword": "a'b\"c$(d)`e`\\f;g%h",
                                                      "configdbPassword": "OX_EOF", "sstPassword": " spaced out "}),
    ("an sql_mode subset, spaced", {"database.tuning.sqlMode": " no_engine_substitution "}),
    ("aws with an existing VPC", {"provider": "aws", "aws": {"adminCidr": "198.51.100.0/24", "vpcId": "vpc-0a1b2c3d",
                                                             "subnetIds": ["subnet-0a1b2c3d"]}, "firewall": DROP,
                                  "hosts": [{"name": h["name"]} for h in BASE_CONFIG["hosts"]]}),
    ("one host on loopback", {"hosts": [{"name": "ox", "address": "127.0.0.1"}], "database": DROP,
                              "middleware": DROP, "filestore": DROP, "frontend": DROP}),
    ("1,000 hosts", {"hosts": [{"name": f"h{i}", "address": f"10.{i // 250}.{i % 250}.1"} for i in range(1000)],
                     "database": DROP, "middleware": DROP, "filestore": DROP, "frontend": DROP}),
]


@pytest.mark.parametrize("case,edits", VALID_CONTROLS, ids=[c[0] for c in VALID_CONTROLS])
def test_valid_controls_are_accepted(ssh_key, case, edits):
    """The rules refuse what is unsafe, not what operators legitimately write."""
    cfg, secret_keys = _catalogue_config(ssh_key, case, edits)
    parsed = parse(cfg, secret_keys)
    assert parsed.hosts


def test_numbers_as_text_become_numbers_and_sql_mode_is_normalized(ssh_key):
    cfg, keys = _catalogue_config(ssh_key, "", {"database.gtid.master.serverId": "41",
                                                "database.tuning.sqlMode": " no_engine_substitution "})
    parsed = parse(cfg, keys)
    assert parsed.database.gtid.master.server_id == 41
    assert parsed.sql_mode == "NO_ENGINE_SUBSTITUTION"


def test_master_master_defaults_never_collide(ssh_key):
    """The second master's default domain steps aside when the master took 2."""
    for master, expected in ((None, (1, 2)), (2, (2, 3)), (5, (5, 2))):
        edits = {"database.gtid.mode": "master-master"}
        if master is not None:
            edits["database.gtid.master.gtidDomainId"] = master
        gtid = parse(*_catalogue_config(ssh_key, "", edits)).database.gtid
        assert (gtid.domain_of(gtid.master), gtid.domain_of(gtid.slave)) == expected


def test_json_nested_past_the_parser_is_an_error_not_a_crash(ssh_key):
    """Structured config arrives as JSON text; 100,000 levels would raise RecursionError in json."""
    import pulumi

    from harness import to_pulumi_config

    values, secret = to_pulumi_config({**BASE_CONFIG, "sshPrivateKey": ssh_key}, SECRET)
    values["ox-estate:database"] = "[" * 100_000 + "]" * 100_000
    pulumi.runtime.set_all_config(values, secret)
    with pytest.raises(ConfigError, match=r"ox-estate:database: nested deeper than"):
        config.load()

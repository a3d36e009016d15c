"""The stack files in stacks/: each loads through the program's own config path, and the reference
stacks (poc, he-1m, onprem: README "Reference stacks") build the whole estate their layout implies.

Every stack file is handed to `config.load()` as the Pulumi CLI hands it to `__main__.py`: every
key namespaced, objects as JSON text, plain values as text, and the secrets its header comment
says to set (`pulumi config set --secret ox-estate:<key>`) marked secret. So a reference stack's
header names every secret it cannot deploy without, and no file holds a secret in plain text.

The reference stacks then run through the real `__main__.py` under mocks (tests/harness.py), and
the recorded graph is checked tier by tier against the layout below; the total resource count of
each is printed (`pytest -s`).
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field

import pulumi
import pytest
import yaml

from components.core import config
from components.core.ports import ADMIN_NETWORKS, DB_CLIENTS, PORT_RULES
from harness import ROOT, Recording, run_program, script_of, unwrap

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
REFERENCE = ["poc", "he-1m", "onprem"]
# The secrets generated with pulumi_random when not set (the SSH key and repository password never are).
GENERATED = set(config.SECRET_KEYS) - {"sshPrivateKey", "oxRepositoryPassword"}
SECRET_LINE = re.compile(r"^#.*pulumi config set --secret ox-estate:(\w+)", re.M)


def _stack_file(stack: str) -> tuple[str, dict]:
    text = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    return text, yaml.safe_load(text)["config"]


def _documented_secrets(stack: str, ssh_key: str) -> dict[str, str]:
    """The secrets the file's comments tell the operator to set, with stand-in values. The SSH key
    always: the lab stacks' runner passes its own (their headers say so)."""
    text, _ = _stack_file(stack)
    return {"sshPrivateKey": ssh_key,
            **{k: f"Stand-in-{k}-7f3a" for k in SECRET_LINE.findall(text) if k != "sshPrivateKey"}}


def _cli_config(stack: str, ssh_key: str) -> tuple[dict[str, str], list[str]]:
    """The stack's config as the CLI passes it to the program (every namespace, the secrets decrypted)."""
    _, raw = _stack_file(stack)
    secrets = {f"ox-estate:{k}": v for k, v in _documented_secrets(stack, ssh_key).items()}
    values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in {**raw, **secrets}.items()}
    return values, sorted(secrets)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_file_loads_through_the_programs_config_path(stack, ssh_key):
    """Every stack file (reference, example and lab stacks) validates through `config.load()`,
    the call `__main__.py` makes, with only the secrets its comments say to set (and the SSH key,
    which the lab runner passes to the lab stacks)."""
    text, raw = _stack_file(stack)
    assert not {k.partition(":")[2] for k in raw} & set(config.SECRET_KEYS), "a secret in plain text"
    pulumi.runtime.set_all_config(*_cli_config(stack, ssh_key))
    try:
        cfg = config.load()
    finally:
        pulumi.runtime.set_all_config({}, [])
    assert cfg.hosts
    if stack in REFERENCE:
        assert "sshPrivateKey" in SECRET_LINE.findall(text), "the header must say how to set the SSH key"


# --- the reference stacks' layouts ---------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    provider: str
    hosts: list[str]
    middleware: list[str]  # in config order; the first runs initconfigdb
    web: list[str]  # the hosts Apache runs on
    nfs: str
    userdbs: list[tuple[str, bool]]  # (OX's name for it, registered with a read instance)
    admin_host: str  # where the registration chain runs: the provisioning node, else the first node
    galera: list[str] = field(default_factory=list)
    gtid: list[str] = field(default_factory=list)
    standalone: str | None = None
    floating: dict[str, list[str]] = field(default_factory=dict)  # group -> its keepalived peers
    admin_networks: int = 1


HE_HOSTS = ["cdb1", "cdb2", "cdb3", "udb1", "udb2", "ox1", "ox2", "ox3", "oxprov", "nfs1", "web1", "web2"]
HE = dict(hosts=HE_HOSTS, middleware=["ox1", "ox2", "ox3", "oxprov"], web=["web1", "web2"], nfs="nfs1",
          userdbs=[("oxdb_gtid", True)], admin_host="oxprov", galera=["cdb1", "cdb2", "cdb3"], gtid=["udb1", "udb2"])
LAYOUTS = {
    "poc": Layout(provider="static", hosts=["ox1"], middleware=["ox1"], web=["ox1"], nfs="ox1",
                  userdbs=[("oxdb_standalone", False)], admin_host="ox1", standalone="ox1"),
    "he-1m": Layout(provider="aws", **HE),
    "onprem": Layout(provider="static", floating={"gtid": ["udb1", "udb2"], "web": ["web1", "web2"]}, **HE),
}


@functools.cache
def _built(stack: str, ssh_key: str) -> Recording:
    """The whole program run once per reference stack (the recording is plain data), with only the
    secrets nothing can generate set, as a first deploy has them: every password is generated."""
    _, raw = _stack_file(stack)
    values = {k.partition(":")[2]: v for k, v in raw.items() if k.startswith("ox-estate:")}
    secrets = {k: v for k, v in _documented_secrets(stack, ssh_key).items() if k not in GENERATED}
    return run_program({**values, **secrets}, set(secrets))


def _steps(r: Recording, pattern: str) -> list[str]:
    """Command step names matching `pattern` in full."""
    return sorted(x.name for x in r.of_type("command:remote:Command") if re.fullmatch(pattern, x.name))


def _expected_types(stack: str, layout: Layout) -> dict[str, int]:
    """The resources the layout implies, by type (the commands are checked tier by tier instead)."""
    static = layout.provider == "static"
    expected = {
        "pulumi:pulumi:Stack": 1, "ox-estate:index:Estate": 1, "ox-estate:host:Baseline": 1,
        "ox-estate:hosts:HostFirewall": int(static), "ox-estate:hosts:AwsHosts": int(not static),
        "ox-estate:db:GaleraCluster": int(bool(layout.galera)), "ox-estate:db:ReadWriteSplit": int(bool(layout.galera)),
        "ox-estate:db:GtidPair": int(bool(layout.gtid)), "ox-estate:db:StandaloneDb": int(bool(layout.standalone)),
        "ox-estate:mw:OXMiddlewareGroup": 1, "ox-estate:mw:MiddlewareRestarts": 1, "ox-estate:mw:Registration": 1,
        "ox-estate:fs:NfsFilestore": 1, "ox-estate:web:ApacheFrontend": 1,
        "ox-estate:net:FloatingAddress": len(layout.floating),
        # the stack passwords not set in config (components/core/secrets.py), one VRRP password per
        # floating address
        "random:index/randomPassword:RandomPassword": len(GENERATED) + len(layout.floating),
    }
    if not static:
        subnets = len(_stack_file(stack)[1]["ox-estate:aws"]["subnetCidrs"])
        # A rule per network for the networks' rows (no database.clients in a reference stack).
        per_network = {ADMIN_NETWORKS: layout.admin_networks, DB_CLIENTS: 0}
        ingress = sum(per_network.get(rule.source, 1) for rule in PORT_RULES)
        expected.update({
            "aws:ec2/instance:Instance": len(layout.hosts), "aws:ec2/keyPair:KeyPair": 1, "aws:ec2/vpc:Vpc": 1,
            "aws:ec2/internetGateway:InternetGateway": 1, "aws:ec2/routeTable:RouteTable": 1,
            "aws:ec2/subnet:Subnet": subnets, "aws:ec2/routeTableAssociation:RouteTableAssociation": subnets,
            # One per role, used or not (dc: document converters, none here), and admin.
            "aws:ec2/securityGroup:SecurityGroup": 6,  # db, mw, web, nfs, dc, admin
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 6,
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ingress,
        })
    return {t: n for t, n in expected.items() if n}


@pytest.mark.parametrize("stack", REFERENCE)
def test_reference_stack_builds_the_estate_its_layout_implies(stack, ssh_key):
    layout, r = LAYOUTS[stack], _built(stack, ssh_key)
    counts = Counter(x.type for x in r.registrations)
    commands = counts.pop("command:remote:Command")
    print(f"\n{stack}: {len(r.registrations)} resources ({commands} remote commands): "
          + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    assert dict(counts) == _expected_types(stack, layout)

    hosts = layout.hosts
    assert _steps(r, r"(.+)-facts") == sorted(f"{h}-facts" for h in hosts)
    assert _steps(r, r"ox-firewall-(.+)-nftables") == \
        (sorted(f"ox-firewall-{h}-nftables" for h in hosts) if layout.provider == "static" else [])

    # Databases: Galera's bootstrap and serial joins, the GTID pair (both replicate: master-master),
    # or the standalone server; HAProxy on every OX node in front of Galera.
    assert _steps(r, r"ox-galera-(.+)-verify") == sorted(f"ox-galera-{h}-verify" for h in layout.galera)
    assert _steps(r, r"ox-galera-(.+)-bootstrap") == [f"ox-galera-{h}-bootstrap" for h in layout.galera[:1]]
    assert _steps(r, r"ox-galera-(.+)-join") == sorted(f"ox-galera-{h}-join" for h in layout.galera[1:])
    assert _steps(r, r"ox-dbproxy-(.+)-haproxy") == \
        (sorted(f"ox-dbproxy-{h}-haproxy" for h in layout.middleware) if layout.galera else [])
    for phase in ("install", "configure", "start", "replica"):
        assert _steps(r, rf"ox-gtid-(.+)-{phase}") == sorted(f"ox-gtid-{h}-{phase}" for h in layout.gtid)
    assert _steps(r, r"ox-standalone-(.+)-start") == \
        ([f"ox-standalone-{layout.standalone}-start"] if layout.standalone else [])

    # Middleware: every node configured, the configdb initialized once, one restart step each.
    assert _steps(r, r"ox-mw-(.+)-configure") == sorted(f"ox-mw-{h}-configure" for h in layout.middleware)
    assert _steps(r, r"ox-mw-(.+)-initconfigdb") == [f"ox-mw-{layout.middleware[0]}-initconfigdb"]
    assert _steps(r, r"ox-mwroll-(.+)-restart") == sorted(f"ox-mwroll-{h}-restart" for h in layout.middleware)
    # OX's one replication monitor switch: on when it reads a GTID userdb from its lagging slave.
    monitor = "true" if layout.gtid else "false"
    assert f"com.openexchange.database.replicationMonitor={monitor}" in \
        script_of(r.named(f"ox-mw-{layout.middleware[0]}-configure"))

    # The filestore: exported by its server, present on every OX node.
    assert _steps(r, r"ox-fs-(.+)-export") == [f"ox-fs-{layout.nfs}-export"]
    assert _steps(r, r"ox-fs-(.+)-mount") == sorted(f"ox-fs-{h}-mount" for h in layout.middleware)

    # Apache on each frontend host.
    for phase in ("install", "configure", "start", "check"):
        assert _steps(r, rf"ox-web-(.+)-{phase}") == sorted(f"ox-web-{h}-{phase}" for h in layout.web)

    # keepalived on each floating address's peers, and nowhere else.
    peers = sorted(f"ox-{g}-vip-{h}-keepalived" for g, hs in layout.floating.items() for h in hs)
    assert _steps(r, r".+-keepalived") == peers

    _check_registration_chain(r, layout)


def _check_registration_chain(r: Recording, layout: Layout) -> None:
    """registerserver -> registerfilestore -> registerdatabase master -> its slave (-M <the master's
    printed id>) -> createcontext, each waiting for the one before, all on the admin host."""
    chain = ["ox-registration-server", "ox-registration-filestore"]
    for name, has_read in layout.userdbs:
        chain.append(f"ox-registration-database-{name.replace('_', '-')}")
        if has_read:
            chain.append(f"ox-registration-database-{name.replace('_', '-')}-read")
    chain.append("ox-registration-context")
    assert _steps(r, r"ox-registration-.+") == sorted(chain)
    for before, after in zip(chain, chain[1:]):
        assert r.named(before).urn in r.named(after).dependencies, (before, after)

    ids = r.outputs["registeredDatabaseIds"]
    for name, has_read in layout.userdbs:
        master = script_of(r.named(f"ox-registration-database-{name.replace('_', '-')}"))
        assert "-m true" in master
        if has_read:
            slave = r.named(f"ox-registration-database-{name.replace('_', '-')}-read")
            assert f"-m false -M {ids[name]}" in script_of(slave)  # the id the master's step printed
    assert r.outputs["serverId"] == 1 and r.outputs["filestoreId"] == 2 and r.outputs["contextId"] == 1

    admin = unwrap(r.named(f"ox-mw-{layout.admin_host}-configure").inputs["connection"])["host"]
    for step in chain:
        assert unwrap(r.named(step).inputs["connection"])["host"] == admin, step


# --- what each reference stack adds --------------------------------------------------------


def test_he_1m_has_an_ec2_instance_per_host_sized_by_role(ssh_key):
    r = _built("he-1m", ssh_key)
    instances = {x.name.removeprefix("hosts-"): x.inputs for x in r.of_type("aws:ec2/instance:Instance")}
    assert sorted(instances) == sorted(HE_HOSTS)
    types = {h: i["instanceType"] for h, i in instances.items()}
    assert types == {"cdb1": "m6i.large", "cdb2": "m6i.large", "cdb3": "m6i.large",
                     "udb1": "m6i.2xlarge", "udb2": "m6i.2xlarge", "ox1": "m6i.2xlarge", "ox2": "m6i.2xlarge",
                     "ox3": "m6i.2xlarge", "oxprov": "m6i.xlarge", "nfs1": "m6i.large",
                     "web1": "c6i.large", "web2": "c6i.large"}
    assert {h: i["tags"]["Name"] for h, i in instances.items()} == {h: h for h in HE_HOSTS}
    assert all(i["rootBlockDevice"]["volumeSize"] == 200 for i in instances.values())
    # No floating address on AWS: OX writes to the first master and reads from the second.
    assert r.outputs["gtidMasterAddress"] in script_of(r.named("ox-registration-database-oxdb-gtid"))
    assert r.outputs["gtidSlaveAddress"] in script_of(r.named("ox-registration-database-oxdb-gtid-read"))
    assert "gtidFloatingAddress" not in r.outputs and "frontendFloatingUrl" not in r.outputs


@pytest.mark.parametrize("stack", ["he-1m", "onprem"])
def test_the_provisioning_node_gets_no_users(stack, ssh_key):
    r = _built(stack, ssh_key)
    assert r.outputs["middlewareBackends"] == {"ox1": "OX1", "ox2": "OX2", "ox3": "OX3"}
    for web in ("web1", "web2"):
        site = script_of(r.named(f"ox-web-{web}-configure"))
        assert all(f"route={n}" in site for n in ("OX1", "OX2", "OX3")) and "OXPROV" not in site


def test_onprem_goes_through_the_bastion_and_floats_both_addresses(ssh_key):
    r = _built("onprem", ssh_key)
    for step in r.of_type("command:remote:Command"):
        proxy = unwrap(step.inputs["connection"])["proxy"]
        assert (proxy["host"], proxy["user"]) == ("bastion.example.net", "jump"), step.name
    # OX registers the pair's floating address as the userdb's write instance, the second master to read.
    assert "-H 10.30.0.100 " in script_of(r.named("ox-registration-database-oxdb-gtid"))
    assert "-H 10.30.0.15 " in script_of(r.named("ox-registration-database-oxdb-gtid-read"))
    assert r.outputs["gtidFloatingAddress"] == "10.30.0.100"
    assert r.outputs["frontendFloatingUrl"] == "http://10.30.0.200/appsuite/"
    # The configdb is Galera's, through each OX node's HAProxy.
    assert r.outputs["configdbWriteHost"] == "127.0.0.1:3307"


def test_poc_keeps_the_filestore_on_its_one_host(ssh_key):
    """The model has no local filestore: the host exports it to itself and OX uses the directory
    as it is ("preprovisioned"), never mounting its own export over it."""
    r = _built("poc", ssh_key)
    mount = script_of(r.named("ox-fs-ox1-mount"))
    assert "/etc/fstab" not in mount and "[ -d /var/opt/filestore ]" in mount
    assert "-H 192.0.2.10 " in script_of(r.named("ox-registration-database-oxdb-standalone"))
    assert r.outputs["frontendUrls"] and r.outputs["middlewareBackends"] == {"ox1": "OX1"}

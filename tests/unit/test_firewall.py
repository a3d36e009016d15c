"""The static hosts' firewall: the rendered rules admit each port only from its peers, the wiring
puts every step behind every host's firewall, and the step refuses to lock its deployer out.

The script tests run the real step with the real nft in a private network and mount namespace
(a fresh netns has only loopback; /etc and /var are overlays), so this machine is untouched.
"""

import os
import shutil
import subprocess

import pytest

from components.core.config import Role, parse
from components.core.firewall import admin_cidrs, host_rules, ruleset_values
from components.core.ports import ADMIN, ADMIN_NETWORKS, ANYWHERE, DB_CLIENTS, PORT_RULES
from components.core.remote import CONVERGING, command_line, render_step
from components.core.render import render
from harness import run_program, script_of, unwrap

SECRET = {"sshPrivateKey"}
ADMIN_NET = "203.0.113.0/24"  # BASE_CONFIG's firewall.sshFrom


def _values(stack_config, host: str, **overrides) -> dict:
    cfg = parse(stack_config(**overrides), SECRET)
    addresses = {h.name: h.address for h in cfg.hosts}
    roles = {h.name: cfg.roles_of(h.name) for h in cfg.hosts}
    admin = admin_cidrs([str(n) for n in cfg.firewall.ssh_from], cfg.ssh.bastion.address if cfg.ssh.bastion else None)
    networks = [str(n) for n in cfg.frontend.admin_networks] if cfg.frontend else []
    clients = [str(n) for n in cfg.database.clients] if cfg.database else []
    return ruleset_values(host, roles[host], addresses, roles, cfg.ssh.port, admin, networks, clients)


def _admitted(values: dict) -> dict[tuple[str, str], list[str] | None]:
    """(proto, ports) -> the addresses and networks admitted (None: anyone), from rendered values."""
    admitted: dict[tuple[str, str], list[str] | None] = {}
    for r in values["rules"]:
        port = (r["proto"], r["ports"])
        admitted[port] = None if r["set"] is None else sorted({*(admitted.get(port) or []), *values["sets"][r["set"]]})
    return admitted


def test_each_role_opens_its_ports_only_to_its_peers(stack_config):
    """db: MariaDB from OX and the DB hosts, Galera ports from DB hosts, clustercheck from OX and
    the other DB hosts;
    mw: Hazelcast from OX, 8009 from the web hosts; nfs: 2049 from OX; web: 80/443 from anyone,
    the admin listener from frontend.adminNetworks; VRRP (keepalived) among db hosts and among
    web hosts. SSH everywhere from firewall.sshFrom only."""
    db_hosts = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "10.0.0.15"]
    mw_hosts = ["10.0.0.21", "10.0.0.22"]
    assert _admitted(_values(stack_config, "db1")) == {
        ("tcp", "3306"): sorted(db_hosts + mw_hosts), ("tcp", "4444"): db_hosts, ("tcp", "4567"): db_hosts,
        ("udp", "4567"): db_hosts, ("tcp", "4568"): db_hosts, ("tcp", "9200"): sorted(db_hosts + mw_hosts), ("vrrp", "0"): db_hosts,
        ("tcp", "22"): [ADMIN_NET]}
    assert _admitted(_values(stack_config, "mw1")) == {
        ("tcp", "5701"): mw_hosts, ("tcp", "8009"): ["10.0.0.41"], ("tcp", "22"): [ADMIN_NET]}
    assert _admitted(_values(stack_config, "nfs1")) == {("tcp", "2049"): mw_hosts, ("tcp", "22"): [ADMIN_NET]}
    assert _admitted(_values(stack_config, "web1")) == {
        ("tcp", "80"): None, ("tcp", "443"): None, ("tcp", "8088"): ["10.0.0.0/24"], ("vrrp", "0"): ["10.0.0.41"],
        ("tcp", "22"): [ADMIN_NET]}


def test_colocated_frontends_admit_8009_from_the_other_backends(stack_config):
    """Apache on each backend OX host balances over all of them, so 8009 comes from mw hosts."""
    values = _values(stack_config, "mw1", frontend={"mode": "colocated", "adminNetworks": ["10.0.0.0/24"]})
    assert _admitted(values)[("tcp", "8009")] == ["10.0.0.21", "10.0.0.22"]
    assert _admitted(values)[("tcp", "80")] is None


def test_ssh_only_from_ssh_from_and_the_bastion_on_its_configured_port(stack_config):
    values = _values(stack_config, "nfs1", ssh={"user": "root", "port": 2222, "bastion": {"address": "198.51.100.7"}})
    assert [r for r in values["rules"] if r["set"] == "from_admin"] == [
        {"key": "admin-tcp2222-from-admin", "proto": "tcp", "ports": "2222", "set": "from_admin"}]
    assert values["sets"]["from_admin"] == [ADMIN_NET, "198.51.100.7/32"]


def test_a_source_without_hosts_admits_nobody(stack_config):
    """No web host (no frontend): 8009 is not opened to anyone, and the ruleset says so."""
    values = _values(stack_config, "mw1", frontend=None)
    assert ("tcp", "8009") not in _admitted(values)
    assert values["closed"] == ["mw-tcp8009-from-web"]
    assert "# mw-tcp8009-from-web: no host has its source role, so nobody" in render("files/ox-estate.nft.j2", **values)


def test_rendered_ruleset_drops_by_default_and_names_each_row(stack_config):
    text = render("files/ox-estate.nft.j2", **_values(stack_config, "db1"))
    assert "type filter hook input priority filter; policy drop;" in text
    assert "table inet ox_estate\ndelete table inet ox_estate\ntable inet ox_estate {" in text  # one table, replaced
    assert "flush ruleset" not in text
    assert "tcp dport 9200 ip saddr @from_mw accept comment \"db-tcp9200-from-mw\"" in text
    assert "elements = { 10.0.0.21, 10.0.0.22 }" in text


def test_every_table_row_reaches_the_hosts_of_its_role(stack_config):
    """The table is the single source: each row is on every host in its destination role."""
    cfg = parse(stack_config(), SECRET)
    for h in cfg.hosts:
        keys = {r.key for r in host_rules(cfg.roles_of(h.name))}
        assert keys == {r.key for r in PORT_RULES if r.to == ADMIN or r.to in cfg.roles_of(h.name)}
    assert {r.source for r in PORT_RULES} <= {*Role, ADMIN, ADMIN_NETWORKS, DB_CLIENTS, ANYWHERE}


def test_database_clients_reach_mariadb_and_clustercheck_only(stack_config):
    """database.clients (another stack's middleware) may reach 3306 and 9200 on the DB hosts, and
    nothing else; unset, the rows are not there at all (not even as closed), so a stack that
    serves no other stack keeps its ruleset as it was."""
    base = stack_config()
    served = _values(stack_config, "db1", database={**base["database"], "clients": ["198.51.100.0/28"]})
    assert served["sets"]["from_db_clients"] == ["198.51.100.0/28"]
    assert sorted((r["proto"], r["ports"]) for r in served["rules"] if r["set"] == "from_db_clients") == [
        ("tcp", "3306"), ("tcp", "9200")]
    assert "198.51.100.0/28" not in str(_values(stack_config, "mw1", database={**base["database"],
                                                                                "clients": ["198.51.100.0/28"]}))
    plain = _values(stack_config, "db1")
    assert "from_db_clients" not in plain["sets"] and not [k for k in plain["closed"] if "dbClients" in k]


# --- wiring under mocks ------------------------------------------------------------------------


def test_every_step_waits_for_every_hosts_firewall(stack_config):
    """A fresh host is closed before any service listens, and an added host's peers admit it
    before its first step talks to them."""
    recording = run_program(stack_config(), SECRET)
    commands = recording.of_type("command:remote:Command")
    firewalls = {r.urn for r in commands if r.name.startswith("ox-firewall-") and r.name.endswith("-nftables")}
    assert sorted(r.name for r in commands if r.urn in firewalls) == sorted(
        f"ox-firewall-{h}-nftables" for h in ("db1", "db2", "db3", "db4", "db5", "mw1", "mw2", "nfs1", "web1"))
    (component,) = recording.of_type("ox-estate:hosts:HostFirewall")
    assert all(r.parent == component.urn for r in commands if r.urn in firewalls)
    for r in commands:
        if r.urn not in firewalls:  # through the waypoint ox-firewall-ready: not one dependency per host
            assert firewalls <= recording.waits_for(r.name), r.name
            assert not firewalls & set(r.dependencies) or r.name == "ox-firewall-ready", r.name
    step = recording.named("ox-firewall-db1-nftables")
    assert "nft delete table inet ox_estate" in script_of(step, "delete")
    assert "firewall.sh.j2" in CONVERGING  # a re-run loads a flushed or edited table again


def test_no_firewall_on_aws_or_when_disabled(stack_config):
    aws = {"provider": "aws", "aws": {"adminCidr": "203.0.113.0/24"}, "firewall": None,
           "hosts": [{"name": n} for n in ("db1", "db2", "db3", "db4", "db5", "mw1", "mw2", "nfs1", "web1")]}
    for overrides in (aws, {"firewall": {"enabled": False}}):
        recording = run_program(stack_config(**overrides), SECRET)
        assert not recording.of_type("ox-estate:hosts:HostFirewall")
        assert not [r for r in recording.of_type("command:remote:Command") if "nftables" in r.name]


def test_a_bastion_known_by_name_is_resolved_on_the_host(stack_config):
    recording = run_program(stack_config(ssh={"user": "root", "bastion": {"address": "jump.example.net"}}), SECRET)
    script = script_of(recording.named("ox-firewall-web1-nftables"))
    assert "getent ahostsv4 jump.example.net" in script
    assert "admin=(203.0.113.0/24 )" in script


# --- the step itself, with the real nft in a private namespace ---------------------------------

requires_root_nft = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft"),
                                       reason="needs root, unshare and nft (a private network namespace)")


def _step(stack_config, template: str = "firewall.sh.j2") -> str:
    values = _values(stack_config, "db1")
    return render_step("ox-firewall-db1-nftables", "db1", template, {
        "ruleset": render("files/ox-estate.nft.j2", **values), "admin": [ADMIN_NET], "ssh_port": 22,
        "bastion_name": "", "unit": render("files/ox-estate-firewall.service.j2")})


class Sandbox:
    """One private network namespace (loopback only) with overlays over /etc and /var, kept by
    a sleeping holder process so that several runs see the same ruleset and files."""

    def __init__(self, tmp_path):
        for d in ("etc", "etc-work", "var", "var-work"):
            (tmp_path / d).mkdir()
        mounts = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={tmp_path}/etc,workdir={tmp_path}/etc-work /etc"
                  f" && mount -t overlay overlay -o lowerdir=/var,upperdir={tmp_path}/var,workdir={tmp_path}/var-work /var")
        self.holder = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
                                        f"{mounts} && exec sleep 300"])
        self.etc = tmp_path / "etc"

    def run(self, command: list[str], ssh_client: str | None = "203.0.113.9 50123 22", **kw):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"} | ({"SSH_CLIENT": ssh_client} if ssh_client else {})
        argv = ["nsenter", "-t", str(self.holder.pid), "--net", "--mount", *command]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kw)

    def step(self, script: str, **kw):
        return self.run(["sh", "-c", command_line("ox-firewall-db1-nftables", script)], **kw)

    def close(self):
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def sandbox(tmp_path):
    box = Sandbox(tmp_path)
    for _ in range(100):  # bounded: the holder mounts, then sleeps
        if box.run(["mountpoint", "-q", "/var"], ssh_client=None).returncode == 0:
            break
        subprocess.run(["sleep", "0.05"])
    yield box
    box.close()


@requires_root_nft
def test_step_loads_once_then_changes_nothing_and_repairs_drift(stack_config, sandbox):
    script = _step(stack_config)
    first = sandbox.step(script)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("firewall db1 loaded: 10 port rules, ssh from 203.0.113.0/24")
    listing = sandbox.run(["nft", "list", "table", "inet", "ox_estate"]).stdout
    assert "policy drop" in listing and "@from_admin" in listing
    assert 'include "/etc/nftables.d/ox-estate.nft"' in (sandbox.etc / "nftables.conf").read_text()
    second = sandbox.step(script)
    assert second.returncode == 0 and second.stdout.startswith("firewall db1 unchanged"), second.stderr
    sandbox.run(["nft", "delete", "table", "inet", "ox_estate"])  # drift: someone removed it
    repaired = sandbox.step(script)
    assert repaired.stdout.startswith("firewall db1 loaded"), repaired.stderr
    assert sandbox.run(["nft", "list", "table", "inet", "ox_estate"]).stdout == listing
    undo = sandbox.step(_step(stack_config, "firewall-remove.sh.j2"))
    assert undo.returncode == 0 and undo.stdout == "firewall db1 removed\n", undo.stderr
    assert sandbox.run(["nft", "list", "table", "inet", "ox_estate"]).returncode != 0
    assert "ox-estate" not in (sandbox.etc / "nftables.conf").read_text()


@requires_root_nft
@pytest.mark.parametrize("ssh_client,why", [
    ("198.51.100.9 50123 22", "comes from 198.51.100.9 (port 22) and would be locked out"),
    ("203.0.113.9 50123 2222", "comes from 203.0.113.9 (port 2222)"),  # in via a port the ruleset does not open
    ("2001:db8::9 50123 22", "comes from 2001:db8::9"),  # IPv6: the ruleset admits IPv4 admin networks only
    (None, "SSH_CLIENT is not set"),
])
def test_step_refuses_a_ruleset_that_would_lock_out_the_deployer(stack_config, sandbox, ssh_client, why):
    """Nothing is loaded or written: the host stays as reachable as it was."""
    result = sandbox.step(_step(stack_config), ssh_client=ssh_client)
    assert result.returncode == 1
    assert "ox-estate: step ox-firewall-db1-nftables on db1: refused: " in result.stderr and why in result.stderr
    assert sandbox.run(["nft", "list", "ruleset"]).stdout == ""
    assert not (sandbox.etc / "nftables.d").exists()


@requires_root_nft
def test_step_admits_an_ipv4_mapped_deployer(stack_config, sandbox):
    result = sandbox.step(_step(stack_config), ssh_client="::ffff:203.0.113.200 50123 22")
    assert result.returncode == 0, result.stderr

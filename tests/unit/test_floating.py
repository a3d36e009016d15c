"""FloatingAddress wiring under mocks: keepalived for the GTID master-master pair and the frontends,
the VRRP secret on stdin only, the order of steps, and OX writing to the floating address."""

import base64

import pytest

from components.core.config import ConfigError, parse
from harness import is_secret, run_program, script_of, unwrap

SECRET = {"sshPrivateKey"}
HOSTS_TWO_WEB = [{"name": "web2", "address": "10.0.0.42"}]


def _config(stack_config, **extra):
    from conftest import BASE_CONFIG

    gtid = {**BASE_CONFIG["database"]["gtid"], "mode": "master-master", "floatingAddress": "10.0.0.100/24"}
    settings = {"hosts": BASE_CONFIG["hosts"] + HOSTS_TWO_WEB,
                "database": {**BASE_CONFIG["database"], "gtid": gtid, "configdb": "gtid"},
                "frontend": {"nodes": ["web1", "web2"], "adminNetworks": ["10.0.0.0/24"],
                             "floatingAddress": "10.0.0.200/24", "vrrpRouterId": 77}}
    return stack_config(**{**settings, **extra})


@pytest.fixture
def estate(stack_config):
    return run_program(_config(stack_config), SECRET)


def _deps(recording, name):
    return set(recording.named(name).dependencies)


def test_one_component_per_address_with_its_steps_as_children(estate):
    components = {r.name: r for r in estate.of_type("ox-estate:net:FloatingAddress")}
    assert set(components) == {"ox-gtid-vip", "ox-web-vip"}
    for name, hosts in (("ox-gtid-vip", ["db4", "db5"]), ("ox-web-vip", ["web1", "web2"])):
        urn = components[name].urn
        assert estate.named(f"{name}-vrrp-password").parent == urn
        for h in hosts:
            assert estate.named(f"{name}-{h}-keepalived").parent == urn
            assert estate.named(f"{name}-{h}-answers").parent == urn


def test_vrrp_password_reaches_hosts_only_on_stdin(estate):
    password = estate.named("ox-gtid-vip-vrrp-password")
    assert unwrap(password.inputs["length"]) == 8 and unwrap(password.inputs["special"]) is False
    for h in ("db4", "db5"):
        step = estate.named(f"ox-gtid-vip-{h}-keepalived")
        assert is_secret(step.inputs["stdin"])
        assert unwrap(step.inputs["logging"]) == "none"
        line = unwrap(step.inputs["stdin"]).strip()
        name, value = line.split("=", 1)
        secret = base64.b64decode(value).decode()
        assert name == "VRRP_PASSWORD" and secret  # the mock names its generated value
        script = script_of(step)
        assert secret not in script
        # The config is written 0600 with the password filled in on the host, from the variable.
        assert "auth_pass @OX_VRRP_PASSWORD@" in script and "${config//@OX_VRRP_PASSWORD@/$VRRP_PASSWORD}" in script
        assert "ox_write_file /etc/keepalived/ox-estate.conf 0600 root:root" in script


def test_keepalived_config_unicast_nopreempt_and_priorities(estate):
    db4, db5 = (script_of(estate.named(f"ox-gtid-vip-{h}-keepalived")) for h in ("db4", "db5"))
    for script, me, peer in ((db4, "10.0.0.14", "10.0.0.15"), (db5, "10.0.0.15", "10.0.0.14")):
        assert f"unicast_src_ip {me}" in script and f"unicast_peer {{\n        {peer}\n    }}" in script
        assert "state BACKUP" in script and "nopreempt" in script and "virtual_router_id 51" in script
        assert "10.0.0.100/24 dev @OX_INTERFACE@" in script
    assert "priority 100" in db4 and "priority 90" in db5
    web = script_of(estate.named("ox-web-vip-web2-keepalived"))
    assert "virtual_router_id 77" in web and "10.0.0.200/24" in web and "unicast_peer {\n        10.0.0.41\n" in web


def test_checks_by_kind(estate):
    gtid = script_of(estate.named("ox-gtid-vip-db4-keepalived"))
    assert "SELECT @@global.read_only" in gtid and "Connection refused" in gtid and "Slave_IO_Running: Yes" in gtid
    assert "peer=10.0.0.15" in gtid
    web = script_of(estate.named("ox-web-vip-web1-keepalived"))
    assert "http://127.0.0.1:80/" in web and "read_only" not in web


def test_order_gtid_pair_then_address_then_ox(estate):
    r = estate
    for h in ("db4", "db5"):
        assert r.named("ox-gtid-db4-ox-grants").urn in _deps(r, f"ox-gtid-vip-{h}-keepalived")
        keepalived = {r.named(f"ox-gtid-vip-{p}-keepalived").urn for p in ("db4", "db5")}
        assert keepalived <= _deps(r, f"ox-gtid-vip-{h}-answers")
    answers = {r.named(f"ox-gtid-vip-{h}-answers").urn for h in ("db4", "db5")}
    assert answers <= _deps(r, "ox-mw-mw1-initconfigdb")


def test_ox_writes_to_the_floating_address(estate):
    db = script_of(estate.named("ox-registration-database-oxdb-gtid"))
    assert "10.0.0.100" in db and "10.0.0.14" not in db
    read = script_of(estate.named("ox-registration-database-oxdb-gtid-read"))
    assert "10.0.0.15" in read
    initconfigdb = script_of(estate.named("ox-mw-mw1-initconfigdb"))
    assert "--configdb-host=10.0.0.100 " in initconfigdb
    assert estate.outputs["gtidFloatingAddress"] == "10.0.0.100"


def test_frontend_address_after_the_frontends(estate):
    r = estate
    checks = {r.named(f"ox-web-{h}-check").urn for h in ("web1", "web2")}
    for h in ("web1", "web2"):
        assert checks <= _deps(r, f"ox-web-vip-{h}-keepalived")
    assert r.outputs["frontendFloatingUrl"] == "http://10.0.0.200/appsuite/"


def test_no_floating_address_no_keepalived(stack_config):
    r = run_program(stack_config(), SECRET)
    assert not r.of_type("ox-estate:net:FloatingAddress")
    assert not [x for x in r.registrations if "keepalived" in x.name]
    assert "gtidFloatingAddress" not in r.outputs


def test_vrrp_is_admitted_between_the_peers_only(estate):
    nft = script_of(estate.named("ox-firewall-db4-nftables"))
    assert 'ip protocol vrrp ip saddr @from_db accept comment "db-vrrp-from-db"' in nft
    web = script_of(estate.named("ox-firewall-web1-nftables"))
    assert 'ip protocol vrrp ip saddr @from_web accept comment "web-vrrp-from-web"' in web


def test_colocated_frontends_share_the_backends_address(stack_config):
    r = run_program(stack_config(frontend={"mode": "colocated", "adminNetworks": ["10.0.0.0/24"],
                                           "floatingAddress": "10.0.0.200/24"}), SECRET)
    assert {x.name for x in r.registrations if x.name.endswith("-keepalived")} == \
        {"ox-web-vip-mw1-keepalived", "ox-web-vip-mw2-keepalived"}


def test_config_errors_name_the_key(stack_config):
    """One keepalived per host: a GTID master that is also a frontend would need two."""
    with pytest.raises(ConfigError) as e:
        parse(_config(stack_config, frontend={"nodes": ["web1", "db4"], "floatingAddress": "10.0.0.200/24"}), SECRET)
    assert "ox-estate:frontend.floatingAddress: host 'db4' would hold both floating addresses" in str(e.value)

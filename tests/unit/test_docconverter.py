"""Document converter nodes: the component's steps under mocks, the frontends' locked-down
balancer, the middleware's client settings, HAProxy's converter listener, and the port table.

The lab runs it all for real (tests/lab/test_lab_docconverter.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.core import config
from components.mw.docconverter import config_digest
from components.db.dbproxy import ProxiedCluster, listener_values
from components.core.firewall import ruleset_values
from components.mw.middleware import CONVERTER_URL
from components.core.render import render
from conftest import BASE_CONFIG
from harness import is_secret, run_program, script_of
from test_frontend import ADDRESSES, BACKENDS, _apache, _mpm, needs_apache

from components.web.frontend import members_for, site_config

DC_HOSTS = [{"name": "dc1", "address": "10.0.0.51"}, {"name": "dc2", "address": "10.0.0.52"}]
CONVERTERS = {"nodes": [{"host": "dc1", "route": "DC1"}, {"host": "dc2", "route": "DC2"}]}
STANDALONE = {"standalone": {"host": "db1"}, "configdb": "standalone"}


def _raw(stack_config, **overrides):
    return stack_config(hosts=BASE_CONFIG["hosts"] + DC_HOSTS, documentConverter=CONVERTERS, **overrides)


@pytest.fixture
def galera(stack_config):
    """The base estate (Galera, so HAProxy is already on the middleware nodes) with two converters."""
    return run_program(_raw(stack_config), {"sshPrivateKey"})


@pytest.fixture
def standalone(stack_config):
    """A standalone configdb: HAProxy only for the converter listener."""
    return run_program(_raw(stack_config, database=STANDALONE), {"sshPrivateKey"})


def _site(recording, host="web1") -> str:
    script = script_of(recording.named(f"ox-web-{host}-configure"))
    return re.search(r"<<'OX_SITE_EOF'\n(.*?)OX_SITE_EOF", script, re.S).group(1)


def _haproxy_cfg(recording, name) -> str:
    return re.search(r"<<'OX_CFG_EOF'\n(.*?)OX_CFG_EOF", script_of(recording.named(name)), re.S).group(1)


# --- config ------------------------------------------------------------------------------------


def test_defaults_and_roles(stack_config):
    cfg = config.parse(_raw(stack_config), {"sshPrivateKey"})
    assert cfg.document_converter.job_processor_count == 3
    assert cfg.roles_of("dc1") == {config.Role.DC}


# --- the component ------------------------------------------------------------------------------


def test_each_node_gets_configure_start_check_in_order_under_the_component(galera):
    component = galera.named("ox-dc")
    assert component.type == "ox-estate:dc:DocumentConverterNodes"
    for host in ("dc1", "dc2"):
        steps = {p: galera.named(f"ox-dc-{host}-{p}") for p in ("configure", "start", "check")}
        assert all(s.parent == component.urn for s in steps.values())
        assert steps["configure"].urn in steps["start"].dependencies
        assert steps["start"].urn in steps["check"].dependencies


def test_configure_sets_route_listener_and_job_processors(galera):
    script = script_of(galera.named("ox-dc-dc2-configure"))
    assert "ox_set_property /opt/open-xchange/etc/server.properties com.openexchange.server.backendRoute DC2" in script
    assert "com.openexchange.connector.networkListenerHost '*'" in script
    assert "com.openexchange.documentconverter.jobProcessorCount 3" in script
    assert "/opt/open-xchange/documentconverter/etc/documentconverter.properties" in script
    # No configdb, no Hazelcast on a converter.
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#")).lower()
    assert "configdb" not in code and "hazelcast" not in code


def test_start_and_check_carry_the_configuration_digest(stack_config):
    """A changed jobProcessorCount changes the start and check scripts (so they run again under the
    engine, and restart the converter), not only the configure step."""
    def scripts(count):
        raw = _raw(stack_config, database=STANDALONE)
        raw["documentConverter"] = {**CONVERTERS, "jobProcessorCount": count}
        recording = run_program(raw, {"sshPrivateKey"})
        return {p: script_of(recording.named(f"ox-dc-dc1-{p}")) for p in ("configure", "start", "check")}

    three, four = scripts(3), scripts(4)
    assert all(three[p] != four[p] for p in ("configure", "start", "check"))
    digest = re.search(r"config_digest=(\w+)", three["start"]).group(1)
    assert digest == re.search(r"config_digest=(\w+)", three["check"]).group(1) == config_digest(
        {"source": "preinstalled", "packages": ["open-xchange-documentconverter-server",
                                                "open-xchange-documentconverter-api", "readerengine"],
         "repository_url": "", "repository_user": "", "repository_host": "",
         "route": "DC1", "listener_host": "*", "job_processor_count": 3})


def test_repository_packages_take_the_password_on_stdin_only(stack_config):
    mw = {**BASE_CONFIG["middleware"], "packageSource": "repository",
          "repositoryUrl": "https://software.example.com/appsuite/DebianBookworm", "repositoryUser": "customer"}
    raw = _raw(stack_config, middleware=mw, oxRepositoryPassword="repo-secret-pw")
    recording = run_program(raw, {"sshPrivateKey", "oxRepositoryPassword"})
    step = recording.named("ox-dc-dc1-configure")
    script = script_of(step)
    assert "open-xchange-documentconverter-server" in script and "readerengine" in script
    assert "repo-secret-pw" not in script and is_secret(step.inputs["stdin"])
    assert step.inputs["logging"] == "none"


def test_status_and_routes_are_stack_outputs(galera):
    assert galera.outputs["documentConverterRoutes"] == {"dc1": "DC1", "dc2": "DC2"}
    assert {r["url"] for r in galera.outputs["documentConverterStatus"]} == {
        "http://10.0.0.51:8008/documentconverterws", "http://10.0.0.52:8008/documentconverterws"}


# --- the frontends -------------------------------------------------------------------------------


def test_the_docs_balancer_is_sticky_and_admits_only_the_middleware(galera):
    site = _site(galera)
    block = re.search(r"<Proxy balancer://oxcluster_docs>\n(.*?)</Proxy>", site, re.S).group(1)
    members = [line.split()[1:2] + re.findall(r"route=(\S+)", line) for line in block.splitlines()
               if "BalancerMember" in line]
    assert members == [["http://10.0.0.51:8008", "DC1"], ["http://10.0.0.52:8008", "DC2"]]
    assert "ProxySet stickysession=JSESSIONID|jsessionid scolonpathdelim=On" in block
    assert re.findall(r"Require .*", block) == ["Require ip 10.0.0.21 10.0.0.22"]
    public = re.search(r"<VirtualHost \*:80>(.*?)</VirtualHost>", site, re.S).group(1)
    assert "ProxyPass /documentconverterws balancer://oxcluster_docs/documentconverterws" in public
    location = re.search(r"<Location /documentconverterws>(.*?)</Location>", public, re.S).group(1)
    assert location.split() == ["Require", "ip", "10.0.0.21", "10.0.0.22"]
    # The raw-path gate still runs first, for this path as for the app's.
    assert public.index("RewriteRule ^ - [F]") < public.index("ProxyPass /documentconverterws")


def test_the_frontends_wait_for_the_converters(galera):
    start = galera.named("ox-web-web1-start")
    assert {galera.named(f"ox-dc-{h}-start").urn for h in ("dc1", "dc2")} <= set(start.dependencies)


def test_no_converters_no_docs_balancer(stack_config):
    site = _site(run_program(stack_config(), {"sshPrivateKey"}))
    assert "oxcluster_docs" not in site and "documentconverterws" not in site


@needs_apache
@pytest.mark.parametrize("clients", [["10.0.0.21", "10.0.0.22"], []])
def test_rendered_docs_config_passes_apache2_t(tmp_path, clients):
    site = site_config("web1", members_for("web1", BACKENDS, ADDRESSES, False), ["10.0.0.0/28"],
                       [{"address": "10.0.0.51", "route": "DC1"}, {"address": "10.0.0.52", "route": "DC2"}], clients)
    result = _apache(tmp_path, site, _mpm(), "-t")
    assert result.returncode == 0 and "Syntax OK" in result.stderr, result.stderr


# --- the middleware ------------------------------------------------------------------------------


def test_the_middleware_gets_the_client_url_and_previews(galera):
    script = script_of(galera.named("ox-mw-mw1-configure"))
    assert CONVERTER_URL == "http://127.0.0.1:8008/documentconverterws"
    assert ("com.openexchange.documentconverter.client.remoteDocumentConverterUrl "
            "http://127.0.0.1:8008/documentconverterws") in script.replace("\\\n  ", "")
    assert 'ox_set_property "$etc/permissions.properties" com.openexchange.capability.document_preview true' in script
    # Written before the settings digest that leaves the restart pending for the rolling restart.
    assert script.index("remoteDocumentConverterUrl") < script.index("after=$(settings)")


def test_adding_converters_reaches_the_rolling_restart(stack_config):
    """The client URL is read at start: it is in the restart digest, so the restart chain runs."""
    def restart(raw):
        return script_of(run_program(raw, {"sshPrivateKey"}).named("ox-mwroll-mw1-restart"))

    assert restart(stack_config(hosts=BASE_CONFIG["hosts"] + DC_HOSTS)) != restart(_raw(stack_config))


def test_no_converters_no_client_settings(stack_config):
    script = script_of(run_program(stack_config(), {"sshPrivateKey"}).named("ox-mw-mw1-configure"))
    assert "documentconverter" not in script and "ox_set_property" not in script


def test_haproxy_listens_for_the_converter_client_with_galera(galera):
    cfg = _haproxy_cfg(galera, "ox-dbproxy-mw1-haproxy")
    assert "listen mysql-write" in cfg and "listen converter" in cfg
    converter = cfg[cfg.index("listen converter"):]
    assert "bind 127.0.0.1:8008" in converter and "option httpchk GET /documentconverterws" in converter
    assert re.findall(r"server (\S+) (\S+) check", converter) == [("web1", "10.0.0.41:80")]


def test_haproxy_for_the_converters_alone_without_galera(standalone):
    step = standalone.named("ox-dcproxy-mw2-haproxy")
    assert standalone.named("ox-dcproxy").type == "ox-estate:mw:ConverterProxy"
    cfg = _haproxy_cfg(standalone, "ox-dcproxy-mw2-haproxy")
    assert "mysql" not in cfg and "listen converter" in cfg
    assert "Galera writer" not in script_of(step)


def test_no_converters_no_converter_listener(stack_config):
    recording = run_program(stack_config(), {"sshPrivateKey"})
    assert "converter" not in _haproxy_cfg(recording, "ox-dbproxy-mw1-haproxy")
    standalone = run_program(stack_config(database=STANDALONE), {"sshPrivateKey"})
    assert not [r for r in standalone.registrations if r.name.startswith("ox-dcproxy")]


HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")
@pytest.mark.parametrize("nodes", [[("db1", "10.0.0.11"), ("db2", "10.0.0.12")], []])
def test_rendered_haproxy_config_passes_haproxy_c(tmp_path, nodes):
    clusters = [{**listener_values(ProxiedCluster("galera", [], 3306, 3307)), "nodes": nodes}] if nodes else []
    text = render("files/haproxy.cfg.j2", clusters=clusters, maxconn=4096,
                  converter_frontends=[("web1", "10.0.0.41"), ("web2", "10.0.0.42")])
    (tmp_path / "haproxy.cfg").write_text(text.replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock")))
    result = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


# --- the port table ------------------------------------------------------------------------------


def test_the_firewall_opens_8008_on_converters_to_the_web_hosts_only():
    values = ruleset_values("dc1", [config.Role.DC], {"dc1": "10.0.0.51", "web1": "10.0.0.41", "mw1": "10.0.0.21"},
                            {"dc1": [config.Role.DC], "web1": [config.Role.WEB], "mw1": [config.Role.MW]},
                            22, ["203.0.113.0/24"], [])
    rules = {r["key"]: r for r in values["rules"]}
    assert rules["dc-tcp8008-from-web"]["set"] == "from_web" and values["sets"]["from_web"] == ["10.0.0.41"]
    assert set(rules) == {"dc-tcp8008-from-web", "admin-tcp22-from-admin"}

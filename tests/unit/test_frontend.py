"""ApacheFrontend: wiring under mocks, the rendered config, and the real `apache2 -t` on it.

Nothing wires ApacheFrontend into the estate yet, so these tests build it directly inside a
mocked program, from a parsed stack config and static hosts, the way estate.py will.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pulumi
import pytest
from pulumi_command import remote

from components.core import config
from components.web.frontend import ADMIN_PORT, MANAGER_PORT, MODULES, ApacheFrontend, Backend, mpm_values, members_for, site_config
from components.estate import frontend_args
from components.core.hosts import static_hosts
from components.core.render import render
from harness import Recording, UnitMocks, is_secret, script_of, set_recording_mocks, unwrap
from conftest import BASE_CONFIG
from lab import pathcorpus
from lab.standins.oxstandin import servletpath

HOSTS = BASE_CONFIG["hosts"] + [{"name": "mw3", "address": "10.0.0.23"}, {"name": "mw4", "address": "10.0.0.24"}]
NODES = [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX2"}, {"host": "mw3", "jkroute": "OX3"},
         {"host": "mw4", "jkroute": "PROV", "role": "provisioning"}]


def _config(stack_config, **frontend):
    fe = {"mode": "dedicated", "nodes": ["web1"], "adminNetworks": ["10.0.0.0/28", "192.0.2.0/24"], **frontend}
    raw = stack_config(hosts=HOSTS, middleware={"nodes": NODES}, frontend=fe)
    return config.parse(raw, {"sshPrivateKey"})


def _build(cfg) -> tuple[Recording, dict]:
    """ApacheFrontend under mocks, as estate.py would build it; the recording and its outputs."""
    recording, outputs = Recording(), {}
    set_recording_mocks(UnitMocks(), recording)

    @pulumi.runtime.test
    def program():
        key = pulumi.Output.secret(cfg.secrets.ssh_private_key.get_secret_value())
        hosts = static_hosts(cfg, key)
        nodes = [n for n in cfg.middleware.nodes if n.role == "backend"]
        backends = [Backend(n.host, hosts[n.host].address, n.jkroute) for n in nodes]
        web = [hosts[n.host] for n in nodes] if cfg.frontend.mode == "colocated" else \
            [hosts[n] for n in cfg.frontend.nodes]
        ready = remote.Command("mw-ready", connection=hosts["mw1"].connection, create="true")
        fe = ApacheFrontend("ox-web", frontend_args(cfg, web, backends, [ready]))
        return pulumi.Output.all(fe.urls, fe.status).apply(lambda v: outputs.update(urls=v[0], status=v[1]))

    program()
    return recording, outputs


def _site(recording, host) -> str:
    """The vhost text inside the configure step's script."""
    script = script_of(recording.named(f"ox-web-{host}-configure"))
    return re.search(r"<<'OX_SITE_EOF'\n(.*?)OX_SITE_EOF", script, re.S).group(1)


def _members(site: str, balancer: str) -> list[str]:
    block = re.search(rf"<Proxy balancer://{balancer}>\n(.*?)</Proxy>", site, re.S).group(1)
    return [line.strip() for line in block.splitlines() if "BalancerMember" in line]


@pytest.fixture
def dedicated(stack_config):
    return _build(_config(stack_config))


def test_steps_are_phases_per_host_under_the_component(dedicated):
    recording, _ = dedicated
    fe = recording.named("ox-web")
    assert fe.type == "ox-estate:web:ApacheFrontend"
    steps = [r for r in recording.registrations if r.name.startswith("ox-web-")]
    assert sorted(r.name for r in steps) == sorted(
        f"ox-web-web1-{p}" for p in ("install", "configure", "start", "check"))
    assert all(r.parent == fe.urn for r in steps)


def test_every_backend_is_a_sticky_member_with_its_route(dedicated):
    """Dedicated frontends: all three backends normal, the route being the node's jkroute."""
    site = _site(dedicated[0], "web1")
    assert _members(site, "oxcluster") == [
        f"BalancerMember http://10.0.0.2{i}:8009 timeout=100 smax=0 ttl=60 retry=60 loadfactor=50 route=OX{i}"
        for i in (1, 2, 3)]
    assert [m.replace("timeout=1900", "timeout=100") for m in _members(site, "eas_oxcluster")] == \
        _members(site, "oxcluster")
    assert site.count("ProxySet stickysession=JSESSIONID|jsessionid scolonpathdelim=On failontimeout=On") == 2


def test_the_provisioning_node_is_never_a_member(dedicated):
    site = _site(dedicated[0], "web1")
    assert "10.0.0.24" not in site and "PROV" not in site


def _vhost(site: str, port: int, address: str = "*") -> str:
    return re.search(rf"<VirtualHost {re.escape(address)}:{port}>\n(.*?)</VirtualHost>", site, re.S).group(1)


def test_the_vhosts_share_the_balancers_and_each_keeps_their_changes(dedicated):
    """The balancers sit outside both vhosts, so a drain on the admin listener is what public
    traffic sees; BalancerPersist must then be set in every scope (measured: else a graceful reload
    forgets balancer-manager changes)."""
    site = _site(dedicated[0], "web1")
    outside = re.sub(r"<VirtualHost .*?</VirtualHost>", "", site, flags=re.S)
    assert "<Proxy balancer://oxcluster>" in outside and "<Proxy balancer://eas_oxcluster>" in outside
    assert "BalancerPersist On" in outside
    for port in (80, ADMIN_PORT):
        assert "BalancerPersist On" in _vhost(site, port) and "<Proxy" not in _vhost(site, port), port


def test_the_public_vhost_proxies_only_the_app_prefixes(dedicated):
    """An allowlist: the app's prefixes, and nothing of SOAP or balancer-manager."""
    public = "\n".join(line for line in _vhost(_site(dedicated[0], "web1"), 80).splitlines()
                       if not line.lstrip().startswith("#"))
    assert re.findall(r"ProxyPass (\S+) balancer://(\S+)", public) == [
        ("/appsuite/api", "oxcluster/ajax"), ("/ajax", "oxcluster/ajax"), ("/infostore", "oxcluster/infostore"),
        ("/realtime", "oxcluster/realtime"), ("/usm-json", "eas_oxcluster/usm-json"),
        ("/Microsoft-Server-ActiveSync", "eas_oxcluster/Microsoft-Server-ActiveSync")]
    for absent in ("webservices", "servlet", "balancer-manager", "SetHandler", "ProxyPassMatch", "<Location"):
        assert absent not in public, absent


def test_soap_and_balancer_manager_live_only_on_the_admin_listener(dedicated):
    site = _site(dedicated[0], "web1")
    assert f"Listen {ADMIN_PORT}\n" in site
    admin = _vhost(site, ADMIN_PORT)
    assert re.findall(r"ProxyPass (\S+) balancer://(\S+)", admin) == [
        ("/webservices", "oxcluster/webservices"), ("/servlet/axis2/services", "oxcluster/servlet/axis2/services")]
    assert "SetHandler balancer-manager" in admin
    # <Location /> holds the one rule for everything on this listener, and nothing below it merges
    # in another: an `AuthMerging Or` exception for 127.0.0.1 let `/balancer-manager/` through.
    requires = [line.strip() for line in admin.splitlines() if line.strip().startswith("Require")]
    assert requires == ["Require ip 10.0.0.0/28 192.0.2.0/24"]
    assert re.search(r"<Location />\n\s*Require ip ", admin)
    assert not re.search(r"^\s*AuthMerging", site, re.M)
    assert re.search(r"<Location /balancer-manager>\n\s*SetHandler balancer-manager\n\s*</Location>", admin)
    # The drain and readmit steps' balancer-manager: a listener on loopback alone, nothing else on it.
    assert f"Listen 127.0.0.1:{MANAGER_PORT}\n" in site
    manager = _vhost(site, MANAGER_PORT, "127.0.0.1")
    assert [line.strip() for line in manager.splitlines() if line.strip().startswith("Require")] == ["Require local"]
    assert "ProxyPass" not in manager and "BalancerPersist On" in manager
    assert site.count("SetHandler balancer-manager") == 2


def test_no_admin_networks_means_nobody(stack_config):
    recording, _ = _build(_config(stack_config, adminNetworks=[]))
    admin = _vhost(_site(recording, "web1"), ADMIN_PORT)
    assert "Require ip" not in admin
    assert [line.strip() for line in admin.splitlines() if line.strip().startswith("Require")] == \
        ["Require all denied"]


def _gate(site: str) -> re.Pattern:
    """The public vhost's raw-path gate as a Python regex: its RewriteCond with the Defines expanded."""
    defines = dict(re.findall(r'^Define (\w+) "(.*)"$', site, re.M))
    (cond,) = re.findall(r'RewriteCond %\{THE_REQUEST\} "!(.*)"$', _vhost(site, 80), re.M)
    while "${" in cond:
        cond = re.sub(r"\$\{(\w+)\}", lambda m: defines[m.group(1)], cond)
    assert re.search(r"RewriteCond .*\n\s*RewriteRule \^ - \[F\]", _vhost(site, 80))
    return re.compile(cond)


APP_REQUESTS = ["GET / HTTP/1.1", "GET /appsuite/ HTTP/1.1", "GET /appsuite/v=8.0.0-1.2024/io.ox/core/main.js HTTP/1.1",
                "GET /appsuite/api/login?action=login HTTP/1.1", "PUT /ajax/folders?action=list&x=..//;%2e HTTP/1.1",
                "GET /infostore/Docs/a%20b%C3%A4.txt HTTP/1.1", "GET /realtime/poll HTTP/1.0",
                "POST /Microsoft-Server-ActiveSync?Cmd=Ping&User=u1 HTTP/1.1", "POST /usm-json/syncUpdate HTTP/1.1",
                "GET /ajax/login;jsessionid=77.OX2?action=store HTTP/1.1",
                "GET /ajax/x;jsessionid=456.OX1;foo=bar HTTP/1.1", "GET /server-status?auto HTTP/1.1"]


def test_the_gate_lets_the_app_paths_through(dedicated):
    gate = _gate(_site(dedicated[0], "web1"))
    for line in APP_REQUESTS:
        assert gate.fullmatch(line), line


def _apache_view(target: str) -> str:
    """The path Apache maps a target that passed the gate by: decoded once (it has no dot or empty
    segments, and no %2f, to resolve)."""
    return servletpath.decode(target.split("?", 1)[0])


def test_the_gate_refuses_every_corpus_variant_that_is_not_a_plain_spelling(dedicated):
    """Of the corpus (>= 2000 variants), the gate passes only plain spellings of the admin paths
    (any case, a letter %-encoded once): Apache reads those as the admin path itself, which the
    public vhost does not map (the allowlist). Every trick is refused; so is each construct alone."""
    gate = _gate(_site(dedicated[0], "web1"))
    variants = pathcorpus.variants()
    assert len(variants) >= 2000
    passed = [v for v in variants if gate.fullmatch(f"{v.method} {v.path} HTTP/1.1")]
    assert passed and len(passed) < 0.01 * len(variants)
    for v in passed:
        assert servletpath.is_admin(_apache_view(v.path)), v
        assert servletpath.candidates(v.path) == {_apache_view(v.path)}, v
    for target in ["/ajax/x;y", "/ajax;jsessionid=1.OX1/x", "/ajax/;jsessionid=1.OX1", "/ajax//x", "/ajax/./x",
                   "/ajax/../x", "/ajax/..", "/ajax/x/.", "/ajax/%2e%2e/x", "/ajax/%2E", "/ajax/x%2fy", "/ajax/x%5cy",
                   "/ajax/x%3by", "/ajax/x%25y", "/ajax/x%00", "/ajax/x%0a", "/ajax/%c0%ae", "/ajax/%e0%80%ae",
                   "/ajax/x%zz", "/ajax/x%2", "/ajax\\x", "/ajax/x#y", "http://h/ajax/x", "*", "/ajax/x y",
                   "/ajax/x;JSESSIONID=1.OX1"]:
        assert not gate.fullmatch(f"GET {target} HTTP/1.1"), target


def test_what_the_gate_passes_means_the_same_to_apache_and_to_the_container(dedicated):
    """Property over the corpus, the app paths and mutations of both: for a request target the gate
    passes, every servlet-container reading is the one path Apache maps it by. So Apache's allowlist
    of prefixes is the container's too, and nothing it forwards can be dispatched onto SOAP."""
    gate = _gate(_site(dedicated[0], "web1"))
    targets = [v.path for v in pathcorpus.variants()] + [r.split(" ")[1] for r in APP_REQUESTS]
    targets += [t.replace("%2e", ".").replace("%2f", "/").replace("%5c", "\\").replace(";x", "") for t in targets]
    checked = 0
    for target in targets:
        if gate.fullmatch(f"GET {target} HTTP/1.1"):
            checked += 1
            view = _apache_view(target).split(";jsessionid=", 1)[0]  # the container drops the last ;params
            assert servletpath.candidates(target) == {view}, target
    assert checked >= 10


def test_colocated_hosts_prefer_their_own_node(stack_config):
    """Each colocated host sends new sessions to itself; the other nodes are hot standbys (+H)."""
    recording, outputs = _build(_config(stack_config, mode="colocated", nodes=[]))
    assert sorted(r.name for r in recording.registrations if r.name.endswith("-configure")) == \
        [f"ox-web-mw{i}-configure" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        members = _members(_site(recording, f"mw{i}"), "oxcluster")
        for j, line in enumerate(members, start=1):
            assert line.endswith(f"route=OX{j}")
            assert ("loadfactor=50" in line) == (i == j) and ("status=+H" in line) == (i != j), (i, line)
    assert outputs["urls"] == [f"http://10.0.0.2{i}/appsuite/" for i in (1, 2, 3)]


def test_a_drained_node_is_a_member_with_status_drain(stack_config):
    """middleware.nodes[].drained: the member stays (its sticky sessions too) with status N, so a
    fresh Apache starts it drained; colocated, a drained standby is +HN."""
    nodes = [{**NODES[0], "drained": True}, *NODES[1:]]
    raw = stack_config(hosts=HOSTS, middleware={"nodes": nodes},
                       frontend={"mode": "dedicated", "nodes": ["web1"], "adminNetworks": ["10.0.0.0/28"]})
    recording, _ = _build(config.parse(raw, {"sshPrivateKey"}))
    for balancer in ("oxcluster", "eas_oxcluster"):
        first, *others = _members(_site(recording, "web1"), balancer)
        assert "status=+N route=OX1" in first and "loadfactor=50" in first
        assert not [m for m in others if "status=" in m], others
    colocated = [{"address": "a", "route": "OX1", "standby": True, "drained": True}]
    assert "status=+HN route=OX1" in site_config("web2", colocated, [])


def test_steps_run_in_order_and_start_waits_for_the_backends(dedicated):
    """Install and configure need no backend; Apache starts serving only once they are up."""
    recording, _ = dedicated
    deps = lambda n: set(recording.named(f"ox-web-web1-{n}").dependencies)  # noqa: E731
    urn = lambda n: recording.named(f"ox-web-web1-{n}").urn  # noqa: E731
    ready = recording.named("mw-ready").urn
    assert urn("install") in deps("configure") and ready not in deps("configure")
    assert {urn("configure"), ready} <= deps("start")
    assert urn("start") in deps("check")


def test_no_secret_in_any_unsecret_input(dedicated, ssh_key):
    recording, _ = dedicated
    key_line = ssh_key.strip().splitlines()[1]
    for r in recording.registrations:
        if "connection" in r.inputs:
            assert is_secret(r.inputs["connection"]), r.name
        plain = {k: v for k, v in r.inputs.items() if not is_secret(v)}
        assert key_line not in str(unwrap(plain)), r.name
        assert "stdin" not in r.inputs, r.name


def test_urls_and_status_come_from_the_check_step(dedicated):
    _, outputs = dedicated
    assert outputs["urls"] == ["http://10.0.0.41/appsuite/"]
    assert outputs["status"][0]["mpm"] == "event"


def test_configure_enables_the_modules_and_switches_to_event(dedicated):
    script = script_of(dedicated[0].named("ox-web-web1-configure"))
    enabled = re.search(r"modules=\(([^)]*)\)", script).group(1).split()
    for m in ("proxy", "proxy_http", "proxy_balancer", "lbmethod_byrequests", "headers", "rewrite", "expires",
              "deflate", "mime", "setenvif", "mpm_event"):
        assert m in enabled, m
    assert "other_mpms=(mpm_prefork mpm_worker )" in script
    assert "apache2ctl -t" in script


def test_mpm_sizing_follows_max_connections():
    assert mpm_values(8000) == {"server_limit": 250, "start_servers": 10, "threads_per_child": 32,
                                "max_request_workers": 8000}
    assert mpm_values(100) == {"server_limit": 4, "start_servers": 4, "threads_per_child": 32,
                               "max_request_workers": 128}


def test_a_frontend_without_backends_is_refused(stack_config):
    cfg = _config(stack_config)
    with pytest.raises(ValueError, match="at least one backend"):
        ApacheFrontend("ox-web", frontend_args(cfg, [], [], []))


# --- the rendered config against the real apache2 ---------------------------------------------

APACHE2 = shutil.which("apache2") or ("/usr/sbin/apache2" if Path("/usr/sbin/apache2").exists() else None)
MODULE_DIR = Path("/usr/lib/apache2/modules")
if APACHE2 is None:
    print("\n*** APACHE RENDER TESTS SKIPPED: apache2 is not installed (bash lab/setup.sh installs it) ***\n")
needs_apache = pytest.mark.skipif(APACHE2 is None, reason="APACHE RENDER TESTS SKIPPED: apache2 not installed")

BACKENDS = [Backend(f"mw{i}", f"10.0.0.2{i}", f"OX{i}") for i in (1, 2, 3)]
ADDRESSES = [b.address for b in BACKENDS]


def _apache(tmp_path: Path, site: str, mpm: str, *flags: str) -> subprocess.CompletedProcess:
    """`apache2 <flags>` on a server config that loads MODULES and includes the rendered files."""
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "mpm.conf").write_text(mpm)
    loads = [f"LoadModule {m}_module {MODULE_DIR}/mod_{m}.so" for m in MODULES]
    (tmp_path / "apache2.conf").write_text("\n".join([
        f"ServerRoot {tmp_path}", f"PidFile {tmp_path}/apache2.pid", f"DefaultRuntimeDir {tmp_path}",
        f"ErrorLog {tmp_path}/error.log", "ServerName localhost", "Listen 127.0.0.1:18080", *loads,
        f"Include {tmp_path}/mpm.conf", f"Include {tmp_path}/site.conf", ""]))
    return subprocess.run([APACHE2, "-f", str(tmp_path / "apache2.conf"), *flags],
                          capture_output=True, text=True, timeout=30)


def _mpm(max_connections: int = 8000) -> str:
    return render("web/mpm-event.conf.j2", max_connections=max_connections, **mpm_values(max_connections))


@needs_apache
@pytest.mark.parametrize("host,colocated", [("web1", False), ("mw2", True)])
@pytest.mark.parametrize("admin", [["10.0.0.0/28"], []])
def test_rendered_config_passes_apache2_t(tmp_path, host, colocated, admin):
    site = site_config(host, members_for(host, BACKENDS, ADDRESSES, colocated), admin)
    result = _apache(tmp_path, site, _mpm(), "-t")
    assert result.returncode == 0 and "Syntax OK" in result.stderr, result.stderr


@needs_apache
def test_rendered_config_loads_every_module_it_needs(tmp_path):
    """`apache2 -t` misses a missing lbmethod_byrequests or proxy_http (lab-findings); -M shows them."""
    site = site_config("web1", members_for("web1", BACKENDS, ADDRESSES, False), [])
    result = _apache(tmp_path, site, _mpm(100), "-M")
    assert result.returncode == 0, result.stderr
    for m in MODULES:
        assert f" {m}_module " in result.stdout, m


@needs_apache
def test_control_apache2_t_refuses_a_broken_config(tmp_path):
    """Counterpart: the same harness does fail a config Apache would refuse."""
    site = site_config("web1", members_for("web1", BACKENDS, ADDRESSES, False), [])
    result = _apache(tmp_path, site.replace("scolonpathdelim=On", "scolonpathdelim=Maybe"), _mpm(), "-t")
    assert result.returncode != 0

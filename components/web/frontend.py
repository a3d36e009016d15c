"""ApacheFrontend: Apache 2.4 in front of the OX middleware (oxpedia "Configure Apache", cluster notes).

Creates, per web host (`<name>-<host>-<phase>`):
- `install`: apache2 where missing; a pristine distro default site is disabled;
- `configure`: the App Suite site (balancer://oxcluster sticky on JSESSIONID|jsessionid by
  jkroute, balancer://eas_oxcluster with long timeouts for ActiveSync/USM; a public vhost on :80
  that proxies only the app's prefixes and refuses any raw path a servlet container would read
  differently; SOAP and balancer-manager only on the admin listener :ADMIN_PORT, for the admin
  networks) and the mpm_event sizing, built and checked with `apache2ctl -t` in a copy of
  /etc/apache2 before the real one is touched;
- `start`: starts Apache, or restarts/reloads it when `configure` changed something, and waits
  until the new configuration answers. It carries a digest of everything `configure` writes, so
  under the engine (a step runs again only when its own script changes) it runs exactly when the
  configuration changed, and acts on the marker `configure` left;
- `check`: one JSON line (url, adminUrl, mpm, generation, what a request through the balancer
  got, what the admin listener answered); it carries the same digest, so it runs again after
  every configuration change.

A backend with `drained: true` is written with status N (Drain: no new sessions, its sticky ones
stay), so a fresh Apache starts it drained. Once Apache has run, BalancerPersist's kept state wins
over the config (measured), so the drain reaches a running Apache through balancer-manager: the
readmit steps of components/mw/mwrestart.py.

Dedicated frontends list every backend as a normal member. Colocated ones run on the backend
middleware hosts themselves: the host's own member is normal and the others are hot standbys
(`status=+H`), so each host gets its own config. Provisioning nodes are never members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pulumi

from ..core.hosts import Host
from ..core.parse import parse_json_line
from ..core.remote import run_script
from ..core.render import render, sha256

# What the config uses. a2enmod would pull the "# Depends:" ones in itself; the configure step
# links modules directly (see its script), so they are listed. Without lbmethod_byrequests
# Apache does not start and without proxy_http every request gets a 503, and `apache2 -t`
# catches neither (lab-findings), so the step also checks `apache2ctl -M` for each.
MODULES = ("mpm_event", "authz_core", "authz_host", "alias", "env", "filter", "mime", "setenvif", "headers",
           "rewrite", "expires", "deflate", "status", "slotmem_shm", "proxy", "proxy_http", "proxy_balancer",
           "lbmethod_byrequests")
OTHER_MPMS = ("mpm_prefork", "mpm_worker")
SITE = "000-appsuite"  # sorts before 000-default: the first *:80 vhost answers unknown Host headers
MPM_CONF = "ox-mpm-event"
# SOAP (/webservices, /servlet/axis2/services) and balancer-manager listen only here, for the
# admin networks; the public :80 maps neither (see the site template for why). Not 8009: in
# colocated mode OX itself listens there on the same host.
ADMIN_PORT = 8088
# balancer-manager again, on 127.0.0.1 only: the drain and readmit steps (mwrestart) use it.
MANAGER_PORT = 8089
# The balancers the site defines (web/appsuite-site.conf.j2): a drain applies to each.
BALANCERS = ("oxcluster", "eas_oxcluster")
# oxpedia "Tune apache2": 32 threads per child; MaxRequestWorkers / ThreadsPerChild = ServerLimit.
THREADS_PER_CHILD = 32
START_SERVERS = 10


@dataclass(frozen=True)
class Converters:
    """Document converter nodes behind balancer://oxcluster_docs (components/mw/docconverter.py)."""

    members: list[tuple[pulumi.Input[str], str]]  # (address, route)
    clients: list[pulumi.Input[str]]  # the middleware nodes' addresses: the only ones admitted


@dataclass(frozen=True)
class Backend:
    """One balancer member: an OX node with role "backend" (provisioning nodes are never members)."""

    name: str
    address: pulumi.Input[str]
    jkroute: str
    drained: bool = False  # middleware.nodes[].drained: no new sessions (status N)


@dataclass(frozen=True)
class ApacheFrontendArgs:
    web_hosts: list[Host]
    backends: list[Backend]  # in colocated mode the web hosts are these backends' hosts
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # Apache serves only once these are done
    colocated: bool = False
    admin_networks: list[str] = field(default_factory=list)  # the only sources of SOAP and balancer-manager
    max_connections: int = 8000  # mpm_event: concurrent connections each Apache holds
    converters: Converters | None = None  # document converter nodes, for the middleware nodes only


def mpm_values(max_connections: int) -> dict[str, int]:
    """mpm_event sizing for `max_connections`, rounded up to whole children."""
    server_limit = math.ceil(max_connections / THREADS_PER_CHILD)
    return {"server_limit": server_limit, "start_servers": min(START_SERVERS, server_limit),
            "threads_per_child": THREADS_PER_CHILD, "max_request_workers": server_limit * THREADS_PER_CHILD}


def members_for(host: str, backends: list[Backend], addresses: list[str], colocated: bool) -> list[dict]:
    """The BalancerMember values on `host`: colocated hosts prefer their own node, the rest are +H;
    a drained node takes no new sessions (N)."""
    return [{"address": addr, "route": b.jkroute, "standby": colocated and b.name != host, "drained": b.drained}
            for b, addr in zip(backends, addresses)]


def site_config(host: str, members: list[dict], admin_networks: list[str], converters: list[dict] = (),
                converter_clients: list[str] = ()) -> str:
    """converters: [{address, route}] behind balancer://oxcluster_docs; converter_clients: the
    addresses that may reach it (the middleware nodes)."""
    return render("web/appsuite-site.conf.j2", host=host, members=members, admin_networks=admin_networks,
                  admin_port=ADMIN_PORT, manager_port=MANAGER_PORT, converters=list(converters),
                  converter_clients=list(converter_clients))


def config_digest(site: str, mpm: str) -> str:
    """What the configure step makes of /etc/apache2: the vhost, the mpm sizing, the module lists."""
    return sha256("\n".join([SITE, site, MPM_CONF, mpm, " ".join(MODULES), " ".join(OTHER_MPMS)]))


class ApacheFrontend(pulumi.ComponentResource):
    urls: pulumi.Output[list]
    status: pulumi.Output[list]
    ready: list[pulumi.Resource]
    admin_networks: list[str]  # the only sources that reach SOAP and balancer-manager
    web_hosts: list[Host]
    backends: list[Backend]  # the members, each drained as the config says
    started: dict[str, pulumi.Resource]  # web host -> its start step (Apache answers with its config)

    def __init__(self, name: str, args: ApacheFrontendArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:web:ApacheFrontend", name, None, opts)
        if not args.backends:
            raise ValueError(f"{name}: an Apache frontend needs at least one backend member")
        self.backends = backends = list(args.backends)
        self.web_hosts, self.started = list(args.web_hosts), {}
        self.admin_networks = admin_networks = list(args.admin_networks)
        mpm = render("web/mpm-event.conf.j2", max_connections=args.max_connections,
                     **mpm_values(args.max_connections))
        colocated, depends_on, web_hosts = args.colocated, list(args.depends_on), self.web_hosts

        converters = args.converters or Converters([], [])
        checks = {h.name: self._create_host(name, h, backends, colocated, admin_networks, mpm, depends_on, converters)
                  for h in web_hosts}
        self.status = pulumi.Output.all(*[
            c.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-check", out)) for n, c in checks.items()
        ])
        self.urls = self.status.apply(lambda rows: [r["url"] for r in rows])
        self.ready = list(checks.values())
        self.register_outputs({"urls": self.urls, "status": self.status, "adminNetworks": self.admin_networks})

    def _create_host(self, name: str, h: Host, backends: list[Backend], colocated: bool,
                     admin_networks: list[str], mpm: str, depends_on: list[pulumi.Resource], converters: Converters):
        step = f"{name}-{h.name}"
        site = pulumi.Output.all([b.address for b in backends], [a for a, _ in converters.members],
                                 converters.clients).apply(
            lambda a: site_config(h.name, members_for(h.name, backends, a[0], colocated), admin_networks,
                                  [{"address": addr, "route": r} for addr, (_, r) in zip(a[1], converters.members)],
                                  a[2]))
        install = run_script(f"{step}-install", h, "web/apache-install.sh.j2", parent=self)
        configure = run_script(f"{step}-configure", h, "web/apache-configure.sh.j2", parent=self,
                               values={"site": site, "site_name": SITE, "mpm": mpm, "mpm_name": MPM_CONF,
                                       "modules": list(MODULES), "other_mpms": list(OTHER_MPMS)},
                               depends_on=[install])
        # Apache serves only once its backends are up: no window of 503s from a fresh frontend.
        # The digest makes a configuration change reach this step, which applies it, and the check
        # after it, which reports (and checks) what Apache runs now, not what it ran before.
        digest = site.apply(lambda text: config_digest(text, mpm))
        start = self.started[h.name] = run_script(f"{step}-start", h, "web/apache-start.sh.j2", parent=self,
                           values={"config_digest": digest}, depends_on=[configure, *depends_on])
        url = pulumi.Output.concat("http://", h.address, "/appsuite/")
        admin_url = pulumi.Output.concat("http://", h.address, f":{ADMIN_PORT}/")
        return run_script(f"{step}-check", h, "web/apache-check.sh.j2", parent=self,
                          values={"url": url, "admin_url": admin_url, "admin_port": ADMIN_PORT,
                                  "config_digest": digest}, depends_on=[start])

"""ReadWriteSplit: OX's path to Galera (oxpedia "HAproxy" and "Clustercheck").

Creates:
- `<name>-<db>-clustercheck` on every Galera node: the clustercheck service on :9200, which
  answers `/` on Synced nodes and `/master` on the single writer;
- `<name>-<mw>-haproxy` on every middleware node: HAProxy with mysql-read (127.0.0.1:3306,
  round robin) and mysql-write (127.0.0.1:3307, the writer), waiting until one writer is UP;
  with document converters also the `converter` listener (127.0.0.1:8008, round robin over the
  frontends' Apache), since one HAProxy per node holds one configuration.

ConverterProxy: the same step with only the converter listener, for an estate with converters
but without Galera (`<name>-<mw>-haproxy`).
"""

from __future__ import annotations

import pulumi

from .galera import GaleraCluster
from .hosts import Host
from .parse import parse_json_line
from .remote import run_script
from .render import render, verbatim

CLUSTERCHECK_DIR = "/usr/local/lib/ox-estate"
CLUSTERCHECK = f"{CLUSTERCHECK_DIR}/clustercheck.py"
# One OX node holds a few hundred DB connections (its pools); HAProxy needs two FDs for each,
# and the page's 256000 fails to start where the FD limit is lower (20000 was seen here).
MAXCONN = 4096


class ReadWriteSplit(pulumi.ComponentResource):
    write_endpoint = "127.0.0.1:3307"
    read_endpoint = "127.0.0.1:3306"
    proxies: pulumi.Output[list]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, galera: GaleraCluster, galera_hosts: list[Host], mw_hosts: list[Host],
                 opts: pulumi.ResourceOptions | None = None, converter_frontends: list[Host] = ()):
        super().__init__("ox-estate:db:ReadWriteSplit", name, None, opts)

        checks = []
        for h in galera_hosts:
            peers = [p.address for p in galera_hosts if p is not h]
            files = pulumi.Output.all(h.address, *peers).apply(lambda addrs: {
                "program_text": verbatim("files/clustercheck.py"),
                **{key: render(template, program=CLUSTERCHECK, self_address=addrs[0], peers=addrs[1:])
                   for key, template in (("unit_text", "files/ox-clustercheck.service.j2"),
                                         ("init_text", "files/ox-clustercheck.init.j2"))},
            })
            checks.append(run_script(f"{name}-{h.name}-clustercheck", h, "db/clustercheck.sh.j2", parent=self,
                                     values={"program": CLUSTERCHECK, "program_dir": CLUSTERCHECK_DIR,
                                             "files": files},
                                     # Its own node Synced (verify) is all it needs: its account and the
                                     # writer table come with the bootstrap, not with the OX grants, which
                                     # run meanwhile (whatever logs in as openexchange waits for them).
                                     depends_on=[galera.verified[h.name]]))

        proxies = haproxy_steps(name, self, mw_hosts, galera_hosts, converter_frontends, depends_on=checks)
        self.proxies = _parsed(name, proxies)
        self.ready = list(proxies.values())
        self.register_outputs({"writeEndpoint": self.write_endpoint, "readEndpoint": self.read_endpoint,
                               "proxies": self.proxies})


class ConverterProxy(pulumi.ComponentResource):
    """HAProxy's converter listener on every middleware node, where no Galera split needs HAProxy."""

    proxies: pulumi.Output[list]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, mw_hosts: list[Host], frontends: list[Host],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:mw:ConverterProxy", name, None, opts)
        proxies = haproxy_steps(name, self, mw_hosts, [], frontends)
        self.proxies = _parsed(name, proxies)
        self.ready = list(proxies.values())
        self.register_outputs({"proxies": self.proxies})


def _pairs(hosts: list[Host]) -> pulumi.Output[list]:
    return pulumi.Output.all(*[pulumi.Output.all(h.name, h.address) for h in hosts])


def haproxy_steps(name: str, parent: pulumi.Resource, mw_hosts: list[Host], galera_hosts: list[Host],
                  converter_frontends: list[Host], depends_on: list[pulumi.Resource] = ()) -> dict:
    """`<name>-<mw>-haproxy` on every middleware node: one haproxy.cfg with the Galera listeners
    (if `galera_hosts`) and the converter listener (if `converter_frontends`)."""
    config = pulumi.Output.all(_pairs(galera_hosts), _pairs(converter_frontends)).apply(lambda p: render(
        "files/haproxy.cfg.j2", nodes=p[0], converter_frontends=p[1], maxconn=MAXCONN))
    return {h.name: run_script(f"{name}-{h.name}-haproxy", h, "mw/haproxy.sh.j2", parent=parent,
                               values={"config": config, "galera": bool(galera_hosts)}, depends_on=depends_on)
            for h in mw_hosts}


def _parsed(name: str, proxies: dict) -> pulumi.Output[list]:
    return pulumi.Output.all(*[
        p.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-haproxy", out)) for n, p in proxies.items()
    ])

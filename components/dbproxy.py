"""ReadWriteSplit: OX's path to Galera (oxpedia "HAproxy" and "Clustercheck").

Creates:
- `<name>-<db>-clustercheck` on every Galera node: the clustercheck service on :9200, which
  answers `/` on Synced nodes and `/master` on the single writer;
- `<name>-<mw>-haproxy` on every middleware node: HAProxy with mysql-read (127.0.0.1:3306,
  round robin) and mysql-write (127.0.0.1:3307, the writer), waiting until one writer is UP.
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
                 opts: pulumi.ResourceOptions | None = None):
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
                                             "files": files}, depends_on=galera.ready))

        nodes = pulumi.Output.all(*[pulumi.Output.all(h.name, h.address) for h in galera_hosts])
        config = nodes.apply(lambda n: render("files/haproxy.cfg.j2", nodes=n, maxconn=MAXCONN))
        proxies = {h.name: run_script(f"{name}-{h.name}-haproxy", h, "mw/haproxy.sh.j2", parent=self,
                                      values={"config": config}, depends_on=checks) for h in mw_hosts}
        self.proxies = pulumi.Output.all(*[
            p.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-haproxy", out)) for n, p in proxies.items()
        ])
        self.ready = list(proxies.values())
        self.register_outputs({"writeEndpoint": self.write_endpoint, "readEndpoint": self.read_endpoint,
                               "proxies": self.proxies})

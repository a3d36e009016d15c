"""GaleraCluster: a MariaDB Galera cluster of an odd number (>= 3) of nodes.

Creates, as steps named `<cluster>-<node>-<phase>`:
- install (every node, in parallel): the server, Galera and SST packages;
- configure (every node, in parallel): ox.conf.d (tunings sized from the node's memory, wsrep,
  host), the SST credentials and root's client file; initializes the datadir only if absent;
- probe, recover (every node, in parallel; galera_recovery_steps): safe recovery of a cluster with
  no Primary component (the node with the highest seqno bootstraps, or the deploy is refused);
- bootstrap (first node): a new cluster only if no member is running and it is safe, then the
  root password and the least-privileged mariabackup SST user;
- join (each other node, one after the other): start, wait for Synced; its first start uses rsync SST
  (fast, but it blocks the donor) when a Synced member says the cluster holds no data yet, else the
  configured method (galera-join.sh.j2, ox_galera_join_sst_method);
- a settings change: configure applies what it can at runtime and leaves the rest pending;
  bootstrap and join (which carry a digest of their node's files, so they run again exactly
  then) restart their node as a member and wait until it is Synced with every member again, in
  the same chain: a rolling restart. The writer (clustercheck's choice, made at runtime) is skipped
  there and restarted by the restart-last steps, chained after the last join, so writes move once;
- restart-last (every node, one after the other, after the last join): see above;
- verify (every node, after the last restart-last): size, Primary, Synced, ready; fails otherwise;
- ox-grants (first node): the 'openexchange' user for every middleware host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from ..core.hosts import Host
from ..core.parse import parse_json_line
from ..core.remote import phase_steps
from ..core.secrets import native_hash
from . import mycnf
from .galera_recovery_steps import recovery_steps
from .grants import grant_openexchange
from .mariadb import DATADIR, DbPasswords, config_digest, install_and_configure

SST_USER = "sstuser"


@dataclass(frozen=True)
class GaleraClusterArgs:
    hosts: list[Host]  # the nodes (odd, >= 3); the first bootstraps a new cluster
    facts: Mapping[str, pulumi.Output[dict]]  # each node's own facts (memoryMb, cpus)
    passwords: DbPasswords
    ox_clients: list[pulumi.Input[str]]  # the middleware addresses the 'openexchange' grants admit
    server: mycnf.ServerSettings
    cluster_name: str = "ox-galera"  # wsrep_cluster_name
    sst_method: str = "mariabackup"
    gcache_size: str = "128M"
    force_bootstrap_node: str | None = None  # recovery override (components/db/galera_recovery.py)
    # Where OX reaches it: the HAProxy listeners on every middleware node (ReadWriteSplit).
    read_port: int = 3306
    write_port: int = 3307


class GaleraCluster(pulumi.ComponentResource):
    node_addresses: list[pulumi.Input[str]]
    cluster_name: str
    # As OX sees them: through the HAProxy on each middleware node, which sends writes to the one
    # node clustercheck names as writer and spreads reads over every Synced node.
    write_endpoint: str
    read_endpoint: str
    status: pulumi.Output[list]
    ready: list[pulumi.Resource]
    verified: dict[str, pulumi.Resource]
    # configdb.properties com.openexchange.database.replicationMonitor: wsrep_sync_wait=1 makes reads causal, so OX needs no replication monitor.
    replication_monitor = False

    def __init__(self, name: str, args: GaleraClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:db:GaleraCluster", name, None, opts)
        hosts, secrets = args.hosts, args.passwords
        self.cluster_name = args.cluster_name
        self.node_addresses = [h.address for h in hosts]
        self.write_endpoint, self.read_endpoint = f"127.0.0.1:{args.write_port}", f"127.0.0.1:{args.read_port}"
        # configure writes the client files (they log in: the passwords); bootstrap sets the accounts
        # (the hashes: what the statements carry reaches galera.cache on every node).
        db_secrets = {"MYSQL_ROOT_PASSWORD": secrets.root, "SST_PASSWORD": secrets.sst}
        account_hashes = {"MYSQL_ROOT_HASH": native_hash(secrets.root), "SST_HASH": native_hash(secrets.sst)}

        step = phase_steps(name, self, "db/")

        files = {h.name: _files(args, h, self.node_addresses) for h in hosts}
        configured = {h.name: install_and_configure(step, h, args.server.release, files[h.name], db_secrets,
                                                    galera=True, sst_user=SST_USER) for h in hosts}
        common = {"datadir": DATADIR}

        # Safe recovery (galera_recovery_steps): probe every node, bootstrap the one with the highest
        # seqno if no Primary component runs, or refuse; the chain below then joins the rest to it.
        recovered = recovery_steps(step, name, hosts, configured, [config_digest(files[h.name]) for h in hosts],
                                   args.cluster_name, args.force_bootstrap_node)

        first, *others = hosts
        previous = step(first, "bootstrap", "galera-bootstrap.sh.j2", secrets=account_hashes,
                        values={**common, "cluster_name": args.cluster_name, "sst_user": SST_USER,
                                "peers": [h.address for h in others], "node_addresses": self.node_addresses,
                                "config_digest": config_digest(files[first.name])},
                        depends_on=[configured[first.name], *recovered])
        # Serial joins: each waits for the previous node to be Synced. A settings change restarts
        # the nodes along the same chain: a rolling restart, one node at a time.
        # The join decides its state transfer method live (rsync while the cluster holds no data):
        # it asks the other nodes as the probe account, which logs in with the SST password.
        for h in others:
            previous = step(h, "join", "galera-join.sh.j2", secrets={"SST_PASSWORD": secrets.sst},
                            values={**common, "cluster_name": args.cluster_name,
                                    "config_digest": config_digest(files[h.name]),
                                    "sst_method": args.sst_method,
                                    "peers": [p.address for p in hosts if p is not h]},
                            depends_on=[configured[h.name], previous])

        # The writer-last pass: the steps above restart every node but the writer (the node
        # clustercheck names, decided at runtime); these, chained after the last join, restart the
        # node that still has a restart pending. So writes move once in a rolling change.
        for h in hosts:
            previous = step(h, "restart-last", "galera-restart-last.sh.j2",
                            values={"cluster_name": args.cluster_name,
                                    "config_digest": config_digest(files[h.name])},
                            depends_on=[previous])

        verified = {h.name: step(h, "verify", "galera-verify.sh.j2", depends_on=[previous],
                                 values={"cluster_name": args.cluster_name, "size": len(hosts)}) for h in hosts}
        self.verified = verified  # host name -> its verify step (clustercheck needs only its own)
        self.status = pulumi.Output.all(*[
            v.stdout.apply(lambda out, n=n: parse_json_line(f"{name}-{n}-verify", out)) for n, v in verified.items()
        ])
        # Galera replicates the user to every node; it is created once, on the bootstrap node.
        grants = grant_openexchange(f"{name}-{first.name}", first, args.ox_clients, secrets.configdb,
                                    parent=self, depends_on=list(verified.values()))
        self.ready = [*verified.values(), grants]
        self.register_outputs({"nodeAddresses": self.node_addresses, "clusterName": self.cluster_name,
                               "writeEndpoint": self.write_endpoint, "readEndpoint": self.read_endpoint,
                               "status": self.status})


def _files(args: GaleraClusterArgs, host: Host, addresses: list) -> pulumi.Output[dict]:
    """ox.conf.d for one node; sized from its own facts, so rendered once those are known."""
    def render(values) -> dict[str, str]:
        mine, node_address, *node_addresses = values
        files = {
            "tunings.cnf": mycnf.tunings_cnf(args.server, mine["memoryMb"]),
            "wsrep.cnf": mycnf.wsrep_cnf(args.server.release, cluster_name=args.cluster_name,
                                         sst_method=args.sst_method, gcache_size=args.gcache_size,
                                         node_addresses=node_addresses, cpus=mine["cpus"]),
            "host.cnf": mycnf.host_cnf(host.name, node_address),
        }
        for file, text in files.items():  # the configure script writes each through a heredoc
            assert text.endswith("\n") and "OX_CNF_EOF" not in text, file
        return files

    return pulumi.Output.all(args.facts[host.name], host.address, *addresses).apply(render)

"""GtidPair: two MariaDB servers replicating with GTID, master/slave or master-master.

Creates, as steps named `<pair>-<host>-<phase>`:
- install, configure (both, in parallel): packages; tunings.cnf + gtid.cnf (server-id, binlog,
  log_slave_updates, gtid_domain_id; the slave read-only; master-master interleaves
  auto-increment); root's client file;
- start (both): the server runs with that config (restarted when configure left settings that
  only a restart applies; it carries a digest of the files, so it runs again exactly then);
- accounts (master): root password, replication user and seed user, only from the peer;
- replica (slave): seed from the master under read_only (always made writable again), then
  CHANGE MASTER ... MASTER_USE_GTID=slave_pos, and wait for both threads and zero lag;
- master-master adds accounts on the second master and the first master replicating from it;
- ox-grants (master): the 'openexchange' user for every middleware host.

A replica already following its master is left alone, so a re-run changes nothing.
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
from .grants import grant_openexchange
from .mariadb import DbPasswords, config_digest, install_and_configure, tunings_only

REPL_USER = "repl"
SEED_USER = "ox_seed"


@dataclass(frozen=True)
class GtidServer:
    host: Host
    server_id: int
    gtid_domain_id: int  # master-master: one per side; a slave shares its master's


@dataclass(frozen=True)
class GtidPairArgs:
    master: GtidServer
    slave: GtidServer  # in master-master mode the second master
    facts: Mapping[str, pulumi.Output[dict]]  # each server's own facts (memoryMb)
    passwords: DbPasswords
    ox_clients: list[pulumi.Input[str]]  # the middleware addresses the 'openexchange' grants admit
    server: mycnf.ServerSettings
    mode: str = "master-slave"  # or "master-master"


class GtidPair(pulumi.ComponentResource):
    master_address: pulumi.Input[str]
    slave_address: pulumi.Input[str]
    replication: pulumi.Output[list]
    ready: list[pulumi.Resource]
    # configdb.properties com.openexchange.database.replicationMonitor: replicas lag; OX must check before reading from the slave.
    replication_monitor = True

    def __init__(self, name: str, args: GtidPairArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:db:GtidPair", name, None, opts)
        both_write = args.mode == "master-master"
        master, slave, secrets = args.master.host, args.slave.host, args.passwords
        self.master_address, self.slave_address = master.address, slave.address
        root = {"MYSQL_ROOT_PASSWORD": secrets.root}
        # The accounts get hashes (what their statements carry reaches the binlog); the replica
        # logs in to its source, so it needs the replication password itself.
        hashes = {"MYSQL_ROOT_HASH": native_hash(secrets.root), "REPLICATION_HASH": native_hash(secrets.replication)}
        repl = {"REPLICATION_PASSWORD": secrets.replication}

        step = phase_steps(name, self, "db/")

        started = {}
        # Slave first: a settings change restarts the slave, then the master (the writes' server)
        # once the slave is back, one at a time; the master's start step waits for the slave's.
        for member, side, read_only in ((args.slave, 2, not both_write), (args.master, 1, False)):
            host = member.host
            files = _files(args, member, side, read_only)
            configured = install_and_configure(step, host, args.server.release, files, root)
            # The digest makes a settings change reach the start step, which restarts for it.
            started[host.name] = step(host, "start", "mariadb-start.sh.j2",
                                      depends_on=[configured, *started.values()],
                                      values={"server_id": member.server_id, "config_digest": config_digest(files)})

        def link(source: Host, replica: Host, seed: bool, after: list) -> pulumi.Resource:
            accounts = step(source, "accounts", "gtid-master-accounts.sh.j2", secrets=hashes, depends_on=after,
                            values={"peer_address": replica.address, "repl_user": REPL_USER, "seed_user": SEED_USER})
            return step(replica, "replica", "gtid-replica.sh.j2", secrets=repl, depends_on=[accounts],
                        values={"source_address": source.address, "repl_user": REPL_USER,
                                "seed_user": SEED_USER, "seed": seed})

        replicas = [link(master, slave, seed=True, after=list(started.values()))]
        if both_write:
            # The seed overwrote the second master's accounts with the first's, so its own come after.
            replicas.append(link(slave, master, seed=False, after=[replicas[0]]))
        self.replication = pulumi.Output.all(*[
            r.stdout.apply(lambda out, n=n: parse_json_line(n, out))
            for n, r in zip([f"{name}-{slave.name}-replica", f"{name}-{master.name}-replica"], replicas)
        ])
        # On the master, once replication runs: the binlog carries the user to the other side.
        grants = grant_openexchange(f"{name}-{master.name}", master, args.ox_clients, secrets.configdb,
                                    parent=self, depends_on=replicas)
        self.ready = [*replicas, grants]
        self.register_outputs({"masterAddress": self.master_address, "slaveAddress": self.slave_address,
                               "mode": args.mode, "replication": self.replication})


def _files(args: GtidPairArgs, member: GtidServer, side: int, read_only: bool) -> pulumi.Output[dict]:
    gtid = mycnf.gtid_cnf(
        role="master" if side == 1 else ("second master" if args.mode == "master-master" else "slave"),
        mode=args.mode, server_id=member.server_id, gtid_domain_id=member.gtid_domain_id,
        auto_increment_offset=side, read_only=read_only,
    )
    return tunings_only(args.server, args.facts[member.host.name], {"gtid.cnf": gtid})

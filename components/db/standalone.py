"""StandaloneDb: one MariaDB server, for proof-of-concept stacks (oxpedia "Standalone database").

Creates `<name>-<host>-install`, `-configure` (tunings.cnf, server-id), `-start` (restarts for
settings configure could not apply at runtime; it carries a digest of the files), and
`-ox-grants` (the 'openexchange' user for every middleware host). OX registers it as a master
with no slave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from ..core.hosts import Host
from ..core.remote import phase_steps
from ..core.secrets import native_hash
from . import mycnf
from .grants import grant_openexchange
from .mariadb import DbPasswords, config_digest, install_and_configure, tunings_only


@dataclass(frozen=True)
class StandaloneDbArgs:
    host: Host
    facts: Mapping[str, pulumi.Output[dict]]  # the host's own facts (memoryMb)
    passwords: DbPasswords
    ox_clients: list[pulumi.Input[str]]  # the middleware addresses the 'openexchange' grants admit
    server: mycnf.ServerSettings
    server_id: int = 1


class StandaloneDb(pulumi.ComponentResource):
    address: pulumi.Input[str]
    ready: list[pulumi.Resource]
    # configdb.properties com.openexchange.database.replicationMonitor: one server: nothing to lag behind.
    replication_monitor = False

    def __init__(self, name: str, args: StandaloneDbArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:db:StandaloneDb", name, None, opts)
        host, secrets = args.host, args.passwords
        self.address = host.address

        step = phase_steps(name, self, "db/")

        files = tunings_only(args.server, args.facts[host.name], {"server.cnf": mycnf.server_cnf(args.server_id)})
        configured = install_and_configure(step, host, args.server.release, files,
                                           {"MYSQL_ROOT_PASSWORD": secrets.root})
        # The digest makes a settings change reach the start step, which restarts for it.
        started = step(host, "start", "mariadb-start.sh.j2", depends_on=[configured],
                       values={"server_id": args.server_id, "config_digest": config_digest(files)})
        root = step(host, "root", "mariadb-root.sh.j2", secrets={"MYSQL_ROOT_HASH": native_hash(secrets.root)},
                    depends_on=[started])
        grants = grant_openexchange(f"{name}-{host.name}", host, args.ox_clients, secrets.configdb,
                                    parent=self, depends_on=[root])
        self.ready = [grants]
        self.register_outputs({"address": self.address})

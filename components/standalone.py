"""StandaloneDb: one MariaDB server, for proof-of-concept stacks (oxpedia "Standalone database").

Creates `<name>-<host>-install`, `-configure` (tunings.cnf, server-id), `-start` (restarts for
settings configure could not apply at runtime; it carries a digest of the files), and
`-ox-grants` (the 'openexchange' user for every middleware host). OX registers it as a master
with no slave.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from . import mycnf
from .config import EstateConfig
from .grants import grant_openexchange
from .hosts import Host
from .mariadb import config_digest, install_and_configure, tunings_only
from .remote import phase_steps
from .secrets import StackSecrets, native_hash


class StandaloneDb(pulumi.ComponentResource):
    address: pulumi.Input[str]
    ready: list[pulumi.Resource]
    # configdb.properties com.openexchange.database.replicationMonitor: one server: nothing to lag behind.
    replication_monitor = False

    def __init__(self, name: str, cfg: EstateConfig, host: Host, facts: Mapping[str, pulumi.Output[dict]], secrets: StackSecrets,
                 ox_clients: list[pulumi.Input[str]], opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:db:StandaloneDb", name, None, opts)
        server_id = cfg.database.standalone.server_id
        self.address = host.address

        step = phase_steps(name, self, "db/")

        files = tunings_only(cfg, facts[host.name], {"server.cnf": mycnf.server_cnf(server_id)})
        configured = install_and_configure(step, host, cfg, files, {"MYSQL_ROOT_PASSWORD": secrets.mysql_root_password})
        # The digest makes a settings change reach the start step, which restarts for it.
        started = step(host, "start", "mariadb-start.sh.j2", depends_on=[configured],
                       values={"server_id": server_id, "config_digest": config_digest(files)})
        root = step(host, "root", "mariadb-root.sh.j2", secrets={"MYSQL_ROOT_HASH": native_hash(secrets.mysql_root_password)},
                    depends_on=[started])
        grants = grant_openexchange(f"{name}-{host.name}", host, ox_clients, secrets.configdb_password,
                                    parent=self, depends_on=[root])
        self.ready = [grants]
        self.register_outputs({"address": self.address})

"""The `ox.conf.d` files every MariaDB server of the estate gets (oxpedia "My.cnf").

`!includedir /etc/mysql/ox.conf.d/` goes last in my.cnf (last one wins), and in it:
tunings.cnf (all servers), wsrep.cnf and host.cnf (Galera nodes), gtid.cnf (GTID pairs).
Pure functions: values in, file text out, so each is checked against the real mariadbd in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.config import DbTuning, EstateConfig
from ..core.render import render
from ..core.versions import AppSuiteLine, DbRelease, DB_RELEASES, appsuite_line

OX_CONF_DIR = "/etc/mysql/ox.conf.d"

# Settings a running server takes with SET GLOBAL, no restart needed: MariaDB has them dynamic
# (`mariadbd --help --verbose` lists every option; the docs and information_schema say which are
# dynamic), and changing one leaves the server's identity and its cluster membership alone. By
# how the option-file value becomes an SQL value: number, size (4096M), text, switch (ON/OFF).
# Left out on purpose, so they wait for a restart: server_id, log_bin, read_only (it comes with a
# change of topology), and the wsrep cluster/provider/node settings (a node would leave or rejoin
# its cluster). The configure step also asks the server whether each is dynamic before it sets it.
RUNTIME_SETTINGS = {
    "max_connections": "number", "max_user_connections": "number", "thread_cache_size": "number",
    "table_open_cache": "number", "table_definition_cache": "number", "sync_binlog": "number",
    "innodb_flush_log_at_trx_commit": "number", "auto_increment_increment": "number",
    "auto_increment_offset": "number", "gtid_domain_id": "number",
    "wsrep_slave_threads": "number", "wsrep_sync_wait": "number",
    "innodb_buffer_pool_size": "size", "innodb_log_file_size": "size", "max_heap_table_size": "size",
    "tmp_table_size": "size", "max_allowed_packet": "size", "binlog_cache_size": "size",
    "sql_mode": "text", "wsrep_sst_method": "text",
    "innodb_strict_mode": "switch", "gtid_strict_mode": "switch",
}
_OPTION = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s*=", re.M)


@dataclass(frozen=True)
class DbSizing:
    buffer_pool_mb: int
    log_file_mb: int
    max_connections: int

    @property
    def max_user_connections(self) -> int:
        # Keep a few connections for root and monitoring when OX has used up its own.
        return self.max_connections - 5


def runtime_settings(files: dict[str, str]) -> dict[str, str]:
    """The RUNTIME_SETTINGS these option files set, with their kinds: what the configure step may
    SET GLOBAL on a running server."""
    names = {m.group(1).replace("-", "_") for text in files.values() for m in _OPTION.finditer(text)}
    return {name: kind for name, kind in sorted(RUNTIME_SETTINGS.items()) if name in names}


@dataclass(frozen=True)
class ServerSettings:
    """What every server's tunings.cnf depends on besides its host's memory."""
    release: DbRelease
    appsuite: str  # the App Suite version (utf8mb4 from 7.10)
    tuning: DbTuning
    sql_mode: str


def release_of(cfg: EstateConfig) -> DbRelease:
    db = cfg.versions.database
    return DB_RELEASES[(db.flavor, db.version)]


def server_settings(cfg: EstateConfig) -> ServerSettings:
    """The stack config's piece the DB tier needs (Estate hands it to each topology's args)."""
    return ServerSettings(release_of(cfg), cfg.versions.appsuite, cfg.database.tuning, cfg.sql_mode)


def sizing(tuning: DbTuning, memory_mb: int) -> DbSizing:
    """Buffer pool as a share of the host's memory; redo log 25% of it (the page's rule)."""
    buffer_pool_mb = max(128, memory_mb * tuning.buffer_pool_percent // 100)
    return DbSizing(
        buffer_pool_mb=buffer_pool_mb,
        log_file_mb=max(48, buffer_pool_mb // 4),
        max_connections=tuning.max_connections,
    )


def tunings_cnf(server: ServerSettings, memory_mb: int) -> str:
    return render(
        "mysql/tunings.cnf.j2",
        release=server.release,
        appsuite=server.appsuite,
        memory_mb=memory_mb,
        sizing=sizing(server.tuning, memory_mb),
        utf8mb4=appsuite_line(server.appsuite) == AppSuiteLine.FROM_7_10,
        durability=server.tuning.durability,
        sql_mode=server.sql_mode,
    )


# Galera's failure detection (wsrep.cnf explains the limits between them and the trade-off).
# Measured in the lab with these: writes through HAProxy move within 3 s of a kill -9 of the writer.
EVS_TIMEOUTS = {
    "suspect_timeout": "PT1S",
    "inactive_timeout": "PT3S",
    "install_timeout": "PT3S",
    "keepalive_period": "PT0.25S",
    "inactive_check_period": "PT0.25S",
    "join_retrans_period": "PT0.25S",
}


def wsrep_cnf(release: DbRelease, *, cluster_name: str, sst_method: str, gcache_size: str,
              node_addresses: list[str], cpus: int) -> str:
    return render(
        "mysql/wsrep.cnf.j2",
        release=release,
        cluster_name=cluster_name,
        node_addresses=node_addresses,
        sst_method=sst_method,
        gcache_size=gcache_size,
        evs=EVS_TIMEOUTS,
        # The page's 32 is for big machines; more appliers than cores only adds contention.
        slave_threads=max(2, min(32, cpus * 2)),
    )


def host_cnf(node_name: str, node_address: str) -> str:
    return render("mysql/host.cnf.j2", node_name=node_name, node_address=node_address)


def gtid_cnf(*, role: str, mode: str, server_id: int, gtid_domain_id: int, auto_increment_offset: int,
             read_only: bool) -> str:
    return render("mysql/gtid.cnf.j2", role=role, mode=mode, server_id=server_id, gtid_domain_id=gtid_domain_id,
                  auto_increment_offset=auto_increment_offset, read_only=read_only)


def server_cnf(server_id: int) -> str:
    return render("mysql/server.cnf.j2", server_id=server_id)

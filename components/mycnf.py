"""The `ox.conf.d` files every MariaDB server of the estate gets (oxpedia "My.cnf").

`!includedir /etc/mysql/ox.conf.d/` goes last in my.cnf (last one wins), and in it:
tunings.cnf (all servers), wsrep.cnf and host.cnf (Galera nodes), gtid.cnf (GTID pairs).
Pure functions: values in, file text out, so each is checked against the real mariadbd in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import EstateConfig
from .render import render
from .versions import AppSuiteLine, DbRelease, DB_RELEASES, appsuite_line

OX_CONF_DIR = "/etc/mysql/ox.conf.d"


@dataclass(frozen=True)
class DbSizing:
    buffer_pool_mb: int
    log_file_mb: int
    max_connections: int

    @property
    def max_user_connections(self) -> int:
        # Keep a few connections for root and monitoring when OX has used up its own.
        return self.max_connections - 5


def release_of(cfg: EstateConfig) -> DbRelease:
    db = cfg.versions.database
    return DB_RELEASES[(db.flavor, db.version)]


def sizing(cfg: EstateConfig, memory_mb: int) -> DbSizing:
    """Buffer pool as a share of the host's memory; redo log 25% of it (the page's rule)."""
    tuning = cfg.database.tuning
    buffer_pool_mb = max(128, memory_mb * tuning.buffer_pool_percent // 100)
    return DbSizing(
        buffer_pool_mb=buffer_pool_mb,
        log_file_mb=max(48, buffer_pool_mb // 4),
        max_connections=tuning.max_connections,
    )


def tunings_cnf(cfg: EstateConfig, memory_mb: int) -> str:
    return render(
        "mysql/tunings.cnf.j2",
        release=release_of(cfg),
        appsuite=cfg.versions.appsuite,
        memory_mb=memory_mb,
        sizing=sizing(cfg, memory_mb),
        bind_address="*",
        utf8mb4=appsuite_line(cfg.versions.appsuite) == AppSuiteLine.FROM_7_10,
        durability=cfg.database.tuning.durability,
        sql_mode=cfg.sql_mode,
    )


def wsrep_cnf(cfg: EstateConfig, node_addresses: list[str], cpus: int) -> str:
    galera = cfg.database.galera
    return render(
        "mysql/wsrep.cnf.j2",
        release=release_of(cfg),
        cluster_name=galera.cluster_name,
        node_addresses=node_addresses,
        sst_method=galera.sst_method,
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

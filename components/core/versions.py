"""What ox-estate knows about database and App Suite versions.

One table per fact, so adding MariaDB 11.x or Oracle MySQL 8 is a new row here
(plus templates), not a hunt through the components. The sql_mode matrix is
the one in oxpedia's my.cnf page; rows for versions newer than the page were
checked on Debian 12 (see shared/lab-findings.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class DbFlavor(StrEnum):
    MARIADB = "mariadb"
    MYSQL = "mysql"


@dataclass(frozen=True)
class DbRelease:
    flavor: DbFlavor
    version: str
    # Debian package names that provide the server (and Galera, where it exists).
    server_package: str
    galera_package: str | None
    galera_provider: str | None
    # Options from the oxpedia pages this release refuses or ignores, with why. The templates
    # leave them out and list them in a comment, so the choice is visible in the rendered file.
    dropped_options: tuple[tuple[str, str], ...] = ()
    # Options renamed since the pages were written: page name -> what this release uses.
    renamed_options: tuple[tuple[str, str], ...] = ()

    def keeps(self, option: str) -> bool:
        return option not in dict(self.dropped_options)


# The releases the templates are written and lab-tested for. Keys are "flavor version".
DB_RELEASES: dict[tuple[DbFlavor, str], DbRelease] = {
    (DbFlavor.MARIADB, "10.11"): DbRelease(
        flavor=DbFlavor.MARIADB,
        version="10.11",
        server_package="mariadb-server",
        galera_package="galera-4",
        galera_provider="/usr/lib/galera/libgalera_smm.so",
        dropped_options=(
            ("innodb_additional_mem_pool_size", "refused: mariadbd will not start (removed in 10.0)"),
            ("innodb_use_sys_malloc", "refused: mariadbd will not start"),
            ("innodb_support_xa", "refused: mariadbd will not start (XA is always on)"),
            ("wsrep_replicate_myisam", "refused: replaced by wsrep_mode=REPLICATE_MYISAM"),
            ("innodb_locks_unsafe_for_binlog", "removed in 10.5: accepted but does nothing"),
            ("innodb_log_files_in_group", "removed in 10.5: one redo log file"),
            ("innodb_buffer_pool_instances", "removed in 10.5: one buffer pool"),
            ("innodb_file_format", "removed: Barracuda is the only format"),
            ("innodb_large_prefix", "removed: large prefixes are always on"),
            ("thread_concurrency", "removed"),
            ("innodb_thread_concurrency", "removed in 10.6: accepted but does nothing"),
        ),
        renamed_options=(("wsrep_causal_reads", "wsrep_sync_wait=1"),),
    ),
}


class AppSuiteLine(StrEnum):
    """App Suite releases grouped the way the my.cnf page's matrix groups them."""

    BEFORE_7_10 = "7.8"
    FROM_7_10 = "7.10+"


# sql_mode per (flavor, version, App Suite line): oxpedia my.cnf "SQL mode matrix".
# MariaDB 10.11 keeps the 10.1/10.2 row: NO_AUTO_CREATE_USER is still accepted there.
SQL_MODE_MATRIX: dict[tuple[DbFlavor, str, AppSuiteLine], tuple[str, ...]] = {
    (DbFlavor.MARIADB, "10.11", AppSuiteLine.FROM_7_10): ("NO_AUTO_CREATE_USER", "NO_ENGINE_SUBSTITUTION"),
}

_APPSUITE_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def appsuite_line(version: str) -> AppSuiteLine:
    """Map an App Suite version string ("7.10.6", "8", "8.30") to its matrix column."""
    m = _APPSUITE_VERSION.match(version)
    if not m:
        raise ValueError(f"'{version}' is not an App Suite version (expected e.g. 7.10.6 or 8.30)")
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return AppSuiteLine.FROM_7_10 if (major, minor) >= (7, 10) else AppSuiteLine.BEFORE_7_10


def supported_releases() -> list[str]:
    return sorted(f"{flavor} {version}" for flavor, version in DB_RELEASES)


def recommended_sql_mode(flavor: DbFlavor, version: str, line: AppSuiteLine) -> tuple[str, ...] | None:
    return SQL_MODE_MATRIX.get((flavor, version, line))


def appsuite_before(version: str, release: tuple[int, ...]) -> bool:
    """Is App Suite `version` older than `release` (e.g. (7, 10, 2))?"""
    m = _APPSUITE_VERSION.match(version)
    if not m:
        raise ValueError(f"'{version}' is not an App Suite version")
    parts = tuple(int(g or 0) for g in m.groups())
    return parts < tuple(release) + (0,) * (3 - len(release))

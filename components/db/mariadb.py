"""What every MariaDB server of the estate gets before its topology's own steps: the packages and
its ox.conf.d. Shared by GaleraCluster, GtidPair and StandaloneDb.

A changed setting on a running server: the configure step applies it at runtime where that is
safe, and leaves the rest in a restart marker; the topology's step that starts the server (start,
or Galera's bootstrap and join) carries `config_digest` of the files, so under the engine it runs
again exactly when they change, and restarts the server for what the marker lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pulumi

from ..core.hosts import Host
from ..core.render import sha256
from ..core.versions import DbRelease
from . import mycnf

DATADIR = "/var/lib/mysql"


@dataclass(frozen=True)
class DbPasswords:
    """The DB tier's secrets: root's, the Galera SST user's, the GTID replication user's, and the
    one OX connects with ('openexchange', the configdbPassword)."""
    root: pulumi.Output[str]
    sst: pulumi.Output[str]
    replication: pulumi.Output[str]
    configdb: pulumi.Output[str]
Step = Callable[..., pulumi.Resource]


def packages(release: DbRelease, galera: bool = False) -> list[str]:
    names = [release.server_package, "mariadb-client", "curl"]
    if galera:
        names += ["mariadb-backup", "socat", "rsync", "python3-pymysql", release.galera_package]
    return names


def install_and_configure(step: Step, host: Host, release: DbRelease, files: pulumi.Input[dict],
                          secrets: dict[str, pulumi.Output[str]], *, galera: bool = False,
                          sst_user: str = "") -> pulumi.Resource:
    """`<host>-install` then `<host>-configure`; returns the configure step."""
    installed = step(host, "install", "mariadb-install.sh.j2",
                     values={"conf_dir": mycnf.OX_CONF_DIR, "packages": packages(release, galera)})
    return step(host, "configure", "mariadb-configure.sh.j2", secrets=secrets, depends_on=[installed],
                values={"conf_dir": mycnf.OX_CONF_DIR, "datadir": DATADIR, "sst_user": sst_user, "files": files,
                        "runtime_settings": pulumi.Output.from_input(files).apply(mycnf.runtime_settings)})


def config_digest(files: pulumi.Input[dict]) -> pulumi.Output[str]:
    """sha256 of one server's ox.conf.d files (name and text of each)."""
    return pulumi.Output.from_input(files).apply(
        lambda f: sha256("".join(f"{name}\n{text}" for name, text in sorted(f.items()))))


def tunings_only(server: mycnf.ServerSettings, facts: pulumi.Output[dict], extra: dict[str, str]) -> pulumi.Output[dict]:
    """tunings.cnf sized from the memory in the host's own facts, plus `extra` files."""
    return facts.apply(lambda f: {"tunings.cnf": mycnf.tunings_cnf(server, f["memoryMb"]), **extra})

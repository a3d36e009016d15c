"""What every MariaDB server of the estate gets before its topology's own steps: the packages and
its ox.conf.d. Shared by GaleraCluster, GtidPair and StandaloneDb."""

from __future__ import annotations

from typing import Callable

import pulumi

from . import mycnf
from .config import EstateConfig
from .hosts import Host

DATADIR = "/var/lib/mysql"
Step = Callable[..., pulumi.Resource]


def packages(cfg: EstateConfig, galera: bool = False) -> list[str]:
    release = mycnf.release_of(cfg)
    names = [release.server_package, "mariadb-client", "curl"]
    if galera:
        names += ["mariadb-backup", "socat", "rsync", "python3-pymysql", release.galera_package]
    return names


def install_and_configure(step: Step, host: Host, cfg: EstateConfig, files: pulumi.Input[dict],
                          secrets: dict[str, pulumi.Output[str]], *, galera: bool = False,
                          sst_user: str = "") -> pulumi.Resource:
    """`<host>-install` then `<host>-configure`; returns the configure step."""
    installed = step(host, "install", "mariadb-install.sh.j2",
                     values={"conf_dir": mycnf.OX_CONF_DIR, "packages": packages(cfg, galera)})
    return step(host, "configure", "mariadb-configure.sh.j2", secrets=secrets, depends_on=[installed],
                values={"conf_dir": mycnf.OX_CONF_DIR, "datadir": DATADIR, "sst_user": sst_user, "files": files})


def tunings_only(cfg: EstateConfig, host: Host, facts: pulumi.Output[dict], extra: dict[str, str]) -> pulumi.Output[dict]:
    """tunings.cnf sized from the host's memory, plus `extra` files."""
    return facts.apply(lambda f: {"tunings.cnf": mycnf.tunings_cnf(cfg, f[host.name]["memoryMb"]), **extra})

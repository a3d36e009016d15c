"""The database user OX connects as: one place for its name and privileges."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from ..core.hosts import Host
from ..core.remote import run_script
from ..core.secrets import native_hash

OX_DB_USER = "openexchange"
# oxpedia "Creating Open-Xchange user" (grep GRANT /opt/open-xchange/sbin/initconfigdb).
OX_DB_PRIVILEGES = ("CREATE, LOCK TABLES, REFERENCES, INDEX, DROP, DELETE, ALTER, SELECT, UPDATE, INSERT, "
                    "CREATE TEMPORARY TABLES, SHOW VIEW, SHOW DATABASES")


def grant_openexchange(name: str, write_instance: Host, clients: Sequence[pulumi.Input[str]],
                       password: pulumi.Output[str], parent: pulumi.Resource,
                       depends_on: Sequence[pulumi.Resource]) -> pulumi.Resource:
    """`<name>-ox-grants` on a write instance, for each middleware address in `clients`."""
    return run_script(f"{name}-ox-grants", write_instance, "db/ox-grants.sh.j2", parent=parent,
                      values={"user": OX_DB_USER, "privileges": OX_DB_PRIVILEGES, "clients": list(clients)},
                      secrets={"CONFIGDB_HASH": native_hash(password)}, depends_on=depends_on)

"""OXRegistration: OX's registration chain, once per OX cluster, each id parsed from stdout.

`registerserver` -> `registerfilestore` -> `registerdatabase -m true` for each write instance ->
`registerdatabase -m false -M <that id>` for its read instance -> optional `createcontext`.

Each step asks `list* --csv` first and adopts an existing registration of the same name,
printing the same id line, so a re-run registers nothing twice. Destroying the stack
unregisters (server, filestore, databases), but never a database or filestore that holds
contexts; contexts are never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from ..core.config import FirstContext
from ..core.hosts import Host
from ..core.parse import parse_context_id, parse_registered_id
from ..core.remote import run_script
from ..core.secrets import StackSecrets
from ..db.grants import OX_DB_USER


@dataclass(frozen=True)
class UserDb:
    """A database OX registers: its write instance, and its read instance if it has one."""
    name: str
    write_host: pulumi.Input[str]
    read_host: pulumi.Input[str] | None
    # The `openexchange` password OX uses for it: another stack's (components/core/stackref.py);
    # None: this stack's own (the configdb's).
    password: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class OXRegistrationArgs:
    admin_host: Host  # where the CLTs run: its admin daemon answers
    userdbs: list[UserDb]
    filestore_uri: str  # registerfilestore -t
    secrets: StackSecrets
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # the admin daemon, the filestore
    server_name: str = "oxserver"  # registerserver -n
    filestore_size_mb: int = 1_000_000  # registerfilestore -s
    filestore_max_contexts: int = 5000  # registerfilestore -x
    first_context: FirstContext | None = None  # createcontext, once


class OXRegistration(pulumi.ComponentResource):
    server_id: pulumi.Output[int]
    filestore_id: pulumi.Output[int]
    database_ids: pulumi.Output[dict]
    context_id: pulumi.Output[int] | None

    def __init__(self, name: str, args: OXRegistrationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:mw:Registration", name, None, opts)
        host, secrets = args.admin_host, args.secrets
        admin = {"OX_ADMIN_MASTER_PASSWORD": secrets.ox_admin_master_password}

        def step(phase: str, template: str, parse, undo: tuple[str, str, str] | None = None,
                 **kw) -> tuple[pulumi.Resource, pulumi.Output[int]]:
            """undo: (kind, list column, key) of what `unregister.sh.j2` removes on destroy."""
            step_name = f"{name}-{phase}"
            if undo:
                kind, match, key = undo
                kw["values"] = {**kw["values"], "kind": kind, "match": match, "key": key}
                kw.update(delete_template="mw/unregister.sh.j2")
            command = run_script(step_name, host, f"mw/{template}", parent=self, **kw)
            return command, command.stdout.apply(lambda out: parse(step_name, out))

        server_name = args.server_name
        server, self.server_id = step(
            "server", "register-server.sh.j2", lambda s, o: parse_registered_id(s, o, "server"),
            values={"name": server_name}, secrets=admin, depends_on=args.depends_on,
            undo=("server", "name", server_name))

        uri = args.filestore_uri
        filestore, self.filestore_id = step(
            "filestore", "register-filestore.sh.j2", lambda s, o: parse_registered_id(s, o, "filestore"),
            values={"uri": uri, "size_mb": args.filestore_size_mb, "max_contexts": args.filestore_max_contexts},
            secrets=admin, depends_on=[server], undo=("filestore", "uri", uri))

        ids: dict[str, pulumi.Output[int]] = {}
        last = filestore
        for db in args.userdbs:
            db_secrets = {**admin, "CONFIGDB_PASSWORD": db.password or secrets.configdb_password}
            master, master_id = self._database(step, db.name, db.write_host, None, db_secrets, [last])
            ids[db.name] = master_id
            last = master
            if db.read_host is not None:  # the master's printed id goes into the slave's -M
                last, ids[f"{db.name}_read"] = self._database(step, f"{db.name}_read", db.read_host, master_id,
                                                              db_secrets, [master])
        self.database_ids = pulumi.Output.all(**ids) if ids else pulumi.Output.from_input({})

        self.context_id = None
        first = args.first_context
        if first:
            _, self.context_id = step(
                "context", "create-context.sh.j2", parse_context_id, depends_on=[last],
                secrets={**admin, "OX_CONTEXT_ADMIN_PASSWORD": secrets.ox_context_admin_password},
                values={"context_id": first.context_id, "name": first.name, "admin_user": first.admin_user,
                        "admin_email": first.admin_email, "quota_mb": first.quota_mb, "mappings": first.mappings})

        self.register_outputs({"serverId": self.server_id, "filestoreId": self.filestore_id,
                               "databaseIds": self.database_ids, "contextId": self.context_id})

    @staticmethod
    def _database(step, db_name: str, db_host, master_id, db_secrets, after):
        return step(
            f"database-{db_name.replace('_', '-')}", "register-database.sh.j2",
            lambda s, o: parse_registered_id(s, o, "database"),
            values={"name": db_name, "db_host": db_host, "db_user": OX_DB_USER, "master_id": master_id,
                    "max_units": 1000},
            secrets=db_secrets, depends_on=after, undo=("database", "display_name", db_name))

"""The stack's secrets: from config secrets where set, generated with pulumi_random otherwise.

Every value here is a secret Output. Generated passwords are stored (encrypted) in the stack
state, so they stay the same from one `pulumi up` to the next.

`native_hash` turns a database password into the hash MariaDB stores for it: the account steps
send that (`IDENTIFIED BY PASSWORD '<hash>'`), never the password, so no statement the server
logs (binlog, galera.cache, relay log) carries a password in clear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_random as random

from .config import EstateConfig


@dataclass(frozen=True)
class StackSecrets:
    ssh_private_key: pulumi.Output[str]
    mysql_root_password: pulumi.Output[str]
    sst_password: pulumi.Output[str]
    replication_password: pulumi.Output[str]
    configdb_password: pulumi.Output[str]
    ox_admin_master_password: pulumi.Output[str]
    hazelcast_group_password: pulumi.Output[str]
    ox_context_admin_password: pulumi.Output[str]
    ox_repository_password: pulumi.Output[str] | None  # only from config: never generated


def stack_secrets(cfg: EstateConfig, parent: pulumi.Resource) -> StackSecrets:
    def secret(field: str) -> pulumi.Output[str]:
        configured = getattr(cfg.secrets, field)
        if configured is not None:
            return pulumi.Output.secret(configured.get_secret_value())
        # Letters and digits only: these land in my.cnf client files, properties files and
        # SQL literals, where quoting rules differ; 32 of them are ~190 bits.
        generated = random.RandomPassword(
            field.replace("_", "-"), length=32, special=False, opts=pulumi.ResourceOptions(parent=parent)
        )
        return generated.result

    repository = cfg.secrets.ox_repository_password
    return StackSecrets(
        ssh_private_key=pulumi.Output.secret(cfg.secrets.ssh_private_key.get_secret_value()),
        ox_repository_password=pulumi.Output.secret(repository.get_secret_value()) if repository else None,
        **{f: secret(f) for f in StackSecrets.__dataclass_fields__ if f not in ("ssh_private_key", "ox_repository_password")},
    )


def mysql_native_hash(password: str) -> str:
    """MariaDB's PASSWORD(password): the mysql_native_password hash, '*' + SHA1(SHA1(pw)) in hex.

    It is what mysql.global_priv stores, and for native auth it is as good as a credential, so it
    is handled like one: a secret, sent on stdin, never rendered into a script.
    """
    return "*" + hashlib.sha1(hashlib.sha1(password.encode("utf-8")).digest()).hexdigest().upper()


def native_hash(password: pulumi.Input[str]) -> pulumi.Output[str]:
    """`mysql_native_hash` of a secret password, as a secret Output."""
    return pulumi.Output.secret(pulumi.Output.from_input(password).apply(mysql_native_hash))

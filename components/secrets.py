"""The stack's secrets: from config secrets where set, generated with pulumi_random otherwise.

Every value here is a secret Output. Generated passwords are stored (encrypted) in the stack
state, so they stay the same from one `pulumi up` to the next.
"""

from __future__ import annotations

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

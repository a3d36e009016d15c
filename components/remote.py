"""The one place that turns a rendered script into a `pulumi_command.remote.Command`.

A step is a template under `templates/scripts/`, rendered with plain values (Outputs allowed),
run with bash on one host. What this module guarantees for every step:

- The script starts with the shared prelude (`set -Eeuo pipefail`, `ox_fail`, `ox_wait_for`,
  `ox_read_secrets`) and every error names the host and the step.
- Secrets travel only on stdin, as `NAME=<base64>` lines the prelude decodes into shell
  variables. They are never rendered into the script, so never on a command line (argv is
  visible in `ps`) and never in `create`; a script built from a secret value is refused.
- A step that reads secrets has `logging: none`, so nothing it prints is streamed.
- `triggers` is the sha256 of the rendered script. A step with an undo (`delete`) keys its
  triggers on what it creates (`identity`) instead, so editing its script updates it in place
  rather than replacing it, because a replacement runs the undo: for such steps
  `delete_before_replace` makes the old undo run before the new create, never after it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi_command import remote

from .hosts import Host
from .render import render, sha256


_SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class SecretInScriptError(RuntimeError):
    """Not a ValueError: the SDK re-wraps a ValueError raised from an input, hiding its type."""


def run_script(
    name: str,
    host: Host,
    template: str,
    *,
    parent: pulumi.Resource,
    values: Mapping[str, Any] | None = None,
    secrets: Mapping[str, pulumi.Input[str]] | None = None,
    delete_template: str | None = None,
    identity: Sequence[str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
) -> remote.Command:
    """Run `templates/scripts/<template>` on `host` as the step `name`.

    values:  rendered into the script; may be Outputs (ids from earlier steps), never secrets.
    secrets: name -> secret value; the script gets them with `ox_read_secrets` as $NAME.
    delete_template: the undo, rendered with the same values; it gets no secrets on stdin.
    identity: what the step creates (for example a registration name); required with an undo.
    """
    values = dict(values or {})
    secrets = dict(secrets or {})
    bad = [k for k in secrets if not _SECRET_NAME.match(k)]
    if bad:
        raise ValueError(f"step {name}: secret names must be shell variable names in capitals: {bad}")
    if delete_template and not identity:
        raise ValueError(f"step {name}: a step with an undo needs an identity")

    create = _command(name, host, template, values)
    delete = _command(name, host, delete_template, values) if delete_template else None
    stdin = _stdin(secrets) if secrets else None
    triggers = [sha256("\n".join(identity))] if identity else [create.apply(sha256)]

    return remote.Command(
        name,
        connection=host.connection,
        create=create,
        delete=delete,
        stdin=stdin,
        triggers=triggers,
        logging=remote.Logging.NONE if secrets else remote.Logging.STDOUT_AND_STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*host.ready, *depends_on],
            delete_before_replace=bool(delete_template),
        ),
    )


def phase_steps(component: str, parent: pulumi.Resource, template_dir: str = ""):
    """`step(host, phase, template, **kw)`: a `run_script` named `<component>-<host>-<phase>`,
    with its template under `scripts/<template_dir>` and `parent` as its parent."""

    def step(host: Host, phase: str, template: str, **kw) -> remote.Command:
        return run_script(f"{component}-{host.name}-{phase}", host, f"{template_dir}{template}", parent=parent, **kw)

    return step


def render_step(step: str, host_name: str, template: str, values: Mapping[str, Any]) -> str:
    """The full script of a step: the shared prelude, then `templates/scripts/<template>`."""
    return render("prelude.sh.j2", step=step, host=host_name) + render(
        f"scripts/{template}", step=step, host=host_name, **values
    )


def command_line(step: str, script: str) -> str:
    """`bash -c '<script>' <step>`: what the provider runs; visible in `ps`, so never a secret."""
    return render("command.j2", script=script, step=step)


def _command(step: str, host: Host, template: str, values: dict[str, Any]) -> pulumi.Output[str]:
    # Output.all() of nothing is a list, not a dict.
    resolved = pulumi.Output.all(**values) if values else pulumi.Output.from_input({})
    script = resolved.apply(lambda v: render_step(step, host.name, template, v))
    return _refuse_secret(step, script).apply(lambda s: command_line(step, s))


def _refuse_secret(step: str, script: pulumi.Output[str]) -> pulumi.Output[str]:
    async def checked() -> str | None:
        if await script.is_secret():
            raise SecretInScriptError(
                f"step {step}: a secret value was rendered into the script; pass it in `secrets` (stdin)"
            )
        return await script.future()

    return pulumi.Output(script.resources(), checked(), script.is_known(), script.is_secret())


def _stdin(secrets: dict[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    def lines(values: dict[str, str]) -> str:
        return "".join(f"{k}={base64.b64encode(str(v).encode()).decode()}\n" for k, v in sorted(values.items()))

    return pulumi.Output.secret(pulumi.Output.all(**secrets).apply(lines))

"""The one place that turns a rendered script into a `pulumi_command.remote.Command`.

A step is a template under `templates/scripts/`, rendered with plain values (Outputs allowed),
run with bash on one host. What this module guarantees for every step:

- The script starts with the shared prelude (`set -Eeuo pipefail`, `ox_fail`, `ox_wait_for`,
  `ox_read_secrets`) and every error names the host and the step.
- Secrets travel only on stdin, as `NAME=<base64>` lines the prelude decodes into shell
  variables. They are never rendered into the script, so never on a command line (argv is
  visible in `ps`) and never in `create`; a script built from a secret value is refused.
- A step that reads secrets has `logging: none`, so nothing it prints is streamed.
- No `triggers`: under the engine a step runs again only when its own inputs change (its script,
  stdin or connection), and then it is *updated*, which re-runs its `create`; it is never
  replaced, so no config change (a rename, a rotated SSH key, a new bastion) runs an undo. Only
  removing the thing itself does. Every script probes before it acts, so a re-run is safe.
- Converge: the steps whose template is in `CONVERGING` (services up, mounts, checks, the
  adopt-or-register registrations) carry the stack's `converge` token in their script, so a new
  token re-runs exactly those (an update, never a replacement) and they repair what drifted.
- Ordering at scale: a step's dependencies reach the engine as they are, but the SDK checks every
  new dependency for a cycle by walking everything the dependency waits for, so an estate of N
  hosts cost N x N. A step therefore waits for a stand-in of each dependency (`_after`), and many
  steps that wait for many others wait for one `waypoint` between them instead.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.resource import DependencyResource
from pulumi_command import remote

from .config_fields import converge_token
from .hosts import Host
from .render import Rendered, render


_SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


# Probe-and-repair steps: re-running one brings its piece back to what the config says (a stopped
# service started, a lost mount mounted, a check run again) and changes nothing that is right.
CONVERGING = frozenset({
    "firewall.sh.j2",  # a flushed or edited nftables table is loaded again
    "db/mariadb-start.sh.j2", "db/galera-bootstrap.sh.j2", "db/galera-join.sh.j2", "db/galera-verify.sh.j2",
    "db/galera-probe.sh.j2", "db/galera-recover.sh.j2",
    "db/gtid-replica.sh.j2", "db/clustercheck.sh.j2",
    "mw/haproxy.sh.j2", "mw/ox-configure.sh.j2",
    "web/balancer-readmit.sh.j2",  # each member back as the config says (drained or not, enabled)
    "mw/register-server.sh.j2", "mw/register-filestore.sh.j2", "mw/register-database.sh.j2",
    "mw/create-context.sh.j2",
    "fs/nfs-server.sh.j2", "fs/nfs-client.sh.j2", "fs/filestore-check.sh.j2",
    "web/apache-start.sh.j2", "web/apache-check.sh.j2",
    "net/keepalived.sh.j2", "net/vip-answers.sh.j2",  # a stopped keepalived is started again
})


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
    depends_on: Sequence[pulumi.Resource] = (),
) -> remote.Command:
    """Run `templates/scripts/<template>` on `host` as the step `name`.

    values:  rendered into the script; may be Outputs (ids from earlier steps), never secrets.
    secrets: name -> secret value; the script gets them with `ox_read_secrets` as $NAME.
    delete_template: the undo, rendered with the same values; it gets no secrets on stdin. It
        runs only when the step leaves the program (or the stack is destroyed).
    """
    values = dict(values or {})
    secrets = dict(secrets or {})
    bad = [k for k in secrets if not _SECRET_NAME.match(k)]
    if bad:
        raise ValueError(f"step {name}: secret names must be shell variable names in capitals: {bad}")

    converge = converge_token(host.converge) if host.converge and template in CONVERGING else ""
    create = _command(name, host, template, values, converge)
    delete = _command(name, host, delete_template, values) if delete_template else None
    stdin = _stdin(secrets) if secrets else None

    return remote.Command(
        name,
        connection=host.connection,
        create=create,
        delete=delete,
        stdin=stdin,
        logging=remote.Logging.NONE if secrets else remote.Logging.STDOUT_AND_STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[_after(r) for r in dict.fromkeys([*host.ready, *depends_on])],
            # Nothing here replaces a step; should a user's change ever do so, the old undo must
            # run before the new create, never after it.
            delete_before_replace=bool(delete_template),
            # Earlier versions set triggers (replace-on-change); a stack deployed with one of them
            # must not see their removal as a change, or every step would be replaced, undo first.
            ignore_changes=["triggers"],
        ),
    )


def waypoint(name: str, host: Host, what: str, waits_for: Sequence[pulumi.Resource], *,
             parent: pulumi.Resource) -> remote.Command:
    """A step that only waits for `waits_for` (on `host`, which it leaves as it is): M steps that
    each need all of K others depend on it, and the graph holds M + K edges instead of M x K, with
    the same order. It is a remote command because every dependency must be a real resource (a
    component's dependents wait for each of its children, which is the M x K again)."""
    return run_script(name, host, "waypoint.sh.j2", parent=parent, values={"what": what}, depends_on=waits_for)


def behind(step: pulumi.Resource, value: pulumi.Output) -> pulumi.Output:
    """`value`, recorded as depending on `step` alone, where `step` waits for every resource that
    `value` came from (a waypoint): a step using it depends on one resource, not on all of them."""
    return pulumi.Output(asyncio.ensure_future(_resources_of(step)), asyncio.ensure_future(value.future(True)),
                         asyncio.ensure_future(value.is_known()), asyncio.ensure_future(value.is_secret()))


async def _resources_of(step: pulumi.Resource) -> set[pulumi.Resource]:
    return {await _stand_in(step)}


def _after(resource: pulumi.Resource) -> pulumi.Input[pulumi.Resource]:
    """A dependency on `resource` with the same URN and order: ready once `resource` is (its URN
    resolves when it is created), but a resource of no dependencies of its own, so the SDK's
    cycle check (pulumi/runtime/resource_cycle_breaker.py) does not walk everything `resource`
    waits for again at every dependency on it. Our steps cannot form a cycle: a step only ever
    waits for steps that were created before it. A component stays itself (its dependents wait
    for its children)."""
    if not isinstance(resource, pulumi.CustomResource):
        return resource
    return pulumi.Output(set(), asyncio.ensure_future(_stand_in(resource)), _done(True), _done(False))


async def _stand_in(resource: pulumi.Resource) -> DependencyResource:
    return DependencyResource(await resource.urn.future())


def _done(value: bool) -> asyncio.Future:
    done = asyncio.get_event_loop().create_future()
    done.set_result(value)
    return done


def phase_steps(component: str, parent: pulumi.Resource, template_dir: str = ""):
    """`step(host, phase, template, **kw)`: a `run_script` named `<component>-<host>-<phase>`,
    with its template under `scripts/<template_dir>` and `parent` as its parent."""

    def step(host: Host, phase: str, template: str, **kw) -> remote.Command:
        return run_script(f"{component}-{host.name}-{phase}", host, f"{template_dir}{template}", parent=parent, **kw)

    return step


def render_step(step: str, host_name: str, template: str, values: Mapping[str, Any], converge: str = "") -> str:
    """The full script of a step: the shared prelude, then `templates/scripts/<template>`."""
    return Rendered(render("prelude.sh.j2", step=step, host=host_name, converge=converge) + render(
        f"scripts/{template}", step=step, host=host_name, **values
    ))


def command_line(step: str, script: str, sudo: bool = False) -> str:
    """`bash -c '<script>' <step>`: what the provider runs; visible in `ps`, so never a secret.
    With `sudo`, prefixed by `sudo -n -H --` (`SUDO_PREFIX`): the SSH user is not root."""
    # A whole script spans lines by nature: it is one shell word for `bash -c`, quoted as such.
    return render("command.j2", script=Rendered(script), step=step, sudo=sudo)


# What command.j2 puts before `bash -c` for a host whose SSH user is not root. -n: never prompt
# (no terminal; a password-protected sudo fails at once, saying so); -H: root's HOME, as if root.
SUDO_PREFIX = ("sudo", "-n", "-H", "--")


def script_argv(command: str) -> list[str]:
    """A step's command as argv, without the sudo prefix: `["bash", "-c", script, step]`."""
    argv = shlex.split(command)
    return argv[len(SUDO_PREFIX):] if tuple(argv[:len(SUDO_PREFIX)]) == SUDO_PREFIX else argv


def _command(step: str, host: Host, template: str, values: dict[str, Any], converge: str = "") -> pulumi.Output[str]:
    # Output.all() of nothing is a list, not a dict.
    resolved = pulumi.Output.all(**values) if values else pulumi.Output.from_input({})
    script = resolved.apply(lambda v: render_step(step, host.name, template, v, converge))
    return _refuse_secret(step, script).apply(lambda s: command_line(step, s, host.sudo))


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

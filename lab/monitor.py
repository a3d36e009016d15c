"""The lab's resource monitor: the program runs under `pulumi.runtime.set_mocks`, and every
resource it registers is handled here the way the engine and its providers would handle it.

- `command:remote:Command`: planned by `lifecycle.plan_command` against the state, then (on
  `up`) run over SSH: nothing for *same*, `create` for *create* and *replace*, `update` (else
  `create`) for *update*, with the old `delete` first for a delete-before-replace. On `preview`
  nothing runs: the outputs of what would run are unknown, as the engine shows them.
- `random:index/randomPassword` and `randomString`: real random values, kept in the state and
  replaced when any input changes (pulumi-random's inputs all force a new value).
- `pulumi:pulumi:StackReference`: read from another lab stack's state file.
- AWS resources and invokes: mocked (the lab uses static hosts).
"""

from __future__ import annotations

import hashlib
import os
import secrets as _secrets
import string
import threading
from pathlib import Path
from typing import Any, Optional

from . import lifecycle as lc
from . import runner_state as rs
from .progress import CommandFailed, Progress, StepSkipped, command_failed
from .ssh import ConnSpec, SSHPool, trim_one_newline

COMMAND_TYPE = "command:remote:Command"
STACK_TYPE = "pulumi:pulumi:Stack"
STACKREF_TYPE = "pulumi:pulumi:StackReference"
RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
RANDOM_STRING_TYPE = "random:index/randomString:RandomString"
DEFAULT_COMMAND_TIMEOUT = float(os.environ.get("LAB_COMMAND_TIMEOUT", "1800"))

_DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def random_value(inputs: dict[str, Any]) -> str:
    """A real random string honouring pulumi-random's inputs."""
    i = rs.unwrap(inputs)
    rng = _secrets.SystemRandom()
    length = int(i.get("length", 16))
    classes = []
    if i.get("upper", True):
        classes.append((string.ascii_uppercase, int(i.get("minUpper", 0))))
    if i.get("lower", True):
        classes.append((string.ascii_lowercase, int(i.get("minLower", 0))))
    if i.get("numeric", i.get("number", True)):
        classes.append((string.digits, int(i.get("minNumeric", 0))))
    if i.get("special", True):
        special = i["overrideSpecial"] if "overrideSpecial" in i else _DEFAULT_SPECIAL
        if special:
            classes.append((special, int(i.get("minSpecial", 0))))
    charset = "".join(dict.fromkeys("".join(c for c, _ in classes)))
    if not charset:
        raise ValueError("random: every character class is disabled")
    chars = [rng.choice(c) for c, n in classes for _ in range(n)]
    chars += [rng.choice(charset) for _ in range(max(0, length - len(chars)))]
    rng.shuffle(chars)
    return "".join(chars)


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _rid(name: str, urn: str) -> str:
    return f"{name}-{hashlib.sha256(urn.encode()).hexdigest()[:8]}"


class Lab:
    """Everything one run shares: mode, SSH pool, progress, plan, record, state."""

    def __init__(self, *, project: str, stack: str, old_state: dict[str, Any], state_dir: Path,
                 mode: str = "up", host_names: Optional[dict[str, str]] = None,
                 progress: Optional[Progress] = None,
                 command_timeout: Optional[float] = DEFAULT_COMMAND_TIMEOUT):
        self.project, self.stack, self.mode = project, stack, mode
        self.preview = mode == "preview"
        self.old_state = old_state
        self.state_dir = state_dir
        self.host_names = dict(host_names or {})
        self.progress = progress or Progress()
        self.command_timeout = command_timeout
        self.pool = SSHPool()
        if self.preview:
            self.pool.refuse = "a preview touches no host"
        self.lock = threading.Lock()
        self.graph: dict[str, dict[str, Any]] = {}
        self.commands: dict[str, dict[str, Any]] = {}
        self.random: dict[str, dict[str, Any]] = {}
        self.replaced: dict[str, dict[str, Any]] = {}  # old entries whose delete runs at the end
        self.plan: dict[str, dict[str, Any]] = {}  # urn -> {op, type, name, host, changed, ...}
        self.outputs: Optional[dict[str, Any]] = None
        self.steps: list[dict[str, Any]] = []
        self.failures: list[BaseException] = []
        self.aborted = False

    # -- bookkeeping -------------------------------------------------------
    def label(self, host: Optional[str]) -> str:
        return self.host_names.get(host, host) if host else "-"

    def note_resource(self, urn, type_, name, parent, deps, prop_deps, custom) -> None:
        all_deps = list(dict.fromkeys(list(deps) + [u for us in prop_deps.values() for u in us]))
        with self.lock:
            self.graph[urn] = {
                "type": type_, "name": name, "parent": parent or None,
                "custom": bool(custom), "dependencies": all_deps,
                "propertyDependencies": {k: list(v) for k, v in prop_deps.items()},
            }
            if not custom and type_ != STACK_TYPE:  # components: created once, then the same
                op = lc.SAME if urn in (self.old_state.get("graph") or {}) else lc.CREATE
                self.plan[urn] = {"op": op, "type": type_, "name": name, "host": None, "changed": []}

    def fail(self, exn: BaseException) -> None:
        with self.lock:
            self.failures.append(exn)
            self.aborted = True

    def record(self, **step) -> None:
        if step.get("host"):
            step["hostName"] = self.label(step["host"])
        with self.lock:
            self.steps.append(step)

    def _plan(self, urn, **entry) -> None:
        with self.lock:
            self.plan[urn] = entry

    def add_secrets_deep(self, v: Any) -> None:
        v = rs.unwrap(v)
        if isinstance(v, str):
            self.progress.add_secret(v)
        elif isinstance(v, dict):
            for x in v.values():
                self.add_secrets_deep(x)
        elif isinstance(v, list):
            for x in v:
                self.add_secrets_deep(x)

    def _learn_secrets(self, inputs: dict) -> None:
        conn = rs.unwrap(inputs.get("connection")) or {}
        for k in ("privateKey", "password", "privateKeyPassword"):
            self.progress.add_secret(conn.get(k) if isinstance(conn, dict) else None)
        for k, v in inputs.items():
            if k != "connection" and rs.is_secret(v):
                self.add_secrets_deep(v)
        env = inputs.get("environment") or {}
        if isinstance(env, dict):
            for v in env.values():
                if rs.is_secret(v):
                    self.add_secrets_deep(v)

    # -- resources ---------------------------------------------------------
    def new_resource(self, urn: str, type_: str, name: str, inputs: dict, custom: bool,
                     resource_id: str = "", replace_on_changes=(), delete_before_replace=False,
                     ignore_changes=()):
        if not custom:
            return "", inputs
        if type_ == COMMAND_TYPE:
            return self.command(urn, name, inputs, list(replace_on_changes), delete_before_replace,
                                list(ignore_changes))
        if type_ in (RANDOM_PASSWORD_TYPE, RANDOM_STRING_TYPE):
            return self.random_resource(urn, type_, name, inputs)
        if type_.startswith("aws:"):
            return self.aws_resource(urn, type_, name, inputs)
        return resource_id or f"{name}-id", inputs

    def random_resource(self, urn, type_, name, inputs):
        from pulumi.runtime.rpc import UNKNOWN

        old = (self.old_state.get("random") or {}).get(urn)
        op = lc.plan_random(old, inputs)
        self._plan(urn, op=op, type=type_, name=name, host=None, changed=[])
        outputs = dict(inputs)
        if op == lc.SAME:
            value = old["result"]
        elif self.preview:
            outputs["result"] = UNKNOWN
            return "none", outputs
        else:
            value = random_value(inputs)
        with self.lock:
            self.random[urn] = {"inputsHash": lc.random_inputs_hash(inputs), "result": value, "type": type_}
        if type_ == RANDOM_PASSWORD_TYPE:
            self.progress.add_secret(value)
        outputs["result"] = rs.wrap_secret(value) if type_ == RANDOM_PASSWORD_TYPE else value
        rid = "none" if type_ == RANDOM_PASSWORD_TYPE else value
        self.record(name=name, urn=urn, type=type_, host=None, start=None, end=None, exitCode=None, op=op)
        return rid, outputs

    def aws_resource(self, urn, type_, name, inputs):
        digest = hashlib.sha256(urn.encode()).hexdigest()
        outputs = dict(inputs)
        rid = f"{type_.split(':')[-1].lower()}-{digest[:12]}"
        service = type_.split(":")[1].split("/")[0]
        outputs.setdefault("id", rid)
        outputs.setdefault("arn", f"arn:aws:{service}:eu-central-1:000000000000:{rid}")
        if type_ == "aws:ec2/instance:Instance":
            n = int(digest[:4], 16)
            outputs.setdefault("privateIp", f"10.0.{n % 250 + 1}.{(n // 250) % 250 + 4}")
            outputs.setdefault("publicIp", f"198.51.100.{n % 250 + 1}")
        return rid, outputs

    def call(self, token: str, args: dict) -> dict:
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0123456789abcdef0", "imageId": "ami-0123456789abcdef0",
                    "name": "debian-12-amd64-lab", "architecture": "x86_64"}
        return {}

    def read_stack_reference(self, name: str) -> dict:
        path = self.state_dir / f"{rs.stack_from_reference(name)}.json"
        outputs: dict[str, Any] = {}
        secret_names: list[str] = []
        if path.exists():
            for k, v in (rs.load_state(path).get("outputs") or {}).items():
                if rs.is_secret(v):
                    secret_names.append(k)
                outputs[k] = rs.unwrap(v)
        return {"name": name, "outputs": outputs, "secretOutputNames": secret_names}

    # -- commands ----------------------------------------------------------
    def command(self, urn: str, name: str, inputs: dict, replace_on_changes: list[str], dbr: bool,
                ignore_changes: list[str]):
        from pulumi.runtime.rpc import UNKNOWN

        old = (self.old_state.get("commands") or {}).get(urn)
        inputs = lc.with_ignored(old, inputs, ignore_changes)
        op, changed = lc.plan_command(old, inputs, replace_on_changes)
        plain = rs.unwrap(inputs)
        conn = plain.get("connection") if isinstance(plain.get("connection"), dict) else {}
        host = conn.get("host") if not lc.is_unknown(conn.get("host")) else None
        self._plan(urn, op=op, type=COMMAND_TYPE, name=name, host=host, changed=changed,
                   deleteBeforeReplace=dbr, hasDelete=bool(old and (old.get("inputs") or {}).get("delete")),
                   oldCreate=rs.unwrap((old or {}).get("inputs", {}).get("create")),
                   newCreate=plain.get("create"))
        outputs = dict(inputs)
        if op == lc.SAME:
            with self.lock:
                self.commands[urn] = old
            self.record(name=name, urn=urn, type=COMMAND_TYPE, host=host, start=None, end=None,
                        exitCode=None, op=op)
            outputs.update(stdout=old.get("stdout", ""), stderr=old.get("stderr", ""))
            return _rid(name, urn), outputs
        if self.preview:
            outputs.update(stdout=UNKNOWN, stderr=UNKNOWN)
            return _rid(name, urn), outputs
        if self.aborted:
            self.record(name=name, urn=urn, type=COMMAND_TYPE, host=host, start=None, end=None,
                        exitCode=None, skipped=True, op=op)
            self.progress.line(f"skip   {name}  (an earlier step failed)")
            raise StepSkipped(f"{name}: not started because an earlier step failed")
        self._learn_secrets(inputs)
        if op == lc.REPLACE and dbr and old:
            try:
                self.run_delete(urn, old)
            except CommandFailed as exn:
                self.fail(exn)
                raise
        elif op == lc.REPLACE and old:
            with self.lock:
                self.replaced[urn] = old
        script = plain.get("create")
        env = {str(k): str(v) for k, v in (plain.get("environment") or {}).items()}
        if op == lc.UPDATE:
            script = plain.get("update") or plain.get("create")
            # pulumi-command's Update keeps the old BaseOutputs, so run() sees the last stdout/stderr.
            if plain.get("addPreviousOutputInEnv", True) is not False:
                env.update(_previous_output_env(old))
        stored = {
            "name": name, "host": host, "secretStdin": rs.is_secret(inputs.get("stdin")),
            "inputs": {k: inputs.get(k) for k in lc.COMMAND_INPUTS if k in inputs},
            "stdout": "", "stderr": "",
        }
        if script is None:
            with self.lock:
                self.commands[urn] = stored
            self.record(name=name, urn=urn, type=COMMAND_TYPE, host=host, start=None, end=None,
                        exitCode=None, op=op)
            outputs.update(stdout="", stderr="")
            return _rid(name, urn), outputs
        out, err = self._run(urn, name, op, plain, script, env, stored["secretStdin"])
        stored.update(stdout=out, stderr=err)
        with self.lock:
            self.commands[urn] = stored
        outputs.update(stdout=out, stderr=err)
        return _rid(name, urn), outputs

    def _run(self, urn, name, op, plain, script, env, secret_stdin) -> tuple[str, str]:
        """Run one command (a create, an update or a delete) and record it; a failure raises,
        and (but for deletes, which the runner collects) stops the run from starting more."""
        spec = ConnSpec.from_input(plain.get("connection") or {})
        label = self.label(spec.host)
        logging_mode = plain.get("logging") or "stdoutAndStderr"
        what = f"delete of {name!r}" if op == lc.DELETE else f"command {name!r}"
        verb = "delete " if op == lc.DELETE else ""
        start = self.progress.now()
        self.progress.line(f"{op:<7}{name}  ({label})")
        try:
            code, out, err = self.pool.exec(spec, script, stdin=plain.get("stdin"), environment=env,
                                            timeout=self.command_timeout)
        except Exception as exn:  # noqa: BLE001 connection/timeouts become step failures
            end = self.progress.now()
            self.record(name=name, urn=urn, type=COMMAND_TYPE, host=spec.host, start=start, end=end,
                        exitCode=None, op=op, error=self.progress.scrub(str(exn)))
            self.progress.line(f"FAILED {verb}{name}  ({label}) {end - start:.2f}s: {exn}")
            failure = CommandFailed(self.progress.scrub(f"{what} on host {spec.host} ({label}) failed: {exn}"),
                                    name=name, host=spec.host, exit_code=None)
            if op != lc.DELETE:
                self.fail(failure)
            raise failure from None
        end = self.progress.now()
        out, err = trim_one_newline(out), trim_one_newline(err)
        self.record(name=name, urn=urn, type=COMMAND_TYPE, host=spec.host, start=start, end=end,
                    exitCode=code, op=op)
        self._show(name, logging_mode, secret_stdin, out, err)
        if code != 0:
            self.progress.line(f"FAILED {verb}{name}  ({label}) exit {code} after {end - start:.2f}s")
            failure = command_failed(self.progress, what, name, spec.host, label, code, err, logging_mode)
            if op != lc.DELETE:
                self.fail(failure)
            raise failure
        self.progress.line(f"done   {verb}{name}  ({label}) {end - start:.2f}s")
        return out, err

    def _show(self, name, logging_mode, secret_stdin, out, err) -> None:
        if not self.progress.verbose or secret_stdin:
            return
        if logging_mode in ("stdout", "stdoutAndStderr") and out:
            self.progress.block(f"{name} out", out)
        if logging_mode in ("stderr", "stdoutAndStderr") and err:
            self.progress.block(f"{name} err", err)

    def run_delete(self, urn: str, entry: dict) -> None:
        """A command's `delete`, with its stored inputs and last outputs (commandController.go Delete)."""
        name = entry.get("name") or name_of(urn)
        inputs = entry.get("inputs") or {}
        self._learn_secrets(inputs)
        plain = rs.unwrap(inputs)
        delete = plain.get("delete")
        if not delete:
            return
        env = {str(k): str(v) for k, v in (plain.get("environment") or {}).items()}
        if plain.get("addPreviousOutputInEnv", True) is not False:
            env.update(_previous_output_env(entry))
        self._run(urn, name, lc.DELETE, plain, delete, env, bool(entry.get("secretStdin")))


def _previous_output_env(entry: Optional[dict]) -> dict[str, str]:
    # commandOutputs.go run(): set only when non-empty.
    env = {}
    if entry and entry.get("stdout"):
        env["PULUMI_COMMAND_STDOUT"] = entry["stdout"]
    if entry and entry.get("stderr"):
        env["PULUMI_COMMAND_STDERR"] = entry["stderr"]
    return env

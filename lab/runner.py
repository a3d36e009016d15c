"""Run the ox-estate Pulumi program for real, without the Pulumi CLI.

The Pulumi CLI and its provider plugins cannot be installed on the lab
machines, so ``pulumi up`` cannot run. The lab runs the SAME program anyway:
it is executed in-process under ``pulumi.runtime.set_mocks`` with a mock
resource monitor (:class:`LabMonitor`) that

* EXECUTES every ``command:remote:Command`` over SSH (paramiko) on its host,
  with the command's own ``connection`` (including a ``proxy`` jump host),
  ``stdin`` and ``environment`` (sent as SSH ``env`` requests; the server
  drops what ``AcceptEnv`` does not allow, as it would for pulumi-command),
  and returns the real ``stdout``/``stderr`` (one trailing newline trimmed,
  like pulumi-command). Ids printed by one step therefore chain for real into
  later steps, and steps run in the real dependency order: the SDK only sends
  a registration once all of its inputs and ``depends_on`` have resolved.
  A non-zero exit fails the registration, and so the run;
* generates real random values for ``random:index/randomPassword`` and
  ``randomString`` and keeps them in the state, so a second run gets the same
  passwords;
* answers ``pulumi:pulumi:StackReference`` reads from another lab stack's
  state file, and mocks AWS resources and invokes (the lab uses static hosts).

Differences from a real ``pulumi up``/``destroy`` (deliberate):

* There is no diff engine and no preview. Every ``up`` re-runs every
  ``create`` command, on purpose: it proves the scripts are idempotent.
  ``update`` commands and ``triggers`` are never consulted, replacements
  (and ``delete_before_replace``) never happen, and nothing is "unchanged".
* ``up`` does delete commands that were in the previous state but are no
  longer in the program (after a successful run), with their stored inputs,
  in reverse dependency order, as the engine would.
* After the first failed step no new step is started (in-flight steps are
  allowed to finish), like the engine without ``--continue-on-error``. A
  failed ``up`` still saves what did run, so ``destroy`` can undo it.
* Each command has a timeout (``LAB_COMMAND_TIMEOUT``, default 1800 s); the
  engine has none unless ``customTimeouts`` are set.
* ``destroy`` runs each command's ``delete`` with its stored inputs in reverse
  dependency order (dependents first, independent deletes concurrently), with
  PULUMI_COMMAND_STDOUT/STDERR in the SSH environment, then clears the state.
* The state file (``lab/state/<stack>.json``, 0600) is a plain JSON mirror of
  what the lab needs, not a Pulumi checkpoint.

Progress goes to stderr, one line per step start and finish. Command output is
shown (after the step ends, not streamed) only with ``verbose=True``, and never when the command's ``logging`` is
``none`` (or excludes that stream) or when its ``stdin`` is a secret. Known
secret values are scrubbed from everything the runner prints.

CLI (one program run per process, like the language host)::

    python -m lab.runner up|destroy --program DIR --stack NAME
        [--state FILE] [--record FILE] [--extra-config FILE.json] [-v]

``--extra-config`` is a JSON file ``{"config": {...}, "secretKeys": [...]}``
merged over the stack file's config (use it for secrets, never argv).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import hashlib
import io
import json
import socket
import logging
import os
import runpy
import secrets as _secrets
import select
import string
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

try:  # runnable both as ``python -m lab.runner`` and imported as lab.runner
    from . import runner_state as rs
except ImportError:  # pragma: no cover
    import runner_state as rs  # type: ignore

COMMAND_TYPE = "command:remote:Command"
STACK_TYPE = "pulumi:pulumi:Stack"
STACKREF_TYPE = "pulumi:pulumi:StackReference"
RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
RANDOM_STRING_TYPE = "random:index/randomString:RandomString"

DEFAULT_MAX_WORKERS = 64
DEFAULT_COMMAND_TIMEOUT = float(os.environ.get("LAB_COMMAND_TIMEOUT", "1800"))
# OpenSSH's default MaxSessions is 10 per connection; stay below it and open
# another connection to the same host when a connection is full.
MAX_CHANNELS_PER_CONNECTION = 8


class LabRunError(RuntimeError):
    """The lab run failed; the message says why (never contains secrets)."""


def _keep_stderr(step: str, text: str) -> Path:
    out = Path(__file__).resolve().parent / "out" / "failed"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{step}.stderr"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _command_failed(progress, what: str, name: str, host: str, label: str, code: int, err: str,
                    logging_mode: str) -> "CommandFailed":
    """The error for a step that exited non-zero: its stderr when logging allows, else a pointer."""
    msg = f"{what} failed on host {host} ({label}) with exit code {code}"
    if logging_mode in ("stderr", "stdoutAndStderr"):
        tail = "\n".join(err.splitlines()[-40:])
        msg += f"; stderr:\n{tail}" if tail else "; stderr is empty"
    else:
        # Not streamed (logging=none); kept for whoever debugs the lab, with every known
        # secret value masked, in a file only root reads.
        kept = _keep_stderr(name, progress.scrub(err))
        msg += f" (stderr not shown: logging={logging_mode}; secrets masked in {kept})"
    return CommandFailed(progress.scrub(msg), name=name, host=host, exit_code=code)


class CommandFailed(RuntimeError):
    def __init__(self, message: str, *, name: str, host: str, exit_code: Optional[int]):
        super().__init__(message)
        self.name = name
        self.host = host
        self.exit_code = exit_code


class StepSkipped(RuntimeError):
    pass


# --------------------------------------------------------------------------
# config


def read_project_name(program_dir: str | os.PathLike[str]) -> str:
    data = yaml.safe_load((Path(program_dir) / "Pulumi.yaml").read_text()) or {}
    name = data.get("name")
    if not name:
        raise LabRunError(f"{program_dir}/Pulumi.yaml has no 'name'")
    return str(name)


def stack_config_path(program_dir: str | os.PathLike[str], stack: str) -> Path:
    program_dir = Path(program_dir)
    data = yaml.safe_load((program_dir / "Pulumi.yaml").read_text()) or {}
    cfg_dir = data.get("stackConfigDir") or "."
    return program_dir / cfg_dir / f"Pulumi.{stack}.yaml"


def _config_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Structured values become JSON (what Config.get_object parses); so do
    # scalars, so that booleans are "true"/"false" like the CLI sends them.
    return json.dumps(value)


def load_stack_config(program_dir: str | os.PathLike[str], stack: str) -> dict[str, str]:
    """Read ``<program_dir>/<stackConfigDir>/Pulumi.<stack>.yaml`` ``config:``.

    Keys without a namespace get the project's, as the CLI does. Values the
    lab cannot decrypt (``{secure: ...}``) are skipped: the caller passes
    secrets separately.
    """
    project = read_project_name(program_dir)
    path = stack_config_path(program_dir, stack)
    data = yaml.safe_load(path.read_text()) or {}
    out: dict[str, str] = {}
    for key, value in (data.get("config") or {}).items():
        key = str(key)
        if ":" not in key:
            key = f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        out[key] = _config_value(value)
    return out


# --------------------------------------------------------------------------
# progress and secrets


class Progress:
    def __init__(self, stream=None, verbose: bool = False):
        self.t0 = time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.verbose = verbose
        self._lock = threading.Lock()
        self._secrets: set[str] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add_secret(self, value: Any) -> None:
        if isinstance(value, str):
            for v in {value, value.strip()}:
                if len(v) >= 4:
                    with self._lock:
                        self._secrets.add(v)

    def scrub(self, text: str) -> str:
        with self._lock:
            items = sorted(self._secrets, key=len, reverse=True)
        for s in items:
            if s in text:
                text = text.replace(s, "[secret]")
        return text

    def line(self, text: str) -> None:
        text = self.scrub(text)
        with self._lock:
            self.stream.write(f"[{self.now():7.2f}s] {text}\n")
            self.stream.flush()

    def block(self, prefix: str, text: str) -> None:
        text = self.scrub(text)
        with self._lock:
            for ln in text.splitlines():
                self.stream.write(f"           {prefix} | {ln}\n")
            self.stream.flush()


# --------------------------------------------------------------------------
# SSH


def _num(v: Any, default: Optional[float]) -> Optional[float]:
    if v is None:
        return default
    return float(v)


@dataclass(frozen=True)
class ConnSpec:
    host: str
    port: int = 22
    user: str = "root"
    private_key: Optional[str] = field(default=None, repr=False)
    private_key_password: Optional[str] = field(default=None, repr=False)
    password: Optional[str] = field(default=None, repr=False)
    host_key: Optional[str] = None
    dial_error_limit: int = 10
    per_dial_timeout: float = 15.0
    proxy: Optional["ConnSpec"] = None

    @classmethod
    def from_input(cls, c: dict[str, Any]) -> "ConnSpec":
        c = rs.unwrap(c) or {}
        if not c.get("host"):
            raise ValueError("connection has no host")
        proxy = c.get("proxy")
        return cls(
            host=str(c["host"]),
            port=int(_num(c.get("port"), 22)),
            user=str(c.get("user") or "root"),
            private_key=c.get("privateKey"),
            private_key_password=c.get("privateKeyPassword"),
            password=c.get("password"),
            host_key=c.get("hostKey"),
            dial_error_limit=int(_num(c.get("dialErrorLimit"), 10)),
            per_dial_timeout=float(_num(c.get("perDialTimeout"), 15)),
            proxy=cls.from_input(proxy) if proxy else None,
        )

    def pool_key(self) -> tuple:
        h = hashlib.sha256()
        for part in (self.private_key, self.private_key_password, self.password, self.host_key):
            h.update(b"\0" + (part or "").encode())
        return (self.host, self.port, self.user, h.hexdigest(),
                self.proxy.pool_key() if self.proxy else None)


def _load_pkey(text: str, password: Optional[str]):
    import paramiko

    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=password)
        except Exception as exn:  # noqa: BLE001 try the next key type
            errors.append(f"{cls.__name__}: {exn}")
    raise ValueError("cannot parse privateKey (" + "; ".join(errors) + ")")


class _HostKeyPolicy:
    """Like pulumi-command: check ``hostKey`` when given, else accept any."""

    def __init__(self, expected: Optional[str]):
        self.expected = expected

    def missing_host_key(self, client, hostname, key):
        if not self.expected:
            return
        parts = self.expected.split()
        want = parts[1] if len(parts) >= 2 else parts[0]
        if key.get_base64() != want:
            import paramiko

            raise paramiko.BadHostKeyException(hostname, key, key)


class _Conn:
    def __init__(self, client, spec: ConnSpec):
        self.client = client
        self.transport = client.get_transport()
        self.spec = spec
        self.active = 0


class SSHPool:
    """Keeps SSH connections open per (host, port, user, key, proxy).

    Opening a connection is serialized per key (so N concurrent commands to a
    new host make one connection, not N), but commands run concurrently as
    separate channels on it, up to MAX_CHANNELS_PER_CONNECTION; beyond that a
    second connection is opened.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._conns: dict[tuple, list[_Conn]] = {}
        self._all: list[_Conn] = []
        self.closed = False  # set by close_all(): stop dialling and running

    def _take(self, key) -> Optional[_Conn]:
        with self._lock:
            conns = self._conns.setdefault(key, [])
            for c in list(conns):
                if not c.transport or not c.transport.is_active():
                    conns.remove(c)
                    continue
                if c.active < MAX_CHANNELS_PER_CONNECTION:
                    c.active += 1
                    return c
        return None

    def acquire(self, spec: ConnSpec) -> _Conn:
        key = spec.pool_key()
        c = self._take(key)
        if c:
            return c
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            c = self._take(key)
            if c:
                return c
            c = self._dial(spec)
            with self._lock:
                c.active = 1
                self._conns.setdefault(key, []).append(c)
                self._all.append(c)
            return c

    def release(self, c: _Conn) -> None:
        with self._lock:
            c.active -= 1

    def _dial(self, spec: ConnSpec) -> _Conn:
        import paramiko

        pkey = _load_pkey(spec.private_key, spec.private_key_password) if spec.private_key else None
        limit = spec.dial_error_limit
        attempt = 0
        while True:
            if self.closed:
                raise ConnectionError("the run was aborted")
            attempt += 1
            sock = None
            proxy_conn = None
            try:
                if spec.proxy is not None:
                    proxy_conn = self.acquire(spec.proxy)
                    try:
                        sock = proxy_conn.transport.open_channel(
                            "direct-tcpip", (spec.host, spec.port), ("127.0.0.1", 0),
                            timeout=spec.per_dial_timeout,
                        )
                    finally:
                        self.release(proxy_conn)
                client = paramiko.SSHClient()
                client.set_missing_host_key_policy(_HostKeyPolicy(spec.host_key))
                client.connect(
                    spec.host, port=spec.port, username=spec.user, pkey=pkey,
                    password=spec.password, sock=sock, timeout=spec.per_dial_timeout,
                    banner_timeout=spec.per_dial_timeout, auth_timeout=spec.per_dial_timeout,
                    allow_agent=False, look_for_keys=False,
                )
                transport = client.get_transport()
                transport.set_keepalive(30)
                # paramiko leaves Nagle on: each command then waits ~40 ms for a delayed ACK.
                # Go's SSH client (pulumi-command's) sets TCP_NODELAY; so do we.
                if isinstance(transport.sock, socket.socket):
                    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return _Conn(client, spec)
            except (paramiko.AuthenticationException, paramiko.BadHostKeyException, ValueError):
                raise
            except Exception as exn:  # noqa: BLE001 dial errors are retried
                if sock is not None:
                    try:
                        sock.close()
                    except Exception:  # noqa: BLE001
                        pass
                if limit >= 0 and attempt >= limit:
                    via = f" via {spec.proxy.host}" if spec.proxy else ""
                    raise ConnectionError(
                        f"cannot connect to {spec.user}@{spec.host}:{spec.port}{via} "
                        f"after {attempt} attempts: {exn}"
                    ) from exn
                time.sleep(min(0.5 * attempt, 3.0))

    def close_all(self) -> None:
        self.closed = True
        with self._lock:
            conns, self._all, self._conns = list(self._all), [], {}
        for c in reversed(conns):  # tunnelled connections first, then proxies
            try:
                c.client.close()
            except Exception:  # noqa: BLE001
                pass

    def exec(
        self,
        spec: ConnSpec,
        command: str,
        *,
        stdin: Optional[str] = None,
        environment: Optional[dict[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> tuple[int, str, str]:
        """Run one command on one channel. Returns (exit, stdout, stderr) raw."""
        import paramiko

        c = self.acquire(spec)
        try:
            try:
                chan = c.transport.open_session(timeout=spec.per_dial_timeout)
            except (paramiko.ChannelException, paramiko.SSHException):
                # Connection went stale or the server refused a session: drop
                # it and retry once on a fresh connection.
                with self._lock:
                    lst = self._conns.get(spec.pool_key(), [])
                    if c in lst:
                        lst.remove(c)
                self.release(c)
                c = self.acquire(spec)
                chan = c.transport.open_session(timeout=spec.per_dial_timeout)
            with chan:
                if environment:
                    chan.update_environment({str(k): str(v) for k, v in environment.items()})
                chan.exec_command(command)
                data = (stdin or "").encode()

                def feed():
                    try:
                        if data:
                            chan.sendall(data)
                        chan.shutdown_write()
                    except Exception:  # noqa: BLE001 remote may close stdin early
                        pass

                feeder = threading.Thread(target=feed, daemon=True, name="lab-ssh-stdin")
                feeder.start()
                out, err = bytearray(), bytearray()
                deadline = time.monotonic() + timeout if timeout else None
                while True:
                    got = False
                    while chan.recv_ready():
                        out += chan.recv(65536)
                        got = True
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                        got = True
                    if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                        if chan.eof_received or chan.closed:
                            break
                    if self.closed:
                        chan.close()
                        raise ConnectionError("the run was aborted")
                    if deadline and time.monotonic() > deadline:
                        chan.close()
                        raise TimeoutError(f"no exit after {timeout:.0f}s")
                    if not got:
                        select.select([chan], [], [], 0.05)
                code = chan.recv_exit_status()
                feeder.join(timeout=5)
                return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        finally:
            self.release(c)


def _trim_one_newline(s: str) -> str:
    # pulumi-command: strings.TrimSuffix(buf, "\n")
    return s[:-1] if s.endswith("\n") else s


# --------------------------------------------------------------------------
# random


_DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"
_RANDOM_KEYS = ("length", "special", "overrideSpecial", "upper", "lower", "numeric",
                "number", "minUpper", "minLower", "minNumeric", "minSpecial", "keepers")


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


def _random_inputs_hash(inputs: dict[str, Any]) -> str:
    i = rs.unwrap(inputs)
    relevant = {k: i.get(k) for k in _RANDOM_KEYS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------
# the mock monitor


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class Lab:
    """Everything one run shares: SSH pool, progress, record, state."""

    def __init__(
        self,
        *,
        project: str,
        stack: str,
        old_state: dict[str, Any],
        state_dir: Path,
        host_names: Optional[dict[str, str]] = None,
        progress: Optional[Progress] = None,
        command_timeout: Optional[float] = DEFAULT_COMMAND_TIMEOUT,
    ):
        self.project = project
        self.stack = stack
        self.old_state = old_state
        self.state_dir = state_dir
        self.host_names = dict(host_names or {})
        self.progress = progress or Progress()
        self.command_timeout = command_timeout
        self.pool = SSHPool()
        self.lock = threading.Lock()
        self.graph: dict[str, dict[str, Any]] = {}
        self.commands: dict[str, dict[str, Any]] = {}
        self.random: dict[str, dict[str, Any]] = {}
        self.outputs: Optional[dict[str, Any]] = None
        self.steps: list[dict[str, Any]] = []
        self.failures: list[BaseException] = []
        self.aborted = False

    # -- bookkeeping -------------------------------------------------------
    def label(self, host: str) -> str:
        return self.host_names.get(host, host)

    def note_resource(self, urn, type_, name, parent, deps, prop_deps, custom) -> None:
        all_deps = list(dict.fromkeys(list(deps) + [u for us in prop_deps.values() for u in us]))
        with self.lock:
            self.graph[urn] = {
                "type": type_, "name": name, "parent": parent or None,
                "custom": bool(custom), "dependencies": all_deps,
                "propertyDependencies": {k: list(v) for k, v in prop_deps.items()},
            }

    def fail(self, exn: BaseException) -> None:
        with self.lock:
            self.failures.append(exn)
            self.aborted = True

    def _record(self, **step) -> None:
        if step.get("host"):
            step["hostName"] = self.label(step["host"])
        with self.lock:
            self.steps.append(step)

    # -- resources ---------------------------------------------------------
    def new_resource(self, urn: str, type_: str, name: str, inputs: dict, custom: bool, resource_id: str = ""):
        if not custom:
            return "", inputs
        if type_ == COMMAND_TYPE:
            return self.run_command(urn, name, inputs)
        if type_ in (RANDOM_PASSWORD_TYPE, RANDOM_STRING_TYPE):
            return self.random_resource(urn, type_, name, inputs)
        if type_.startswith("aws:"):
            return self.aws_resource(urn, type_, name, inputs)
        return resource_id or f"{name}-id", inputs

    def random_resource(self, urn, type_, name, inputs):
        h = _random_inputs_hash(inputs)
        old = (self.old_state.get("random") or {}).get(urn)
        if old and old.get("inputsHash") == h:
            value = old["result"]
        else:
            value = random_value(inputs)
        with self.lock:
            self.random[urn] = {"inputsHash": h, "result": value, "type": type_}
        if type_ == RANDOM_PASSWORD_TYPE:
            self.progress.add_secret(value)
        outputs = dict(inputs)
        outputs["result"] = rs.wrap_secret(value) if type_ == RANDOM_PASSWORD_TYPE else value
        rid = "none" if type_ == RANDOM_PASSWORD_TYPE else value
        self._record(name=name, urn=urn, type=type_, host=None, start=self.progress.now(),
                     end=self.progress.now(), exitCode=None)
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
        stack = rs.stack_from_reference(name)
        path = self.state_dir / f"{stack}.json"
        outputs: dict[str, Any] = {}
        secret_names: list[str] = []
        if path.exists():
            for k, v in (rs.load_state(path).get("outputs") or {}).items():
                if rs.is_secret(v):
                    secret_names.append(k)
                outputs[k] = rs.unwrap(v)
        return {"name": name, "outputs": outputs, "secretOutputNames": secret_names}

    # -- commands ----------------------------------------------------------
    def run_command(self, urn: str, name: str, inputs: dict):
        if self.aborted:
            self._record(name=name, urn=urn, type=COMMAND_TYPE, host=None, start=None, end=None,
                         exitCode=None, skipped=True)
            self.progress.line(f"skip   {name}  (an earlier step failed)")
            raise StepSkipped(f"{name}: not started because an earlier step failed")
        conn_in = inputs.get("connection") or {}
        conn_plain = rs.unwrap(conn_in)
        for k in ("privateKey", "password", "privateKeyPassword"):
            self.progress.add_secret(conn_plain.get(k))
        for k, v in inputs.items():
            if k != "connection" and rs.is_secret(v):
                self._add_secrets_deep(v)
        env_in = inputs.get("environment") or {}
        if isinstance(env_in, dict):
            for v in env_in.values():
                if rs.is_secret(v):
                    self._add_secrets_deep(v)
        secret_stdin = rs.is_secret(inputs.get("stdin"))
        plain = rs.unwrap(inputs)
        spec = ConnSpec.from_input(conn_plain)
        label = self.label(spec.host)
        logging_mode = plain.get("logging") or "stdoutAndStderr"
        create = plain.get("create")
        stored = {
            "name": name,
            "host": spec.host,
            "secretStdin": secret_stdin,
            "inputs": {k: inputs.get(k) for k in ("connection", "create", "update", "delete", "stdin",
                                                  "environment", "logging", "triggers",
                                                  "addPreviousOutputInEnv") if k in inputs},
            "stdout": "", "stderr": "",
        }
        outputs = dict(inputs)
        if create is None:
            outputs.update(stdout="", stderr="")
            with self.lock:
                self.commands[urn] = stored
            return f"{name}-{hashlib.sha256(urn.encode()).hexdigest()[:8]}", outputs

        start = self.progress.now()
        self.progress.line(f"start  {name}  ({label})")
        code: Optional[int] = None
        try:
            code, out, err = self.pool.exec(
                spec, create, stdin=plain.get("stdin"),
                environment=plain.get("environment"), timeout=self.command_timeout)
        except Exception as exn:  # noqa: BLE001 connection/timeouts become step failures
            end = self.progress.now()
            self._record(name=name, urn=urn, type=COMMAND_TYPE, host=spec.host, start=start, end=end,
                         exitCode=None, error=self.progress.scrub(str(exn)))
            self.progress.line(f"FAILED {name}  ({label}) {end - start:.2f}s: {exn}")
            failure = CommandFailed(
                self.progress.scrub(f"command {name!r} on host {spec.host} ({label}) failed: {exn}"),
                name=name, host=spec.host, exit_code=None)
            self.fail(failure)
            raise failure from None
        end = self.progress.now()
        out, err = _trim_one_newline(out), _trim_one_newline(err)
        self._record(name=name, urn=urn, type=COMMAND_TYPE, host=spec.host, start=start, end=end,
                     exitCode=code)
        show_out = logging_mode in ("stdout", "stdoutAndStderr") and not secret_stdin
        show_err = logging_mode in ("stderr", "stdoutAndStderr") and not secret_stdin
        if self.progress.verbose:
            if show_out and out:
                self.progress.block(f"{name} out", out)
            if show_err and err:
                self.progress.block(f"{name} err", err)
        if code != 0:
            self.progress.line(f"FAILED {name}  ({label}) exit {code} after {end - start:.2f}s")
            failure = _command_failed(self.progress, f"command {name!r}", name, spec.host, label, code, err,
                                      logging_mode)
            self.fail(failure)
            raise failure
        self.progress.line(f"done   {name}  ({label}) {end - start:.2f}s")
        stored.update(stdout=out, stderr=err)
        with self.lock:
            self.commands[urn] = stored
        outputs.update(stdout=out, stderr=err)
        return f"{name}-{hashlib.sha256(urn.encode()).hexdigest()[:8]}", outputs

    def _add_secrets_deep(self, v: Any) -> None:
        v = rs.unwrap(v)
        if isinstance(v, str):
            self.progress.add_secret(v)
        elif isinstance(v, dict):
            for x in v.values():
                self._add_secrets_deep(x)
        elif isinstance(v, list):
            for x in v:
                self._add_secrets_deep(x)


def _make_monitor(lab: Lab):
    """Build the MockMonitor subclass (imports pulumi lazily)."""
    from google.protobuf import empty_pb2
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
    from pulumi.runtime.proto import resource_pb2
    from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

    class LabMocks(Mocks):
        def call(self, args: MockCallArgs):
            # A plain dict: MockMonitor.Invoke iterates a tuple's failures.
            return lab.call(args.token, args.args)

        def new_resource(self, args: MockResourceArgs):
            # Only reached through ReadResource (RegisterResource is overridden).
            if args.typ == STACKREF_TYPE:
                name = rs.unwrap(args.inputs).get("name") or args.resource_id
                return name, lab.read_stack_reference(name)
            return args.resource_id or f"{args.name}-id", args.inputs

    class LabMonitor(MockMonitor):
        def make_urn(self, parent: str, type_: str, name: str) -> str:
            # Like MockMonitor.make_urn, but without the context-bound
            # get_stack()/get_project() (we are on executor threads).
            if parent:
                parent_type = parent.split("::")[2].split("$").pop()
                type_ = parent_type + "$" + type_
            return "urn:pulumi:" + "::".join([lab.stack, lab.project, type_, name])

        def RegisterResource(self, request):
            urn = self.make_urn(request.parent, request.type, request.name)
            prop_deps = {k: list(v.urns) for k, v in request.propertyDependencies.items()}
            lab.note_resource(urn, request.type, request.name, request.parent,
                              list(request.dependencies), prop_deps, request.custom)
            if request.type == STACK_TYPE:
                return resource_pb2.RegisterResourceResponse(urn=urn)
            _ensure_event_loop()
            inputs = rpc.deserialize_properties(request.object)
            id_, state = lab.new_resource(urn, request.type, request.name, inputs,
                                          bool(request.custom), request.importId)
            obj = _sync_await(rpc.serialize_properties(state, {}))
            with lab.lock:
                self.resources[urn] = MockMonitor.ResourceRegistration(urn, id_, state)
            return resource_pb2.RegisterResourceResponse(urn=urn, id=id_ or "", object=obj)

        def RegisterResourceOutputs(self, request):
            if request.urn.split("::")[2] == STACK_TYPE:
                _ensure_event_loop()
                outs = rpc.deserialize_properties(request.outputs) if request.outputs else {}
                with lab.lock:
                    lab.outputs = outs
            return empty_pb2.Empty()

    mocks = LabMocks()
    return mocks, LabMonitor(mocks)


# --------------------------------------------------------------------------
# running a program


class _NotAStack:
    """Placeholder root so that set_mocks does not create (and immediately
    finish, i.e. register empty outputs for) its own Stack: we want
    run_in_stack's Stack, which registers the program's exports."""


def _execute_program(lab: Lab, program_dir: Path, config: dict[str, str],
                     secret_keys: list[str], max_workers: int) -> Optional[BaseException]:
    import pulumi.runtime as prt
    from pulumi.runtime import settings as psettings

    main = program_dir / "__main__.py"
    if not main.exists():
        return LabRunError(f"{main} does not exist")
    mocks, monitor = _make_monitor(lab)
    # The SDK calls the monitor through loop.run_in_executor(None, ...). The
    # default executor has min(32, cpu+4) workers -- 6 on these 2-core
    # machines -- and each remote command holds a worker for its whole SSH
    # run, so the default would silently cap the estate at 6 concurrent steps
    # and serialize what the graph does not. The language host sizes its
    # executor from --parallel the same way (automation/_server.py).
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lab-rpc")
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    # Faulted futures nobody awaited (the dependents of a failed step) would
    # log "exception was never retrieved"; the language host mutes them too.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    # paramiko logs dial failures with tracebacks from its transport threads;
    # the runner reports them itself, once, per step.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    loop.set_exception_handler(lambda _loop, _ctx: None)

    old_cwd, old_path, old_argv = os.getcwd(), list(sys.path), list(sys.argv)
    error: Optional[BaseException] = None

    def inner():
        asyncio.set_event_loop(loop)
        psettings.ROOT.set(_NotAStack())  # type: ignore[arg-type]
        prt.set_mocks(mocks, project=lab.project, stack=lab.stack, preview=False, monitor=monitor)
        psettings.ROOT.set(None)
        prt.set_all_config(dict(config), list(secret_keys))
        loop.run_until_complete(
            prt.run_in_stack(lambda: runpy.run_path(str(main), run_name="__main__")))

    try:
        os.chdir(program_dir)
        sys.path.insert(0, str(program_dir))
        sys.argv = [str(main)]
        contextvars.copy_context().run(inner)
    except BaseException as exn:  # noqa: BLE001 reported by the caller
        error = exn
        if isinstance(exn, KeyboardInterrupt):
            lab.aborted = True
            lab.pool.close_all()  # makes in-flight commands fail fast
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except Exception:  # noqa: BLE001
            pass
        # In-flight steps finish (like the engine waits for them) before we
        # report; their worker threads hold no loop of ours.
        executor.shutdown(wait=True)
        loop.close()
        asyncio.set_event_loop(None)
        os.chdir(old_cwd)
        sys.path[:] = old_path
        sys.argv = old_argv
        psettings.SETTINGS.rpc_manager.clear()
        psettings.SETTINGS.outputs.clear()
        gc.collect()
    return error


@dataclass
class RunResult:
    mode: str
    stack: str
    outputs: dict[str, Any]
    state_path: Path
    record_path: Path
    duration: float
    steps: list[dict[str, Any]]
    scrub: Callable[[str], str] = lambda s: s  # removes known secret values



def _default_paths(program_dir: Path, stack: str, mode: str, state_path, record_path):
    state_path = Path(state_path) if state_path else program_dir / "lab" / "state" / f"{stack}.json"
    record_path = Path(record_path) if record_path else program_dir / "lab" / "out" / f"{stack}-{mode}-record.json"
    return state_path, record_path


def _write_record(path: Path, lab: Lab, mode: str, ok: bool, error: Optional[str], duration: float) -> None:
    names = {u: n.get("name") or _name_of(u) for u, n in lab.graph.items()}
    steps = []
    with lab.lock:
        raw = list(lab.steps)
        graph = dict(lab.graph)
    for s in sorted(raw, key=lambda s: (s.get("start") is None, s.get("start") or 0)):
        deps = (graph.get(s["urn"]) or {}).get("dependencies") or s.get("dependencies") or []
        s = dict(s)
        for k in ("start", "end"):
            if isinstance(s.get(k), float):
                s[k] = round(s[k], 3)
        s["dependencies"] = sorted({names.get(u, _name_of(u)) for u in deps})
        steps.append(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"project": lab.project, "stack": lab.stack, "mode": mode, "ok": ok, "error": error,
           "duration": round(duration, 3),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - duration)),
           "steps": steps}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def run_program(
    program_dir: str | os.PathLike[str],
    stack: str,
    config: dict[str, str],
    secret_keys: list[str],
    mode: str = "up",
    record_path: Optional[str | os.PathLike[str]] = None,
    state_path: Optional[str | os.PathLike[str]] = None,
    *,
    host_names: Optional[dict[str, str]] = None,
    verbose: bool = False,
    command_timeout: Optional[float] = DEFAULT_COMMAND_TIMEOUT,
    max_workers: int = DEFAULT_MAX_WORKERS,
    stream=None,
) -> RunResult:
    """Run ``<program_dir>/__main__.py`` for real (mode "up") or mirror a
    destroy (mode "destroy"). Raises :class:`LabRunError` on any failure,
    after writing the record and (partial) state.

    ``config`` is the full config map (``project:key`` -> string, as
    :func:`load_stack_config` returns it plus any secrets); ``secret_keys``
    names the secret ones. ``host_names`` maps addresses to display names.
    """
    if mode not in ("up", "destroy"):
        raise ValueError(f"mode must be 'up' or 'destroy', not {mode!r}")
    program_dir = Path(program_dir).resolve()
    project = read_project_name(program_dir)
    state_path, record_path = _default_paths(program_dir, stack, mode, state_path, record_path)
    old_state = rs.load_state(state_path)
    progress = Progress(stream, verbose)
    for k in secret_keys:
        if k in config:
            progress.add_secret(config[k])
    lab = Lab(project=project, stack=stack, old_state=old_state, state_dir=state_path.parent,
              host_names=host_names, progress=progress, command_timeout=command_timeout)
    t0 = time.monotonic()
    try:
        if mode == "destroy":
            return _destroy(lab, old_state, state_path, record_path, max_workers, t0)
        return _up(lab, program_dir, config, secret_keys, old_state, state_path, record_path,
                   max_workers, t0)
    finally:
        lab.pool.close_all()


def _up(lab, program_dir, config, secret_keys, old_state, state_path, record_path, max_workers, t0):
    lab.progress.line(f"up     {lab.project}/{lab.stack}")
    error = _execute_program(lab, program_dir, config, secret_keys, max_workers)
    message = None
    if isinstance(error, KeyboardInterrupt):
        message = "interrupted; steps in flight were stopped"
    elif lab.failures:
        first = lab.failures[0]
        message = str(first)
        others = [f for f in lab.failures[1:] if isinstance(f, CommandFailed)]
        if others:
            message += "\nalso failed: " + ", ".join(
                f"{f.name} on {f.host} ("
                + (f"exit {f.exit_code})" if f.exit_code is not None else "no exit code)")
                for f in others)
    elif error is not None:
        message = lab.progress.scrub(
            f"the program failed: {type(error).__name__}: {error}\n"
            + _program_traceback(error, program_dir))
    elif lab.outputs is None:
        message = "the program finished but the stack outputs were never registered"

    # Merge into the state: what ran now replaces, what did not run now is
    # kept (it still exists on the hosts) unless a successful run deletes it.
    new_state = rs.empty_state(lab.project, lab.stack)
    new_state["graph"] = {**old_state.get("graph", {}), **lab.graph}
    new_state["commands"] = {**old_state.get("commands", {}), **lab.commands}
    new_state["random"] = {**old_state.get("random", {}), **lab.random}
    new_state["outputs"] = lab.outputs if lab.outputs is not None else old_state.get("outputs", {})
    if message is None:
        orphans = set(old_state.get("commands", {})) - set(lab.commands)
        if orphans:
            lab.progress.line(f"deleting {len(orphans)} command(s) no longer in the program")
            done, err = _run_deletes(lab, old_state, orphans, max_workers)
            for u in done:
                new_state["commands"].pop(u, None)
            if err:
                message = err
        if message is None:
            keep = set(lab.graph)
            new_state["graph"] = dict(lab.graph)
            new_state["commands"] = {u: c for u, c in new_state["commands"].items() if u in keep}
            new_state["random"] = dict(lab.random)
    rs.save_state(state_path, new_state)
    duration = time.monotonic() - t0
    _write_record(record_path, lab, "up", message is None, message, duration)
    if message is not None:
        lab.progress.line(f"FAILED up {lab.stack} after {duration:.2f}s")
        raise LabRunError(message)
    lab.progress.line(f"done   up {lab.stack} in {duration:.2f}s "
                      f"({sum(1 for s in lab.steps if s['type'] == COMMAND_TYPE)} commands)")
    return RunResult("up", lab.stack, lab.outputs or {}, state_path, record_path, duration,
                     list(lab.steps), lab.progress.scrub)


def _program_traceback(error: BaseException, program_dir: Path) -> str:
    """The traceback frames that belong to the program (not the SDK/runner)."""
    frames: list = []
    seen: set[int] = set()
    exn: Optional[BaseException] = error
    while exn is not None and id(exn) not in seen:  # the whole cause chain
        seen.add(id(exn))
        frames = list(traceback.extract_tb(exn.__traceback__)) + frames
        exn = exn.__cause__ or exn.__context__
    venv = str(program_dir / ".venv")
    mine = [f for f in frames
            if f.filename.startswith(str(program_dir)) and not f.filename.startswith(venv)
            and not f.filename.startswith(str(Path(__file__).parent))]
    picked = mine or frames[-5:]
    return "".join(traceback.format_list(picked))


def _run_deletes(lab: Lab, state: dict, urns: set[str], max_workers: int) -> tuple[set[str], Optional[str]]:
    """Run the ``delete`` of the given commands in reverse dependency order.

    Returns (urns deleted, error message or None).
    """
    commands = state.get("commands", {})
    graph = state.get("graph", {})
    before = rs.delete_plan(graph, [u for u in commands if u in urns])
    done: set[str] = set()
    started: set[str] = set()
    errors: list[str] = []
    futures = {}
    # Our own pool here: deletes are not called through the SDK.
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lab-delete") as ex:
        while True:
            if not errors:  # after a failure, start nothing new
                for u in sorted(before):
                    if u not in started and before[u] <= done:
                        started.add(u)
                        futures[ex.submit(_delete_one, lab, u, commands[u])] = u
            if not futures:
                break
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for f in finished:
                u = futures.pop(f)
                exn = f.exception()
                if exn is None:
                    done.add(u)
                else:
                    errors.append(str(exn))
    remaining = set(before) - done
    if errors:
        return done, errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    if remaining:
        return done, f"could not delete {len(remaining)} command(s) (dependency cycle?)"
    return done, None


def _delete_one(lab: Lab, urn: str, entry: dict) -> None:
    name = entry.get("name") or _name_of(urn)
    inputs = entry.get("inputs") or {}
    for k in ("privateKey", "password", "privateKeyPassword"):
        lab.progress.add_secret((rs.unwrap(inputs.get("connection")) or {}).get(k))
    for k, v in inputs.items():
        if k != "connection" and rs.is_secret(v):
            lab._add_secrets_deep(v)
    plain = rs.unwrap(inputs)
    delete = plain.get("delete")
    if not delete:
        return
    spec = ConnSpec.from_input(plain.get("connection") or {})
    label = lab.label(spec.host)
    env = {str(k): str(v) for k, v in (plain.get("environment") or {}).items()}
    if plain.get("addPreviousOutputInEnv", True) is not False:
        if entry.get("stdout"):
            env["PULUMI_COMMAND_STDOUT"] = entry["stdout"]
        if entry.get("stderr"):
            env["PULUMI_COMMAND_STDERR"] = entry["stderr"]
    logging_mode = plain.get("logging") or "stdoutAndStderr"
    start = lab.progress.now()
    lab.progress.line(f"delete {name}  ({label})")
    try:
        code, out, err = lab.pool.exec(spec, delete, stdin=plain.get("stdin"), environment=env,
                                       timeout=lab.command_timeout)
    except Exception as exn:  # noqa: BLE001
        lab._record(name=name, urn=urn, type=COMMAND_TYPE, host=spec.host, start=start,
                    end=lab.progress.now(), exitCode=None, error=lab.progress.scrub(str(exn)))
        raise CommandFailed(lab.progress.scrub(f"delete of {name!r} on host {spec.host} ({label}) failed: {exn}"),
                            name=name, host=spec.host, exit_code=None) from None
    end = lab.progress.now()
    lab._record(name=name, urn=urn, type=COMMAND_TYPE, host=spec.host, start=start, end=end, exitCode=code)
    err = _trim_one_newline(err)
    secret_stdin = bool(entry.get("secretStdin"))
    if lab.progress.verbose and not secret_stdin:
        if logging_mode in ("stdout", "stdoutAndStderr") and out.strip():
            lab.progress.block(f"{name} out", _trim_one_newline(out))
        if logging_mode in ("stderr", "stdoutAndStderr") and err:
            lab.progress.block(f"{name} err", err)
    if code != 0:
        lab.progress.line(f"FAILED delete {name}  ({label}) exit {code} after {end - start:.2f}s")
        raise _command_failed(lab.progress, f"delete of {name!r}", name, spec.host, label, code, err, logging_mode)
    lab.progress.line(f"done   delete {name}  ({label}) {end - start:.2f}s")


def _destroy(lab: Lab, state: dict, state_path: Path, record_path: Path, max_workers: int, t0: float):
    lab.progress.line(f"destroy {lab.project}/{lab.stack}")
    commands = state.get("commands", {})
    lab.graph = dict(state.get("graph", {}))
    done, message = _run_deletes(lab, state, set(commands), max_workers)
    duration = time.monotonic() - t0
    if message is None:
        rs.clear_state(state_path)
    else:
        left = dict(state)
        left["commands"] = {u: c for u, c in commands.items() if u not in done}
        rs.save_state(state_path, left)
    _write_record(record_path, lab, "destroy", message is None, message, duration)
    if message is not None:
        lab.progress.line(f"FAILED destroy {lab.stack} after {duration:.2f}s")
        raise LabRunError(message)
    n_deletes = sum(1 for s in lab.steps if s.get("exitCode") == 0)
    lab.progress.line(f"done   destroy {lab.stack} in {duration:.2f}s "
                      f"({len(done)} command(s), {n_deletes} delete(s) run)")
    return RunResult("destroy", lab.stack, {}, state_path, record_path, duration, list(lab.steps),
                     lab.progress.scrub)


# --------------------------------------------------------------------------
# helpers for callers


def mask_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """Stack outputs for display: secret values become '[secret]'."""

    def m(v):
        if rs.is_secret(v):
            return "[secret]"
        if isinstance(v, dict):
            return {k: m(x) for k, x in v.items()}
        if isinstance(v, list):
            return [m(x) for x in v]
        return v

    return {k: m(v) for k, v in (outputs or {}).items()}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["up", "destroy"])
    ap.add_argument("--program", required=True, help="program directory (has Pulumi.yaml)")
    ap.add_argument("--stack", required=True)
    ap.add_argument("--state")
    ap.add_argument("--record")
    ap.add_argument("--extra-config", help='JSON file {"config": {...}, "secretKeys": [...]}')
    ap.add_argument("--host-names", help='JSON file {"address": "name"}')
    ap.add_argument("--command-timeout", type=float, default=DEFAULT_COMMAND_TIMEOUT)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    if a.mode == "up":
        config = load_stack_config(a.program, a.stack)
    if a.extra_config:
        extra = json.loads(Path(a.extra_config).read_text())
        config.update({k: _config_value(v) for k, v in (extra.get("config") or {}).items()})
        secret_keys = list(extra.get("secretKeys") or [])
    host_names = json.loads(Path(a.host_names).read_text()) if a.host_names else None
    try:
        result = run_program(a.program, a.stack, config, secret_keys, a.mode, a.record, a.state,
                             host_names=host_names, verbose=a.verbose,
                             command_timeout=a.command_timeout)
    except LabRunError as exn:
        print(f"lab: {a.mode} failed: {exn}", file=sys.stderr)
        return 1
    if a.mode == "up":
        print(result.scrub(json.dumps(mask_outputs(result.outputs), indent=2, sort_keys=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

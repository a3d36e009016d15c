"""SSH for the lab runner: one pool of kept-open paramiko connections, one channel per command.

What pulumi-command does on a real `pulumi up` (provider/pkg/provider/remote/commandOutputs.go,
`run`): dial the command's `connection` (through its `proxy`), open a session, send
`environment` as SSH env requests (sshd's AcceptEnv decides what arrives), feed `stdin`, run
the command, and keep stdout/stderr with one trailing newline trimmed.
"""

from __future__ import annotations

import hashlib
import io
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from . import runner_state as rs

# OpenSSH's default MaxSessions is 10 per connection; stay below it and open
# another connection to the same host when a connection is full.
MAX_CHANNELS_PER_CONNECTION = 8


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
        self.dials = 0  # connections opened (a preview must open none)
        self.refuse = ""  # when set, dialling fails with this reason (preview)

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

        if self.refuse:
            raise ConnectionError(f"no SSH to {spec.host}: {self.refuse}")
        with self._lock:
            self.dials += 1

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


def trim_one_newline(s: str) -> str:
    # pulumi-command: strings.TrimSuffix(buf, "\n")
    return s[:-1] if s.endswith("\n") else s


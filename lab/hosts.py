"""Lab hosts: network namespaces on this machine that look like separate hosts.

Each lab host is
  * a network namespace named after the host, with a veth whose peer sits on a
    bridge (default ``oxlab0``) in the root namespace. The bridge holds the
    subnet's .1 address, so the runner (root namespace) reaches every host and
    hosts reach each other. There is no default route: hosts reach nothing but
    the lab subnet.
  * a PID-1 "host init" (lab/host_init.sh) started under
    ``ip netns exec NAME unshare --mount --uts --pid --fork --mount-proc``. It
    puts overlays over /etc /var /opt /srv /root /home (upper dirs in the lab
    state dir), tmpfs on /run /tmp /dev/shm, sets the hostname, and supervises
    sshd. It runs with umask 022 and gives each overlay root its lower dir's
    mode and owner, so hosts look the same whatever umask created the lab. SSH sessions and :func:`run_on` land in those namespaces, so hosts do
    not see each other's /etc/mysql, datadir, /run, /opt/open-xchange or
    processes.
  * a shared directory bind-mounted at /var/opt/filestore on every host, the
    stand-in for the NFS filestore (this kernel has no NFS client).

State dir: ``$OX_LAB_STATE`` or ``/ox-lab``. It must not lie under any of the
overlaid trees (/etc /var /opt /srv /root /home): overlayfs refuses an upper or
work dir inside its own lower dir. /ox-lab is a top-level directory on the root
filesystem, outside all of them (and outside /tmp and /run, which hosts cover
with tmpfs, though that would still work). Layout::

    hosts.json                 record of the lab (bridge, subnet, hosts, pids)
    ssh/id_ed25519[.pub]       client key for root on every host (kept by destroy)
    known_hosts                host keys of all hosts, by address and name
    filestore/                 shared /var/opt/filestore
    root-home/                 lower layer of every host's /root: Debian's
                               pristine root dotfiles, not this machine's /root
    hosts/NAME/                per host: upper/ work/ (overlays), ssh/ host keys,
                               init.log (host init and sshd output)

The lab is declarative: :func:`create` makes it match the given host list
(hosts missing from the list are removed, running healthy hosts are left
alone, broken pieces are rebuilt). :func:`destroy` removes everything but the
client key.

Several state dirs may share one bridge (and its subnet): the stacks of one
composed estate (a database stack, a middleware stack reading it through a
StackReference) share a network but are created and destroyed separately.
The bridge goes with the last lab on it; a host's address must not be one a
host of another lab on the bridge already has; a bridge carries one subnet.
The bridge, veths and netns addresses are set up by lab/hostnet.py; this
module keeps the hosts' lifecycle (init, keys, files, SSH, create/destroy).

CLI: ``python -m lab.hosts create db1=10.213.0.11 db2=10.213.0.12``,
``python -m lab.hosts destroy``, ``python -m lab.hosts list``,
``python -m lab.hosts run db1 -- hostname``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import ipaddress
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

# The network plumbing (bridge, veths, netns addresses) lives in hostnet; LabError and _sh too,
# as hostnet sits below this module. LabError stays importable from here (lab.hosts.LabError).
from .hostnet import (LabError, _addresses_on_bridge, _bridge_locked, _bridge_ports, _ensure_bridge,
                      _ensure_net, _link_exists, _netns_exists, _sh, _veth_name)

__all__ = [
    "LabError",
    "LabHost",
    "state_dir",
    "client_key_path",
    "known_hosts_path",
    "create",
    "destroy",
    "run_on",
    "install_files",
    "hosts",
]

DEFAULT_STATE = "/ox-lab"
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_BRIDGE = "oxlab0"
# Trees each host gets its own overlay of (see host_init.sh).
OVERLAID = ("/etc", "/var", "/opt", "/srv", "/root", "/home")
HOST_INIT = pathlib.Path(__file__).resolve().with_name("host_init.sh")
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
# A clean, predictable environment for everything started inside hosts.
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "USER": "root",
    "LOGNAME": "root",
}
SSH_WAIT_S = 30.0          # per host, upper bound for sshd to accept a login
STOP_GRACE_S = 6.0         # host init gets this long after SIGTERM, then SIGKILL
BLOCK_BEGIN = "# BEGIN ox-lab hosts (managed by lab/hosts.py)"
BLOCK_END = "# END ox-lab hosts"
# Launchers this process started, kept so that they are reaped properly (and
# Popen does not warn about a child "still running" when it is collected).
_LAUNCHERS: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    ssh_user: str = "root"
    ssh_port: int = 22


# --------------------------------------------------------------------------
# Paths


def state_dir() -> pathlib.Path:
    """``$OX_LAB_STATE`` or ``/ox-lab`` (outside every overlaid tree)."""
    return pathlib.Path(os.environ.get("OX_LAB_STATE") or DEFAULT_STATE).absolute()


def client_key_path() -> pathlib.Path:
    """Private ed25519 key that logs in as root on every lab host."""
    return state_dir() / "ssh" / "id_ed25519"


def known_hosts_path() -> pathlib.Path:
    """OpenSSH known_hosts with every lab host's keys (by address and name)."""
    return state_dir() / "known_hosts"


def _record_path() -> pathlib.Path:
    return state_dir() / "hosts.json"


def _host_dir(name: str) -> pathlib.Path:
    return state_dir() / "hosts" / name


def _filestore_dir() -> pathlib.Path:
    return state_dir() / "filestore"


def _root_home_dir() -> pathlib.Path:
    return state_dir() / "root-home"


def _ensure_filestore() -> None:
    """The shared dir every host sees at /var/opt/filestore. Its mode is set,
    not left to the caller's umask (under 077 it was 0700 on every host), and
    only when it is made: the program under test may change it later."""
    fs = _filestore_dir()
    if not fs.is_dir():
        fs.mkdir(parents=True, exist_ok=True)
        fs.chmod(0o755)


# --------------------------------------------------------------------------
# Small helpers


def _start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _same_process(pid: int | None, start: int | None) -> bool:
    """True if pid is still the process we started (guards against pid reuse)."""
    return bool(pid) and start is not None and _start_time(pid) == start


def _signal(pid: int | None, start: int | None, sig: int) -> None:
    if _same_process(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int | None) -> None:
    """Collect an exited launcher if it happens to be our child (no zombie).
    Launchers of an earlier process were adopted by PID 1, which reaps them."""
    if pid in _LAUNCHERS:
        if _LAUNCHERS[pid].poll() is not None:
            del _LAUNCHERS[pid]
    elif pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def _locked():
    """Serialise create/destroy on one state dir."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_record() -> dict | None:
    try:
        return json.loads(_record_path().read_text())
    except FileNotFoundError:
        return None


def _save_record(record: dict) -> None:
    path = _record_path()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("lab hosts need root (network namespaces, mounts)")
    missing = [tool for tool in ("ip", "unshare", "nsenter", "findmnt", "ssh-keygen")
               if shutil.which(tool) is None]
    if not os.path.exists("/usr/sbin/sshd"):
        missing.append("sshd (openssh-server)")
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run lab/install-packages.sh")
    sd = state_dir().resolve()
    for tree in OVERLAID:
        if sd == pathlib.Path(tree) or pathlib.Path(tree) in sd.parents:
            raise LabError(
                f"state dir {sd} is inside {tree}, which every host overlays; "
                "overlayfs refuses upper/work dirs inside their lower dir. "
                "Set OX_LAB_STATE elsewhere (default /ox-lab)."
            )


def _validate(hosts: list[tuple[str, str]], subnet: str) -> tuple[ipaddress.IPv4Network, str]:
    net = ipaddress.ip_network(subnet, strict=True)
    if net.version != 4 or net.prefixlen > 29:
        raise LabError(f"subnet {subnet}: need an IPv4 network of /29 or larger")
    gateway = str(next(net.hosts()))
    names, addrs = set(), set()
    for name, addr in hosts:
        if not NAME_RE.fullmatch(name):
            raise LabError(f"host name {name!r}: must match [a-z][a-z0-9-]{{0,30}}")
        ip = ipaddress.ip_address(addr)
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            raise LabError(f"{name}: address {addr} is not a host address in {subnet}")
        if str(ip) == gateway:
            raise LabError(f"{name}: {addr} is the bridge's address (.1) in {subnet}")
        if name in names:
            raise LabError(f"host name {name} given twice")
        if str(ip) in addrs:
            raise LabError(f"address {addr} given twice")
        names.add(name)
        addrs.add(str(ip))
    return net, gateway


# --------------------------------------------------------------------------
# Pieces of the lab, each idempotent


def _ensure_client_key() -> None:
    key = client_key_path()
    if key.exists() and key.with_suffix(".pub").exists():
        return
    key.parent.mkdir(parents=True, exist_ok=True)
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ox-lab-root", "-f", str(key)])


def _ensure_root_home() -> None:
    """Lower layer for the hosts' /root: what a fresh Debian install has.
    This machine's /root puts pyenv and cargo first in PATH (so `python3`
    over SSH would not be /usr/bin/python3) and holds personal tool configs."""
    home = _root_home_dir()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    for src, dst in (("dot.bashrc", ".bashrc"), ("dot.profile", ".profile")):
        source = pathlib.Path("/usr/share/base-files", src)
        if source.exists() and not (home / dst).exists():
            shutil.copyfile(source, home / dst)
        if (home / dst).exists():
            (home / dst).chmod(0o644)      # Debian's mode, whatever the caller's umask


def _ensure_host_keys(name: str) -> None:
    keydir = _host_dir(name) / "ssh"
    keydir.mkdir(parents=True, exist_ok=True)
    for ktype in ("ed25519", "ecdsa"):
        key = keydir / f"ssh_host_{ktype}_key"
        if key.exists() and key.with_suffix(".pub").exists():
            continue
        key.unlink(missing_ok=True)
        _sh(["ssh-keygen", "-q", "-t", ktype, "-N", "", "-C", f"root@{name}", "-f", str(key)])


def _init_healthy(entry: dict) -> bool:
    """Host init alive, in the netns that carries the host's name."""
    pid = entry.get("init_pid")
    if not _same_process(pid, entry.get("init_start")):
        return False
    try:
        return (os.stat(f"/proc/{pid}/ns/net").st_ino
                == os.stat(f"/run/netns/{entry['name']}").st_ino)
    except FileNotFoundError:
        return False


def _start_init(entry: dict) -> None:
    name, address = entry["name"], entry["address"]
    hdir = _host_dir(name)
    hdir.mkdir(parents=True, exist_ok=True)
    _ensure_filestore()
    argv = [
        "ip", "netns", "exec", name,
        "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
        "--propagation", "private", "--",
        "/bin/bash", str(HOST_INIT), name, address, str(hdir),
        str(_filestore_dir()), str(client_key_path().with_suffix(".pub")),
        str(_root_home_dir()),
    ]
    with open(hdir / "init.log", "ab") as log:
        # New session: the host must not die with the terminal that created it.
        launcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=HOST_ENV, cwd="/", start_new_session=True)
    _LAUNCHERS[launcher.pid] = launcher
    entry["launcher_pid"] = launcher.pid
    entry["launcher_start"] = _start_time(launcher.pid)
    # `unshare --fork` keeps running as the parent of the namespace's PID 1;
    # that child is the host init.
    children = pathlib.Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise LabError(f"{name}: host init exited at once ({launcher.returncode}); "
                           f"see {hdir / 'init.log'}:\n{_tail(hdir / 'init.log')}")
        with contextlib.suppress(FileNotFoundError):
            kids = children.read_text().split()
            if kids:
                entry["init_pid"] = int(kids[0])
                entry["init_start"] = _start_time(int(kids[0]))
                return
        time.sleep(0.01)
    raise LabError(f"{name}: host init did not appear within 5 s")


def _tail(path: pathlib.Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _stop_init(entry: dict) -> None:
    """Stop a host: SIGTERM its init (which stops the host's processes), then
    SIGKILL after a grace period. Killing PID 1 of the host's PID namespace
    makes the kernel kill every process in it, and nothing else."""
    pid, start = entry.get("init_pid"), entry.get("init_start")
    _signal(pid, start, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _same_process(pid, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _same_process(pid, start):
        _signal(pid, start, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _same_process(pid, start) and time.monotonic() < deadline:
            time.sleep(0.02)
    # The launcher (unshare) exits once its child is gone; make sure.
    lpid, lstart = entry.get("launcher_pid"), entry.get("launcher_start")
    deadline = time.monotonic() + 2
    while _same_process(lpid, lstart) and time.monotonic() < deadline:
        _reap(lpid)
        time.sleep(0.02)
    _signal(lpid, lstart, signal.SIGKILL)
    _reap(lpid)
    if _same_process(pid, start):
        raise LabError(f"{entry['name']}: host init {pid} survived SIGKILL")
    entry["init_pid"] = entry["init_start"] = None
    entry["launcher_pid"] = entry["launcher_start"] = None


def _remove_host(bridge: str, entry: dict, *, keep_dir: bool = False) -> None:
    _stop_init(entry)
    veth = entry.get("veth") or _veth_name(bridge, entry["name"])
    if _link_exists(veth):
        _sh(["ip", "link", "del", veth], check=False)
    if _netns_exists(entry["name"]):
        _sh(["ip", "netns", "del", entry["name"]], check=False)
    if not keep_dir:
        # The overlays lived only in the host's (now dead) mount namespace,
        # so the upper dirs are plain directories again.
        shutil.rmtree(_host_dir(entry["name"]), ignore_errors=True)


def _tcp_ready(address: str, port: int = 22, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_ssh(host: LabHost, entry: dict, deadline_s: float = SSH_WAIT_S) -> None:
    """Bounded wait: TCP accept on :22, then a real key login that reports the
    right hostname. Gives up at once if the host init died."""
    import paramiko  # local import: only create() needs it

    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while not _tcp_ready(host.address):
        if not _init_healthy(entry):
            raise LabError(f"{host.name}: host init exited; log:\n"
                           f"{_tail(_host_dir(host.name) / 'init.log')}")
        if time.monotonic() > deadline:
            raise LabError(f"{host.name}: sshd on {host.address}:22 not accepting after "
                           f"{deadline_s:.0f} s; log:\n{_tail(_host_dir(host.name) / 'init.log')}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    key = paramiko.Ed25519Key.from_private_key_file(str(client_key_path()))
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(host.address, port=host.ssh_port, username=host.ssh_user, pkey=key,
                           look_for_keys=False, allow_agent=False, timeout=5,
                           banner_timeout=5, auth_timeout=5)
            _, out, _ = client.exec_command("cat /proc/sys/kernel/hostname", timeout=5)
            got = out.read().decode().strip()
            if got != host.name:
                raise LabError(f"{host.name}: login works but hostname is {got!r}")
            return
        except LabError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
            time.sleep(0.2)
        finally:
            client.close()
    raise LabError(f"{host.name}: SSH login failed until the deadline: {last!r}")


def _hosts_block(entries: list[dict]) -> str:
    lines = [BLOCK_BEGIN] + [f"{e['address']}\t{e['name']}" for e in entries] + [BLOCK_END]
    return "\n".join(lines) + "\n"


def _apply_hosts_block(name: str, block: str) -> None:
    """Put the lab block into the host's /etc/hosts, keeping its other lines.
    Done from here (not by the host init) so that every running host gets the
    new list when create() adds or removes hosts."""
    current = run_on(name, ["cat", "/etc/hosts"]).stdout.decode()
    kept, skipping = [], False
    for line in current.splitlines():
        if line.strip() == BLOCK_BEGIN:
            skipping = True
        elif line.strip() == BLOCK_END and skipping:
            skipping = False
        elif not skipping:
            kept.append(line)
    new = "\n".join(kept).rstrip("\n") + "\n\n" + block if kept else block
    if new != current:
        install_files(name, {"/etc/hosts": new.encode()}, mode=0o644)


def _write_known_hosts(entries: list[dict]) -> None:
    lines = []
    for e in entries:
        for ktype in ("ed25519", "ecdsa"):
            pub = _host_dir(e["name"]) / "ssh" / f"ssh_host_{ktype}_key.pub"
            if pub.exists():
                kt, blob = pub.read_text().split()[:2]
                lines.append(f"{e['address']},{e['name']} {kt} {blob}")
    known_hosts_path().write_text("\n".join(lines) + ("\n" if lines else ""))


# --------------------------------------------------------------------------
# Public API


def create(hosts: list[tuple[str, str]], *, subnet: str = DEFAULT_SUBNET,
           bridge: str | None = None) -> list[LabHost]:
    """Make the lab consist of exactly these (name, address) hosts.

    Idempotent: healthy running hosts are left alone (their processes and
    files untouched), missing pieces (netns, veth, bridge, dead init) are
    rebuilt, hosts no longer listed are removed. Returns once every host
    accepts an SSH login as root with :func:`client_key_path`.

    ``bridge`` defaults to ``$OX_LAB_BRIDGE`` or ``oxlab0``. A lab in this
    state dir must keep its bridge and subnet: destroy() it to change them.
    """
    bridge = bridge or os.environ.get("OX_LAB_BRIDGE") or DEFAULT_BRIDGE
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", bridge):
        raise LabError(f"bridge name {bridge!r} is not a valid interface name")
    hosts = [(n, str(ipaddress.ip_address(a))) for n, a in hosts]
    net, gateway = _validate(hosts, subnet)
    _preflight()
    with _locked():
        record = _load_record() or {"version": 1, "bridge": bridge, "subnet": str(net),
                                    "gateway": gateway, "hosts": {}}
        if (record["bridge"], record["subnet"]) != (bridge, str(net)):
            raise LabError(
                f"lab in {state_dir()} uses bridge {record['bridge']} / {record['subnet']}; "
                f"asked for {bridge} / {net}. destroy() it first."
            )
        wanted = dict(hosts)
        for name, entry in list(record["hosts"].items()):
            if wanted.get(name) != entry["address"]:          # dropped or readdressed
                _remove_host(bridge, entry)
                del record["hosts"][name]
                _save_record(record)
        for name in wanted:
            if name not in record["hosts"] and _netns_exists(name):
                raise LabError(f"a network namespace named {name} already exists and is "
                               f"not part of the lab in {state_dir()}; pick another name")

        _ensure_client_key()
        _ensure_filestore()
        _ensure_root_home()
        with _bridge_locked(bridge):
            _ensure_bridge(bridge, gateway, net.prefixlen)
            # Another lab on this bridge (another state dir) may hold an address asked for here.
            taken = {a: ns for a, ns in _addresses_on_bridge(bridge).items() if ns not in wanted}
            clashes = [f"{name} {address} (netns {taken[address]})" for name, address in hosts if address in taken]
            if clashes:
                raise LabError(f"address already used on bridge {bridge} by a host of another lab: "
                               f"{', '.join(clashes)}")
            for name, address in hosts:
                entry = record["hosts"].setdefault(name, {
                    "name": name, "address": address, "veth": _veth_name(bridge, name),
                    "netns": name, "key_path": str(client_key_path()),
                    "state_dir": str(_host_dir(name)),
                })
                _save_record(record)             # record intent before creating anything
                _ensure_host_keys(name)
                _ensure_net(bridge, name, address, net.prefixlen)
                if not _init_healthy(entry):
                    _stop_init(entry)            # a stray init in an orphaned netns
                    _start_init(entry)
                    _save_record(record)

        entries = [record["hosts"][n] for n, _ in hosts]
        block = _hosts_block(entries)
        for e in entries:
            _apply_hosts_block(e["name"], block)
        _write_known_hosts(entries)

        lab = [LabHost(n, a) for n, a in hosts]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(lab)))) as pool:
            for fut in [pool.submit(_wait_ssh, h, record["hosts"][h.name]) for h in lab]:
                fut.result()
        return lab


def destroy() -> None:
    """Remove every host, veth, netns, the processes (each host's whole PID
    namespace) and the per-host state, and the bridge once no lab is left on
    it. Keeps the client key. Idempotent; works from a fresh process using
    hosts.json."""
    if not state_dir().exists():
        return
    if os.geteuid() != 0:
        raise LabError("lab hosts need root (network namespaces, mounts)")
    with _locked():
        record = _load_record()
        if record is not None:
            bridge = record["bridge"]
            for name, entry in list(record["hosts"].items()):
                _remove_host(bridge, entry)
                del record["hosts"][name]
                _save_record(record)
            # Labs in other state dirs may share the bridge (the stacks of one composed estate
            # share a network): it goes only with the last interface on it.
            with _bridge_locked(bridge):
                if _link_exists(bridge) and not _bridge_ports(bridge):
                    _sh(["ip", "link", "del", bridge], check=False)
        shutil.rmtree(state_dir() / "hosts", ignore_errors=True)
        shutil.rmtree(_filestore_dir(), ignore_errors=True)
        shutil.rmtree(_root_home_dir(), ignore_errors=True)
        known_hosts_path().unlink(missing_ok=True)
        _record_path().unlink(missing_ok=True)


def hosts() -> list[LabHost]:
    """The hosts recorded for the lab in the state dir (empty if none)."""
    record = _load_record() or {"hosts": {}}
    return [LabHost(e["name"], e["address"]) for e in record["hosts"].values()]


def _init_pid(name: str) -> int:
    entry = (_load_record() or {"hosts": {}})["hosts"].get(name)
    if entry is None:
        raise LabError(f"no lab host {name} in {state_dir()}")
    if not _init_healthy(entry):
        raise LabError(f"lab host {name} is not running; run create() again")
    return entry["init_pid"]


def run_on(name: str, argv: list[str], *, input: bytes | None = None,
           check=True) -> subprocess.CompletedProcess:
    """Run argv inside host NAME (its mount, UTS, PID and network namespaces,
    cwd /, a clean root environment with umask 022, as SSH sessions have).
    Output is captured (bytes). With check, a non-zero exit raises
    subprocess.CalledProcessError."""
    pid = _init_pid(name)
    cmd = ["nsenter", f"--target={pid}", "--mount", "--uts", "--pid", "--net",
           "--wd=/", "--", *argv]
    # umask: the host's, not the caller's (install_files' mkdir -p would
    # otherwise make 0700 parents under a caller's umask 077).
    proc = subprocess.run(cmd, input=input, capture_output=True, env=HOST_ENV, cwd="/", umask=0o022)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


_INSTALL_SH = r'''set -eu
dest=$1 mode=$2
mkdir -p "$(dirname "$dest")"
tmp="$dest.ox-lab-tmp.$$"
cat >"$tmp"
chmod "$mode" "$tmp"
# rename, so replacing a running executable works (no ETXTBSY)
mv -f "$tmp" "$dest"
'''


def install_files(name: str, files: dict[str, bytes | pathlib.Path], mode: int = 0o755) -> None:
    """Write files at absolute paths inside host NAME's own view (its overlay),
    creating parent dirs. Values are contents (bytes) or a path on this
    machine to copy from."""
    for dest, content in files.items():
        if not str(dest).startswith("/"):
            raise LabError(f"install_files: {dest!r} is not an absolute path")
        data = pathlib.Path(content).read_bytes() if isinstance(content, (str, os.PathLike)) else content
        run_on(name, ["sh", "-c", _INSTALL_SH, "install_files", str(dest), format(mode, "o")],
               input=data)


# --------------------------------------------------------------------------
# CLI


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.hosts", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_create = sub.add_parser("create", help="create/repair the lab: NAME=ADDRESS ...")
    p_create.add_argument("hosts", nargs="+", metavar="NAME=ADDRESS")
    p_create.add_argument("--subnet", default=DEFAULT_SUBNET)
    p_create.add_argument("--bridge", default=None)
    sub.add_parser("destroy", help="remove the whole lab")
    sub.add_parser("list", help="show the recorded hosts and whether they run")
    p_run = sub.add_parser("run", help="run a command inside a host: run NAME -- CMD ...")
    p_run.add_argument("name")
    p_run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "create":
            pairs = []
            for item in args.hosts:
                name, sep, addr = item.partition("=")
                if not sep:
                    parser.error(f"{item!r}: expected NAME=ADDRESS")
                pairs.append((name, addr))
            t0 = time.monotonic()
            for h in create(pairs, subnet=args.subnet, bridge=args.bridge):
                print(f"{h.name}\t{h.address}")
            print(f"lab ready in {time.monotonic() - t0:.2f} s; key {client_key_path()}", file=sys.stderr)
        elif args.cmd == "destroy":
            destroy()
        elif args.cmd == "list":
            record = _load_record()
            if not record:
                print(f"no lab in {state_dir()}", file=sys.stderr)
                return 0
            print(f"# state {state_dir()}  bridge {record['bridge']}  subnet {record['subnet']}"
                  f"  key {client_key_path()}")
            for e in record["hosts"].values():
                status = "running" if _init_healthy(e) else "DOWN"
                print(f"{e['name']}\t{e['address']}\tinit_pid={e.get('init_pid')}\t{status}")
        elif args.cmd == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("run: no command given")
            proc = run_on(args.name, command, check=False)
            sys.stdout.buffer.write(proc.stdout)
            sys.stderr.buffer.write(proc.stderr)
            return proc.returncode
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())

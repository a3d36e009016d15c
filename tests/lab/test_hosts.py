"""Real lab hosts (network + mount + UTS + PID namespaces, sshd), checked over
real SSH with paramiko. Needs root; CI runs lab/install-packages.sh first.

The labs here use their own state dir, bridge and subnet (10.214.x.0/24), so
they never clash with a lab someone runs with the defaults (oxlab0,
10.213.0.0/24, /ox-lab). test_labs_share_a_bridge puts two state dirs on one
bridge (10.214.3.0/24, oxlabt3).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import sys

import pytest

# Run from any cwd and with plain `pytest`: the repo root holds the lab package.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from lab import hosts as lab  # noqa: E402
from estate import lab_mark  # noqa: E402


pytestmark = lab_mark(("ip", "sshd"))

paramiko = pytest.importorskip("paramiko")

A, B = ("oxt-a", "10.214.0.11"), ("oxt-b", "10.214.0.12")
SUBNET, BRIDGE = "10.214.0.0/24", "oxlabt0"


@pytest.fixture(scope="module")
def labenv(tmp_path_factory):
    """A two-host lab, destroyed afterwards even when a test fails."""
    state = tmp_path_factory.mktemp("ox-lab-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OX_LAB_STATE", str(state))
        try:
            created = lab.create([A, B], subnet=SUBNET, bridge=BRIDGE)
            yield created
        finally:
            lab.destroy()


class Ssh:
    """Kept-open paramiko clients, one per address, checking host keys
    against the lab's known_hosts."""

    def __init__(self):
        self.clients: dict[str, paramiko.SSHClient] = {}

    def client(self, host: lab.LabHost) -> paramiko.SSHClient:
        if host.address not in self.clients:
            c = paramiko.SSHClient()
            c.load_host_keys(str(lab.known_hosts_path()))
            c.set_missing_host_key_policy(paramiko.RejectPolicy())
            c.connect(host.address, port=host.ssh_port, username=host.ssh_user,
                      key_filename=str(lab.client_key_path()), look_for_keys=False,
                      allow_agent=False, timeout=10)
            self.clients[host.address] = c
        return self.clients[host.address]

    def run(self, host: lab.LabHost, command: str, env: dict | None = None) -> tuple[int, str]:
        _, out, err = self.client(host).exec_command(command, timeout=20, environment=env)
        text = out.read().decode()
        rc = out.channel.recv_exit_status()
        return rc, text + err.read().decode()

    def close(self):
        for c in self.clients.values():
            c.close()


@pytest.fixture
def ssh(labenv):
    s = Ssh()
    yield s
    s.close()


def _pidns_members(init_pid: int) -> set[int]:
    """Root-namespace pids of every process in the PID namespace whose init is init_pid."""
    ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    members = set()
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == ns:
                    members.add(int(entry.name))
            except OSError:
                pass
    return members


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _record() -> dict:
    return json.loads((lab.state_dir() / "hosts.json").read_text())


def test_create_returns_hosts(labenv):
    assert labenv == [lab.LabHost(*A), lab.LabHost(*B)]
    assert lab.client_key_path().exists()
    assert lab.state_dir() != pathlib.Path("/ox-lab")
    rec = _record()
    assert rec["bridge"] == BRIDGE and rec["subnet"] == SUBNET
    for name, addr in (A, B):
        e = rec["hosts"][name]
        assert e["address"] == addr and e["init_pid"] > 1
        assert e["key_path"] == str(lab.client_key_path())


def test_each_host_has_its_own_hostname(labenv, ssh):
    for h in labenv:
        assert ssh.run(h, "hostname") == (0, f"{h.name}\n")
        assert ssh.run(h, "cat /etc/hostname") == (0, f"{h.name}\n")
        rc, hosts_file = ssh.run(h, "cat /etc/hosts")
        assert f"{A[1]}\t{A[0]}" in hosts_file and f"{B[1]}\t{B[0]}" in hosts_file


def test_etc_mysql_is_per_host(labenv, ssh):
    a, b = labenv
    assert ssh.run(a, "mkdir -p /etc/mysql/conf.d && echo A > /etc/mysql/conf.d/only-a.cnf")[0] == 0
    assert ssh.run(a, "cat /etc/mysql/conf.d/only-a.cnf") == (0, "A\n")
    rc, _ = ssh.run(b, "test -e /etc/mysql/conf.d/only-a.cnf")
    assert rc == 1, "host B sees a file host A wrote under /etc/mysql"
    assert not pathlib.Path("/etc/mysql/conf.d/only-a.cnf").exists(), "leaked to the real /etc"


def test_run_var_lib_opt_are_per_host(labenv, ssh):
    a, b = labenv
    for path in ("/run/only-a", "/var/lib/mysql/only-a", "/opt/open-xchange/only-a", "/tmp/only-a"):
        assert ssh.run(a, f"mkdir -p $(dirname {path}) && touch {path}")[0] == 0
        assert ssh.run(b, f"test -e {path}")[0] == 1, f"{path} is visible on host B"
        assert not os.path.exists(path), f"{path} leaked to the root namespace"


def test_filestore_is_shared(labenv, ssh):
    a, b = labenv
    assert ssh.run(a, "echo from-a > /var/opt/filestore/shared.txt")[0] == 0
    assert ssh.run(b, "cat /var/opt/filestore/shared.txt") == (0, "from-a\n")


def test_ps_shows_only_own_processes(labenv, ssh):
    a, b = labenv
    for me, other in ((a, b), (b, a)):
        rc, out = ssh.run(me, "ps -e -o pid=,args=")
        assert rc == 0
        assert other.name not in out, f"{me.name} sees {other.name}'s processes:\n{out}"
        listeners = [line for line in out.splitlines() if "sshd -D" in line]
        assert len(listeners) == 1, out
        # PID 1 of the host is its own init.
        assert ssh.run(me, "cat /proc/1/cmdline | tr '\\0' ' '")[1].count(f"host_init.sh {me.name} ") == 1


def test_hosts_reach_each_other_over_the_bridge(labenv, ssh):
    a, b = labenv
    probe = "timeout 5 bash -c 'exec 3<>/dev/tcp/{}/22; head -c 8 <&3'"
    assert ssh.run(a, probe.format(b.address)) == (0, "SSH-2.0-")
    assert ssh.run(a, probe.format(b.name)) == (0, "SSH-2.0-")      # by /etc/hosts name
    assert ssh.run(b, probe.format(a.address)) == (0, "SSH-2.0-")
    # Hosts have no route outside the lab subnet.
    rc, out = ssh.run(a, "ip -4 route show default")
    assert rc == 0 and out.strip() == ""


def test_only_locale_env_is_accepted(labenv, ssh):
    a, _ = labenv
    rc, out = ssh.run(a, 'echo "LANG=$LANG FOO=$FOO"', env={"LANG": "C.UTF-8", "FOO": "bar"})
    assert (rc, out) == (0, "LANG=C.UTF-8 FOO=\n")


def test_python3_on_hosts_is_debians(labenv, ssh):
    # The machine's /root dotfiles (pyenv) must not leak into the hosts' /root.
    a, _ = labenv
    assert ssh.run(a, "command -v python3") == (0, "/usr/bin/python3\n")


def test_run_on_and_install_files(labenv, ssh):
    a, b = labenv
    lab.install_files(a.name, {"/opt/open-xchange/sbin/registerserver": b"#!/bin/sh\necho reg $(hostname) \"$@\"\n"})
    assert lab.run_on(a.name, ["/opt/open-xchange/sbin/registerserver", "x y"]).stdout == b"reg oxt-a x y\n"
    assert ssh.run(a, "/opt/open-xchange/sbin/registerserver z") == (0, "reg oxt-a z\n")
    assert lab.run_on(b.name, ["test", "-e", "/opt/open-xchange/sbin/registerserver"], check=False).returncode == 1
    assert lab.run_on(b.name, ["cat"], input=b"stdin ok").stdout == b"stdin ok"
    with pytest.raises(subprocess.CalledProcessError):
        lab.run_on(b.name, ["false"])
    mode = lab.run_on(a.name, ["stat", "-c", "%a", "/opt/open-xchange/sbin/registerserver"]).stdout
    assert mode == b"755\n"


def test_create_twice_is_idempotent(labenv, ssh):
    a, b = labenv
    before = {n: e["init_pid"] for n, e in _record()["hosts"].items()}
    assert ssh.run(a, "touch /run/still-here")[0] == 0
    again = lab.create([A, B], subnet=SUBNET, bridge=BRIDGE)
    assert again == labenv
    assert {n: e["init_pid"] for n, e in _record()["hosts"].items()} == before
    assert lab.run_on(a.name, ["test", "-e", "/run/still-here"], check=False).returncode == 0
    with pytest.raises(lab.LabError):
        lab.create([A, B], subnet="10.214.9.0/24", bridge=BRIDGE)   # different lab: refused


def test_create_repairs_a_dead_host(labenv, ssh):
    a, b = labenv
    # Written here, not by another test, so this test holds in any order.
    lab.install_files(a.name, {"/etc/mysql/conf.d/before-repair.cnf": b"kept\n"}, mode=0o644)
    assert ssh.run(a, "touch /run/before-repair")[0] == 0
    rec = _record()["hosts"]
    os.kill(rec[a.name]["init_pid"], 9)
    lab.create([A, B], subnet=SUBNET, bridge=BRIDGE)
    after = _record()["hosts"]
    assert after[a.name]["init_pid"] != rec[a.name]["init_pid"]
    assert after[b.name]["init_pid"] == rec[b.name]["init_pid"]          # left alone
    # Files on the host survive (overlay upper dirs persist); /run does not.
    assert lab.run_on(a.name, ["cat", "/etc/mysql/conf.d/before-repair.cnf"]).stdout == b"kept\n"
    assert lab.run_on(a.name, ["test", "-e", "/run/before-repair"], check=False).returncode == 1
    fresh = Ssh()
    try:
        assert fresh.run(a, "hostname") == (0, f"{a.name}\n")
        assert fresh.run(b, f"timeout 5 bash -c 'echo > /dev/tcp/{a.address}/22'")[0] == 0
    finally:
        fresh.close()


def test_destroy_removes_everything(tmp_path):
    """A separate lab, so destroying it leaves the module's lab alone."""
    hosts = [("oxd-a", "10.214.1.11"), ("oxd-b", "10.214.1.12")]
    bridge = "oxlabt1"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OX_LAB_STATE", str(tmp_path / "state"))
        try:
            lab.create(hosts, subnet="10.214.1.0/24", bridge=bridge)
            rec = _record()["hosts"]
            veths = [e["veth"] for e in rec.values()]
            # something running on a host, detached the way daemons are
            lab.run_on("oxd-a", ["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 &"])
            procs = {e["launcher_pid"] for e in rec.values()}
            for e in rec.values():
                procs |= _pidns_members(e["init_pid"])
            assert len(procs) >= 6        # 2 x (launcher, init, sshd) + the sleep
        finally:
            lab.destroy()
        lab.destroy()                                            # idempotent
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for name, _ in hosts:
            assert name not in netns.split()
            assert not (tmp_path / "state" / "hosts" / name).exists()
        assert not pathlib.Path("/sys/class/net", bridge).exists()
        for veth in veths:
            assert not pathlib.Path("/sys/class/net", veth).exists()
        survivors = [pid for pid in procs if _alive(pid)]
        assert survivors == [], f"lab processes survived destroy: {survivors}"
        assert lab.hosts() == []


# Two labs (state dirs) on one bridge, as the stacks of one composed estate are: module-level, so
# the test can be pointed at another free subnet and bridge.
SHARED_SUBNET, SHARED_BRIDGE = "10.214.3.0/24", "oxlabt3"
SHARED_HOSTS = (("oxs-a", 11), ("oxs-b", 12))


def test_labs_share_a_bridge(tmp_path):
    """Destroying one of two labs on a bridge leaves the other's host reachable over SSH; the
    bridge goes with the last lab. A host may not take an address the other lab's host has."""
    net = SHARED_SUBNET.rsplit(".", 1)[0]
    (a_name, a_ip), (b_name, b_ip) = [(n, f"{net}.{i}") for n, i in SHARED_HOSTS]
    state_a, state_b = tmp_path / "a", tmp_path / "b"
    ports = lambda: subprocess.run(["ip", "-o", "link", "show", "master", SHARED_BRIDGE],  # noqa: E731
                                   capture_output=True, text=True).stdout.splitlines()
    before = len(ports()) if pathlib.Path("/sys/class/net", SHARED_BRIDGE).exists() else 0   # another lab's
    with pytest.MonkeyPatch.context() as mp:
        try:
            mp.setenv("OX_LAB_STATE", str(state_a))
            lab.create([(a_name, a_ip)], subnet=SHARED_SUBNET, bridge=SHARED_BRIDGE)
            mp.setenv("OX_LAB_STATE", str(state_b))
            with pytest.raises(lab.LabError, match=f"already used on bridge {SHARED_BRIDGE}"):
                lab.create([(b_name, a_ip)], subnet=SHARED_SUBNET, bridge=SHARED_BRIDGE)
            lab.create([(b_name, b_ip)], subnet=SHARED_SUBNET, bridge=SHARED_BRIDGE)
            assert len(ports()) == before + 2
            # b reaches a across the labs (one network), then a's lab goes.
            probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{a_ip}/22; head -c 8 <&3'"
            assert lab.run_on(b_name, ["bash", "-c", probe]).stdout == b"SSH-2.0-"
            mp.setenv("OX_LAB_STATE", str(state_a))
            lab.destroy()
            assert pathlib.Path("/sys/class/net", SHARED_BRIDGE).exists(), "destroy took the other lab's bridge"
            mp.setenv("OX_LAB_STATE", str(state_b))
            fresh = Ssh()
            try:
                assert fresh.run(lab.LabHost(b_name, b_ip), "hostname") == (0, f"{b_name}\n")
            finally:
                fresh.close()
            lab.destroy()
            if not before:
                assert not pathlib.Path("/sys/class/net", SHARED_BRIDGE).exists(), "the last lab left its bridge"
        finally:
            for state in (state_a, state_b):
                mp.setenv("OX_LAB_STATE", str(state))
                lab.destroy()


# Directories whose mode and owner a host must show as the real root does, whatever
# umask the lab was created under.
SAME_AS_ROOT = ("/etc", "/etc/ssh", "/var", "/var/lib", "/var/opt", "/var/tmp", "/var/log", "/opt",
                "/srv", "/home", "/root", "/tmp", "/run", "/run/lock", "/dev/shm")


def test_host_modes_do_not_follow_the_creators_umask(tmp_path):
    """Created under umask 077, the overlay upper dirs were 0700, so the hosts' /etc and /var
    were 0700 and MariaDB (running as mysql) failed with a misleading "Permission denied"."""
    name, address = "oxu-a", "10.214.2.11"
    host = lab.LabHost(name, address)
    state = tmp_path / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OX_LAB_STATE", str(state))
        ssh = Ssh()
        try:
            # The creation itself runs in a process of its own with the restrictive umask.
            created = subprocess.run(
                [sys.executable, "-m", "lab.hosts", "create", "--subnet", "10.214.2.0/24",
                 "--bridge", "oxlabt2", f"{name}={address}"],
                cwd=_ROOT, capture_output=True, text=True, timeout=120, umask=0o077)
            assert created.returncode == 0, created.stderr
            # Not vacuous: what the creator wrote for itself did follow umask 077.
            assert (state / "hosts.json").stat().st_mode & 0o077 == 0

            paths = [p for p in SAME_AS_ROOT if os.path.isdir(p)]
            fmt = "%a %U:%G"
            on_root = subprocess.run(["stat", "-c", fmt, *paths], capture_output=True, text=True,
                                     check=True).stdout.splitlines()
            rc, in_host = ssh.run(host, f"stat -c '{fmt}' {' '.join(paths)}")
            assert rc == 0, in_host
            assert dict(zip(paths, in_host.splitlines())) == dict(zip(paths, on_root))
            # The shared filestore and the config the lab writes for the host's sshd.
            assert ssh.run(host, "stat -c %a /var/opt/filestore /etc/ssh/sshd_config") == (0, "755\n644\n")
            # Sessions (and every daemon they start) get a real host's umask, not the creator's.
            assert ssh.run(host, "umask") == (0, "0022\n")

            # Files the lab installs from a process with umask 077: parents are 0755 too.
            old = os.umask(0o077)
            try:
                lab.install_files(name, {"/srv/oxu/conf.d/x.cnf": b"x\n"}, mode=0o644)
            finally:
                os.umask(old)

            # A daemon's user (here nobody) can traverse and read what it must.
            as_nobody = ("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "
                         "'cd /var/lib && ls /var/lib /var/opt/filestore /run /tmp >/dev/null && "
                         "cat /etc/hostname /srv/oxu/conf.d/x.cnf && touch /tmp/nobody-was-here'")
            assert ssh.run(host, as_nobody) == (0, f"{name}\nx\n")
        finally:
            ssh.close()
            lab.destroy()

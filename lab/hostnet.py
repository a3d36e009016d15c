"""Lab network plumbing: the bridge, each host's veth pair and network namespace address.

Split from lab/hosts.py (which keeps the hosts' lifecycle: init, keys, files, SSH) so that what
touches links and addresses reads on its own. It sits below hosts.py, so LabError and _sh, which
both use, live here.

Several state dirs may share one bridge (and its subnet): the stacks of one composed estate
share a network but are created and destroyed separately. So the bridge's setup and removal are
serialised across state dirs (_bridge_locked), a second subnet on a bridge is refused
(_ensure_bridge), and the addresses other labs' hosts hold on it are listed (_addresses_on_bridge)
for create() to refuse a clash.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import pathlib
import re
import subprocess
import zlib


class LabError(RuntimeError):
    """The lab cannot be created or used as asked."""


# --------------------------------------------------------------------------
# Small helpers


def _sh(argv: list[str], *, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=input, capture_output=True)
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {' '.join(argv)}\n"
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc


def _link_exists(dev: str) -> bool:
    return pathlib.Path("/sys/class/net", dev).exists()


def _netns_exists(name: str) -> bool:
    return pathlib.Path("/run/netns", name).exists()


def _veth_name(bridge: str, name: str) -> str:
    # Interface names are limited to 15 bytes and host names may be 31, so the
    # root-side veth is named by a hash of (bridge, host).
    return "oxv%08x" % zlib.crc32(f"{bridge}/{name}".encode())


# --------------------------------------------------------------------------
# The bridge, shared by every lab on it


@contextlib.contextmanager
def _bridge_locked(bridge: str):
    """Serialise the setup and removal of one bridge across state dirs (whose
    own locks do not see each other): a destroy must not delete the bridge
    between another lab's _ensure_bridge and its veths joining it."""
    lock_dir = pathlib.Path("/run/lock") if pathlib.Path("/run/lock").is_dir() else pathlib.Path("/tmp")
    with open(lock_dir / f"ox-lab-bridge-{bridge}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_bridge(bridge: str, gateway: str, prefixlen: int) -> None:
    if not _link_exists(bridge):
        _sh(["ip", "link", "add", bridge, "type", "bridge"])
    cidr = f"{gateway}/{prefixlen}"
    # A bridge another lab already uses keeps its address: labs sharing a bridge share its subnet
    # (the runner reaches every host from .1), so a second subnet on it is refused, not added.
    present = re.findall(r"inet (\S+)", _sh(["ip", "-o", "-4", "addr", "show", "dev", bridge]).stdout.decode())
    others = [a for a in present if a != cidr]
    if others:
        raise LabError(f"bridge {bridge} carries {', '.join(others)} (another lab's subnet); "
                       f"a shared bridge carries one subnet: use {others[0]}'s network or another bridge")
    if not present:
        _sh(["ip", "addr", "add", cidr, "dev", bridge])
    _sh(["ip", "link", "set", bridge, "up"])


def _bridge_ports(bridge: str) -> list[dict]:
    """The interfaces enslaved to the bridge (every lab's hosts' veths, as `ip -j link` describes
    them), empty if it has none or does not exist."""
    if not _link_exists(bridge):
        return []
    return json.loads(_sh(["ip", "-j", "link", "show", "master", bridge], check=False).stdout.decode() or "[]")


def _addresses_on_bridge(bridge: str) -> dict[str, str]:
    """address -> netns of every lab host on the bridge, this lab's and other state dirs' alike:
    each bridge port's peer netns (by its id), and that netns's eth0 address."""
    links = _bridge_ports(bridge)
    if not links:
        return {}
    ids = {}
    for ns in json.loads(_sh(["ip", "-j", "netns", "list"]).stdout.decode() or "[]"):
        if "id" in ns:
            ids[ns["id"]] = ns["name"]
    found = {}
    for link in links:
        ns = ids.get(link.get("link_netnsid"))
        if ns is None:
            continue
        out = _sh(["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"], check=False).stdout.decode()
        for cidr in re.findall(r"inet (\S+)", out):
            found[cidr.split("/")[0]] = ns
    return found


# --------------------------------------------------------------------------
# A host's network namespace


def _ensure_net(bridge: str, name: str, address: str, prefixlen: int) -> None:
    """netns NAME with eth0 = ADDRESS, its veth peer enslaved to the bridge."""
    if not _netns_exists(name):
        _sh(["ip", "netns", "add", name])
    veth = _veth_name(bridge, name)
    peer_ok = _sh(["ip", "-n", name, "link", "show", "eth0"], check=False).returncode == 0
    if _link_exists(veth) and not peer_ok:
        # Our veth's peer is in some other (e.g. orphaned) namespace.
        _sh(["ip", "link", "del", veth])
    if not _link_exists(veth):
        # A lone eth0 in the netns would be a leftover whose peer is gone.
        if peer_ok:
            _sh(["ip", "-n", name, "link", "del", "eth0"], check=False)
        # A MAC derived from the address (like Docker's 02:42:...): a rebuilt
        # host keeps its MAC, so neighbour caches of the runner and of the
        # other hosts stay right. With a random MAC a rebuilt host was
        # unreachable for 30+ s, until the stale ARP entries timed out.
        mac = "02:4f:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)
        _sh(["ip", "link", "add", veth, "type", "veth",
             "peer", "name", "eth0", "address", mac, "netns", name])
    _sh(["ip", "link", "set", veth, "master", bridge, "up"])
    cidr = f"{address}/{prefixlen}"
    if cidr not in _sh(["ip", "-n", name, "-o", "-4", "addr", "show", "dev", "eth0"]).stdout.decode():
        _sh(["ip", "-n", name, "addr", "flush", "dev", "eth0"])
        _sh(["ip", "-n", name, "addr", "add", cidr, "dev", "eth0"])
    _sh(["ip", "-n", name, "link", "set", "eth0", "up"])
    _sh(["ip", "-n", name, "link", "set", "lo", "up"])

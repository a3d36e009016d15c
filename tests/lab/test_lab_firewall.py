"""The static hosts' firewall for real: nftables in every lab host, from the port table.

One lab estate (stack lab-fw: every role, so every row of components/core/ports.py is on some host)
in its own subnet. It must come up and verify behind its firewalls (the table is complete for
what the estate really does); then, from every host and from the runner, every table port (and
a few that are never open) of every other host is probed, and each must be open exactly where the
table says. UDP 4567 (Galera) is checked in the table only: a UDP probe gets no answer either way.
"""

import ipaddress
import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from estate import ROOT, lab_estate, lab_mark

from components.core.config import Role
from components.core.ports import ADMIN, ADMIN_NETWORKS, ANYWHERE, PORT_RULES

pytestmark = lab_mark(("ip", "mariadbd", "haproxy", "sshd", "nft"))

STACK, SUBNET, BRIDGE = "lab-fw", "10.219.0.0/24", "oxlabx0"
RUNNER = "runner"  # the lab runner, in the root namespace on the bridge's address (.1)
NEVER = (1099, 3307, 8080)  # OX RMI and HAProxy's writer are localhost-only; 8080 nothing of ours
CONFIG = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{STACK}.yaml").read_text())["config"]

# Connects to every (address, port) at once, each with a short timeout; prints one JSON line.
PROBE = r"""
import concurrent.futures, json, socket, sys
targets = [tuple(t) for t in json.loads(sys.argv[1])]
def probe(target):
    s = socket.socket()
    s.settimeout(1.5)
    try:
        s.connect(target)
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "filtered"
    except OSError as e:
        return f"error {e.errno}"
    finally:
        s.close()
with concurrent.futures.ThreadPoolExecutor(64) as pool:
    print(json.dumps([[a, p, r] for (a, p), r in zip(targets, pool.map(probe, targets))]))
"""

# Listens on each port of this host's address that nothing else holds, for at most 300 s, so that
# an admitted port answers even where no estate service listens (Hazelcast, 443, ...).
LISTEN = r"""
import select, socket, sys, time
socks = []
for port in map(int, sys.argv[2:]):
    s = socket.socket()
    try:
        s.bind((sys.argv[1], port))
        s.listen(64)
        socks.append(s)
    except OSError:
        s.close()  # taken: the real service answers there
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    for s in select.select(socks, [], [], 1)[0]:
        s.accept()[0].close()
"""


def _up(estate, *args: str) -> subprocess.CompletedProcess:
    """`lab up [args]`: every step succeeds and every verify check passes."""
    result = estate.lab("up", *args)
    fails = [ln.strip() for ln in result.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert result.returncode == 0 and "up took" in result.stdout and not fails, \
        f"lab up failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def fw(tmp_path_factory):
    with lab_estate(STACK, SUBNET, BRIDGE, tmp_path_factory.mktemp(STACK)) as estate:
        estate.first_up = _up(estate)
        estate.first_record = estate.record()
        yield estate


def _hosts() -> dict[str, str]:
    return {h["name"]: h["address"] for h in CONFIG["ox-estate:hosts"]}


def _roles() -> dict[str, set[str]]:
    """Each host's roles, from the stack file (as EstateConfig.roles_of has them for this stack)."""
    c = CONFIG
    roles: dict[str, set[str]] = {h: set() for h in _hosts()}
    for h in c["ox-estate:database"]["galera"]["nodes"]:
        roles[h].add(Role.DB)
    for n in c["ox-estate:middleware"]["nodes"]:
        roles[n["host"]].add(Role.MW)
    for h in c["ox-estate:frontend"]["nodes"]:
        roles[h].add(Role.WEB)
    roles[c["ox-estate:filestore"]["server"]].add(Role.NFS)
    return roles


def _in(address: str, networks: list[str]) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(n) for n in networks)


def _allowed(source: str, source_address: str, target: str, port: int) -> bool:
    """What the table says: does `target` admit TCP `port` from `source`?"""
    roles = _roles()
    source_roles = roles.get(source, set())
    for rule in PORT_RULES:
        if rule.proto != "tcp" or not rule.first <= port <= rule.last:
            continue
        if rule.to != ADMIN and rule.to not in roles[target]:
            continue
        if (rule.source == ANYWHERE or rule.source in source_roles
                or rule.source == ADMIN and _in(source_address, CONFIG["ox-estate:firewall"]["sshFrom"])
                or rule.source == ADMIN_NETWORKS and _in(source_address, CONFIG["ox-estate:frontend"]["adminNetworks"])):
            return True
    return False


def _ports() -> list[int]:
    return sorted({p for r in PORT_RULES if r.proto == "tcp" for p in range(r.first, r.last + 1)} | set(NEVER))


def _probe_from(fw, source: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    args = [sys.executable if source == RUNNER else "python3", "-c", PROBE, json.dumps(targets)]
    if source == RUNNER:
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    else:
        out = fw.run_on(source, shlex.join(args))
    return {(a, p): r for a, p, r in json.loads(out)}


def _start_listeners(fw) -> dict[str, str]:
    ports = [str(p) for p in _ports()]
    return {h: fw.run_on(h, f"setsid python3 -c {shlex.quote(LISTEN)} {a} {' '.join(ports)} "
                            ">/dev/null 2>&1 </dev/null & echo $!")
            for h, a in _hosts().items()}


def _stop(fw, pids: dict[str, str]) -> None:
    for host, pid in pids.items():
        fw.run_on(host, f"kill {pid} 2>/dev/null; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || exit 0; "
                        "sleep 0.1; done", check=False)


def _listings(fw) -> dict[str, str]:
    return {h: fw.run_on(h, "nft list table inet ox_estate", check=False) for h in _hosts()}


def test_estate_comes_up_behind_its_firewalls_and_verifies(fw):
    """Every firewall step runs before anything else, so the whole estate (Galera SST and joins,
    clustercheck polled by HAProxy, OX, registration, NFS, Apache) came up through them."""
    out = fw.first_up.stdout
    for check in ("galera row xdb1 -> xdb3", "writes through 3307 land on one node", "reads through 3306 rotate",
                  "ox xmw2 session route", "nfs export xmw1 -> xmw2", "apache: new sessions spread"):
        assert f"ok    {check}" in out, check
    first = {s["name"]: s for s in fw.first_record["steps"] if s.get("start") is not None}
    # ox-firewall-ready, the waypoint every other step waits for, is not one of them.
    firewalls = [n for n in first if n.startswith("ox-firewall-") and n.endswith("-nftables")]
    assert len(firewalls) == len(_hosts())
    last_firewall_end = max(first[n]["end"] for n in firewalls)
    assert all(s["start"] >= last_firewall_end for n, s in first.items() if n not in firewalls)
    for host, listing in _listings(fw).items():
        assert "policy drop" in listing and "10.219.0.1" in listing, host


def test_every_port_is_open_exactly_where_the_table_allows(fw):
    hosts, ports = _hosts(), _ports()
    sources = {**hosts, RUNNER: "10.219.0.1"}
    pids = _start_listeners(fw)
    try:
        observed = {s: _probe_from(fw, s, [(a, p) for t, a in hosts.items() if t != s for p in ports])
                    for s in sources}
    finally:
        _stop(fw, pids)
    mismatches, pairs, allowed_count, open_count = [], 0, 0, 0
    print(f"\nports probed: {ports}")
    for source, source_address in sources.items():
        for target, address in hosts.items():
            if target == source:
                continue
            allowed = [p for p in ports if _allowed(source, source_address, target, p)]
            # Through the firewall: connected, or refused by the host's own TCP stack (nothing
            # listens there, and our listener could not bind it); a dropped probe times out.
            seen = [p for p in ports if observed[source][(address, p)] in ("open", "refused")]
            pairs += len(ports)
            allowed_count += len(allowed)
            open_count += len(seen)
            odd = sorted(set(allowed) ^ set(seen))
            mismatches += [(source, target, p, observed[source][(address, p)]) for p in odd]
            print(f"{source:>6} -> {target:<6} allowed {allowed!s:<28} observed {seen}{'  MISMATCH ' + str(odd) if odd else ''}")
    results = [r for s in observed.values() for r in s.values()]
    print(f"{pairs} (source, host, port) probes; allowed by the table {allowed_count}, observed through the "
          f"firewall {open_count} ({results.count('open')} connected, {results.count('refused')} refused: no "
          f"listener); dropped {results.count('filtered')}; mismatches {len(mismatches)}")
    assert mismatches == [], mismatches
    assert set(results) <= {"open", "refused", "filtered"}, set(results)
    # UDP 4567 is in the table only (no answer to probe): it is in every DB host's ruleset, from DB hosts.
    for host, listing in _listings(fw).items():
        assert ("udp dport 4567 ip saddr @from_db accept" in listing) == (Role.DB in _roles()[host]), host


def test_a_second_up_changes_nothing(fw):
    _up(fw)
    assert fw.record()["executed"] == 0


def test_converge_loads_a_deleted_table_again(fw):
    before = _listings(fw)
    fw.run_on("xmw1", "nft delete table inet ox_estate")
    assert fw.run_on("xmw1", "nft list table inet ox_estate", check=False) == ""
    _up(fw, "--converge")
    assert _listings(fw) == before
    assert "ox-firewall-xmw1-nftables" in {s["name"] for s in fw.record()["steps"] if s.get("start") is not None}


def test_a_change_that_would_lock_out_the_deployer_is_refused(fw):
    """sshFrom without the runner's address: every host's step refuses, nothing is loaded, and
    the runner still reaches every host over SSH; the unchanged stack is then back to a no-op."""
    before = _listings(fw)
    result = fw.lab("up", "--set", "firewall.sshFrom=[192.0.2.0/24]")
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(r"refused: the new ruleset admits SSH on port 22 only from 192\.0\.2\.0/24, but this "
                     r"deployment comes from 10\.219\.0\.1 \(port 22\) and would be locked out", text), text[-3000:]
    assert _listings(fw) == before
    shell = fw.shell()
    try:
        assert all(shell.run(h, "true")[0] == 0 for h in _hosts())
    finally:
        shell.close()
    _up(fw)
    assert fw.record()["executed"] == 0


def test_a_change_that_keeps_the_deployer_is_applied_and_survived(fw):
    """A second admin network is added over SSH from the first: loaded in one transaction, the
    step's own session survives it, and the next step still connects."""
    try:
        _up(fw, "--set", "firewall.sshFrom=[10.219.0.1/32, 192.0.2.0/24]")
        ran = {s["name"] for s in fw.record()["steps"] if s.get("start") is not None}
        assert ran == {f"ox-firewall-{h}-nftables" for h in _hosts()}
        assert all("192.0.2.0/24" in listing for listing in _listings(fw).values())
    finally:
        _up(fw)
    assert all("192.0.2.0/24" not in listing for listing in _listings(fw).values())

"""Floating addresses for real (stack lab-vip): keepalived moves the GTID pair's write address and
the frontends' client address between lab hosts, under load, and never onto both masters.

One lab estate for the module (subnet 10.222.0.0/24, bridge oxlabv0): the GTID master-master pair
vdb4/vdb5 with 10.222.0.100, middleware stand-ins vmw1/vmw2, frontends vweb1/vweb2 with
10.222.0.200. Each test starts from a healthy estate (the previous one repairs what it broke) and
prints its figures.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from estate import ROOT, lab_estate, record_figures, requires_lab

pytestmark = requires_lab

SUBNET, BRIDGE = "10.222.0.0/24", "oxlabv0"
DB_VIP, WEB_VIP = "10.222.0.100", "10.222.0.200"
MASTERS = {"vdb4": "10.222.0.14", "vdb5": "10.222.0.15"}
FRONTENDS = ["vweb1", "vweb2"]
WRITER = Path(__file__).with_name("vip_writer.py")
LOAD_HOST = "vmw1"  # the writes come from a middleware host, as OX's would


@pytest.fixture(scope="module")
def vip(tmp_path_factory):
    from lab.verify import _password

    with lab_estate("lab-vip", SUBNET, BRIDGE, tmp_path_factory.mktemp("lab-vip")) as estate:
        estate.first_up = estate.up()
        estate.password = _password(estate.state, "configdb-password")
        yield estate


def holders(address: str, hosts: list[str]) -> list[str]:
    """The hosts whose interfaces hold `address` now (read in each host's network namespace)."""
    found = []
    for h in hosts:
        out = subprocess.run(["ip", "netns", "exec", h, "ip", "-o", "-4", "addr", "show"], capture_output=True,
                             text=True, timeout=10).stdout
        if any(line.split()[3].split("/")[0] == address for line in out.splitlines() if len(line.split()) > 3):
            found.append(h)
    return found


def wait_for_holder(address: str, hosts: list[str], timeout: float = 30) -> str:
    """The one host holding `address`, once exactly one does (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = holders(address, hosts)
        if len(now) == 1:
            return now[0]
        time.sleep(0.2)
    raise AssertionError(f"{address}: no single holder after {timeout}s (holders: {holders(address, hosts)})")


def watch_move(address: str, hosts: list[str], start_holder: str, since: float, timeout: float,
               samples: list) -> float | None:
    """Poll until a host other than `start_holder` holds `address`: seconds after `since`, or None.
    Every sample (t, holders) goes to `samples`."""
    end = since + timeout
    while time.monotonic() < end:
        now = holders(address, hosts)
        samples.append((time.monotonic() - since, now))
        if now and start_holder not in now:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


def sql(vip, host: str, query: str) -> str:
    return vip.run_on(host, f"mariadb -N -B -e {_shq(query)}")


def _shq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def caught_up(vip) -> bool:
    """Both masters replicate and have applied the same transactions (equal GTID positions)."""
    for h in MASTERS:
        status = vip.run_on(h, "mariadb -e 'SHOW SLAVE STATUS\\G'")
        if "Slave_IO_Running: Yes" not in status or "Slave_SQL_Running: Yes" not in status:
            return False
    positions = {",".join(sorted(sql(vip, h, "SELECT @@global.gtid_current_pos").split(","))) for h in MASTERS}
    return len(positions) == 1


def _wait(what: str, check, timeout: float, pause: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(pause)
    raise AssertionError(f"gave up waiting for {what} after {timeout}s")


def test_gtid_address_moves_within_5s_on_kill_9_and_no_acknowledged_write_is_lost(vip):
    """kill -9 of the holder's mariadbd (by its pid file) while a middleware host writes through the
    floating address: the address moves within 5 s, the writes resume through it, and with
    durability strict every acknowledged row is on both masters once the killed one is back."""
    holder = wait_for_holder(DB_VIP, list(MASTERS))
    other = next(h for h in MASTERS if h != holder)
    sql(vip, holder, "CREATE DATABASE IF NOT EXISTS floattest; "
                     "CREATE TABLE IF NOT EXISTS floattest.w (id INT PRIMARY KEY, at DOUBLE); DELETE FROM floattest.w")
    _wait("the table on both masters", lambda: caught_up(vip), 30)

    writer = subprocess.Popen(["ip", "netns", "exec", LOAD_HOST, sys.executable, str(WRITER), DB_VIP, "8", "0.01"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    writer.stdin.write(vip.password + "\n")
    writer.stdin.close()
    events: list[tuple[str, int, float]] = []
    reader = threading.Thread(target=lambda: events.extend(
        (kind, int(row), float(at)) for kind, row, at in (line.split() for line in writer.stdout)), daemon=True)
    reader.start()
    try:
        time.sleep(3)  # a steady write load first
        pid = vip.run_on(holder, "cat /run/mysqld/mysqld.pid")
        # The init script runs mariadbd under mysqld_safe, which restarts a killed server at once
        # (systemd's Restart= does the same after RestartSec): whether the address moved then
        # raced the restart. The master dies whole: its supervisor too, if it has one.
        parent = vip.run_on(holder, f"ps -o ppid= -p {pid}").strip()
        supervised = vip.run_on(holder, f"ps -o comm= -p {parent}").strip() in ("mysqld_safe", "mariadbd-safe")
        samples: list = []
        killed = time.monotonic()
        # The lab started these (the init script); killed by their pids.
        vip.run_on(holder, f"kill -9 {parent} {pid}" if supervised else f"kill -9 {pid}")
        moved = watch_move(DB_VIP, list(MASTERS), holder, killed, 15, samples)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
        reader.join(timeout=10)
    acked = [row for kind, row, _ in events if kind == "ack"]
    failed = [(row, at) for kind, row, at in events if kind == "err"]
    # Writes resume: the first acknowledgement after the first failure the kill caused.
    first_err = min((at for row, at in failed if at > killed), default=None)
    first_after = min((at - killed for kind, _, at in events if kind == "ack" and first_err and at > first_err),
                      default=None)
    both = sum(1 for _, now in samples if len(now) > 1)
    # The async window: rows the dead master acknowledged that had not reached the new holder.
    on_new = {int(r) for r in sql(vip, other, "SELECT id FROM floattest.w").split()}
    missing_at_takeover = sorted(set(acked) - on_new)
    print(f"\n[gtid kill -9 {holder}] address moved to {other} after "
          f"{moved if moved is None else round(moved, 2)} s; writes: {len(acked)} acknowledged, "
          f"{len(failed)} failed, writes resumed (first acknowledgement after a failure) "
          f"{first_after if first_after is None else round(first_after, 2)} s; "
          f"acknowledged but not yet on {other} at takeover: {len(missing_at_takeover)}; "
          f"samples with both holding: {both}/{len(samples)}")
    assert moved is not None and moved <= 5, f"address still on {holder} ({samples[-3:]})"
    assert both == 0
    assert first_after is not None and first_after <= 10 and \
        any(at > killed + moved for kind, _, at in events if kind == "ack"), \
        "no write was acknowledged through the floating address after the move"
    record_figures("gtid-address-move", {"seconds": round(moved, 2), "from": holder, "to": other},
                   ".venv/bin/python -m pytest tests/lab/test_lab_floating.py -k gtid_address_moves")

    # Bring the killed server back as a supervisor would: its service's start (ox_service's path
    # on lab hosts; `up --converge` does the same through the start step, tests/lab/test_database.py).
    vip.run_on(holder, "/etc/init.d/mariadb start >/dev/null")
    _wait("both masters replicating and equal", lambda: caught_up(vip), 60)
    on_both = [{int(r) for r in sql(vip, h, "SELECT id FROM floattest.w").split()} for h in MASTERS]
    lost = sorted(set(acked) - (on_both[0] & on_both[1]))
    print(f"[gtid kill -9 {holder}] after {holder} returned: {len(acked)} acknowledged, {len(lost)} lost; "
          f"the address stays on {holders(DB_VIP, list(MASTERS))} (nopreempt)")
    assert lost == []
    assert holders(DB_VIP, list(MASTERS)) == [other]


def _cut(vip, host: str, peer_address: str, on: bool) -> None:
    """Drop every packet between `host` and `peer_address`, in `host`'s namespace (a table of its
    own, removed after), or remove that table again."""
    if on:
        vip.run_on(host, "nft -f - <<'EOF'\n"
                         "table inet ox_lab_cut {\n"
                         "  chain in { type filter hook input priority -10; ip saddr " + peer_address + " drop; }\n"
                         "  chain out { type filter hook output priority -10; ip daddr " + peer_address + " drop; }\n"
                         "}\nEOF")
    else:
        vip.run_on(host, "nft delete table inet ox_lab_cut 2>/dev/null || true")


def test_cut_link_between_the_masters_never_leaves_both_holding_the_address(vip):
    """The link between the masters is cut (nft drops in the backup's namespace, both ways) for
    8 advert intervals: the backup loses the holder's adverts, but its check sees a timeout,
    not a refusal, so it never takes the address; sampled the whole time, never both hold it."""
    _wait("both masters replicating", lambda: caught_up(vip), 60)
    holder = wait_for_holder(DB_VIP, list(MASTERS))
    backup = next(h for h in MASTERS if h != holder)
    samples = []
    _cut(vip, backup, MASTERS[holder], True)
    try:
        start = time.monotonic()
        while time.monotonic() - start < 8:  # 8 advert intervals (advert_int 1 s)
            samples.append(holders(DB_VIP, list(MASTERS)))
            time.sleep(0.1)
    finally:
        _cut(vip, backup, MASTERS[holder], False)
    state = vip.run_on(backup, "grep -E 'Entering (FAULT|MASTER|BACKUP)' /var/log/ox-keepalived.log | tail -n 3")
    after = wait_for_holder(DB_VIP, list(MASTERS))
    both = sum(1 for s in samples if len(s) > 1)
    none = sum(1 for s in samples if not s)
    print(f"\n[gtid link cut {backup} -x- {holder}, 8 s] samples: {len(samples)}, both holding: {both}, "
          f"none holding: {none}, {holder} holding: {sum(1 for s in samples if s == [holder])}; "
          f"holder after healing: {after}; {backup}'s last states: {state.splitlines()[-1:]}")
    assert both == 0
    assert all(s == [holder] for s in samples), Counter(tuple(s) for s in samples)
    assert after == holder
    _wait("replication again after the cut", lambda: caught_up(vip), 90)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def _session_get(path: str, cookie: str | None) -> tuple[int, str | None, str | None]:
    """GET through the floating client address on a fresh connection: (status, route, new cookie)."""
    conn = http.client.HTTPConnection(WEB_VIP, 80, timeout=2)
    try:
        conn.request("GET", path, headers={"Cookie": f"JSESSIONID={cookie}"} if cookie else {})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        set_cookie = resp.getheader("Set-Cookie") or ""
        new = set_cookie.split("JSESSIONID=", 1)[1].split(";", 1)[0] if "JSESSIONID=" in set_cookie else None
        route = json.loads(body).get("route") if resp.status == 200 and body.startswith("{") else None
        return resp.status, route, new
    finally:
        conn.close()


def test_frontend_address_moves_when_apache_stops_and_sessions_keep_their_routes(vip):
    """Clients with JSESSIONID cookies send requests through the floating client address; Apache on
    the frontend holding it is stopped. The address moves to the other frontend, the requests that
    failed meanwhile are counted, and every session keeps its route through the other frontend."""
    holder = wait_for_holder(WEB_VIP, FRONTENDS)
    other = next(h for h in FRONTENDS if h != holder)
    # Four sessions per route, as a browser holds them after its login: JSESSIONID=<id>.<jkroute>.
    # (New sessions are spread by Apache's byrequests balancer, which after sticky load may hand a
    # long run of them to one member; the sessions' routes are what this test is about.)
    sessions = {f"{7000000 + i}.{route}": route for i, route in enumerate(["OX1", "OX2"] * 4)}
    for cookie, route in sessions.items():
        status, answered, _ = _session_get("/appsuite/api/apps", cookie)
        assert (status, answered) == (200, route), (cookie, status, answered)

    results: list[tuple[str, float, int, str | None]] = []
    stop = threading.Event()

    def client(cookie: str):
        while not stop.is_set():
            at = time.monotonic()
            try:
                status, route, _ = _session_get("/appsuite/api/apps", cookie)
            except OSError:
                status, route = 0, None
            results.append((cookie, at, status, route))
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in sessions]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        samples: list = []
        stopped = time.monotonic()
        # The lab's Apache, by its init script; watched from the moment the stop begins.
        stopping = subprocess.Popen([sys.executable, "-m", "lab.hosts", "run", holder, "--", "/etc/init.d/apache2",
                                     "stop"], cwd=ROOT, env=vip.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moved = watch_move(WEB_VIP, FRONTENDS, holder, stopped, 15, samples)
        assert stopping.wait(timeout=60) == 0, f"{holder}: Apache did not stop"
        stop_took = time.monotonic() - stopped
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        vip.run_on(holder, "/etc/init.d/apache2 start >/dev/null")
    failed = [r for r in results if r[2] != 200]
    after = [r for r in results if moved is not None and r[1] > stopped + moved and r[2] == 200]
    wrong = [r for r in results if r[2] == 200 and r[3] != sessions[r[0]]]
    # What clients saw: from the first failed request (Apache went away) to the address's move.
    first_fail = min((r[1] - stopped for r in failed), default=None)
    last_fail = max((r[1] - stopped for r in failed), default=None)
    outage = None if moved is None or first_fail is None else moved - first_fail
    print(f"\n[frontend: Apache stopped on {holder}] address moved to {other} {_s(moved)} s after the stop "
          f"command ({_s(outage)} s after the first failed request; the stop returned after {stop_took:.2f} s); "
          f"requests: {len(results)}, failed: {len(failed)} (from {_s(first_fail)} s to {_s(last_fail)} s), "
          f"answered after the move: {len(after)}, answered by another route than the session's: {len(wrong)}")
    assert moved is not None and outage is not None and outage <= 5
    assert wrong == []
    assert {sessions[r[0]] for r in after} == {"OX1", "OX2"} and len(after) >= len(sessions)
    assert holders(WEB_VIP, FRONTENDS) == [other]
    record_figures("frontend-address-move", {"seconds": round(moved, 2), "from": holder, "to": other,
                                             "outage_seconds": round(outage, 2)},
                   ".venv/bin/python -m pytest tests/lab/test_lab_floating.py -k frontend_address_moves")


def test_vrrp_password_is_only_in_the_0600_config(vip):
    """The generated VRRP password reached each peer on stdin and sits only in keepalived's 0600
    configuration: not in a log, not in another file under /etc, /var/log, /var/lib/ox-estate or /root."""
    password = next(r["result"] for urn, r in vip.state["random"].items() if urn.endswith("::ox-gtid-vip-vrrp-password"))
    ssh = vip.shell()
    try:
        found = {}
        for h in [*MASTERS, *FRONTENDS]:
            # The password goes to a 0600 file over the SSH channel's stdin, never on a command line.
            code, out, err = ssh.run(h, "set -euo pipefail; umask 077; f=$(mktemp); trap 'rm -f \"$f\"' EXIT; "
                                        "cat >\"$f\"; grep -rlFf \"$f\" /etc /var/log /var/lib/ox-estate /root 2>/dev/null || true; "
                                        "stat -c '%a %U' /etc/keepalived/ox-estate.conf", stdin=password + "\n")
            assert code == 0, f"{h}: {err}"
            found[h] = out.split("\n")
    finally:
        ssh.close()
    print(f"\n[vrrp password] files holding the GTID pair's password: {found}")
    for h in MASTERS:
        assert found[h] == ["/etc/keepalived/ox-estate.conf", "600 root"], found[h]
    for h in FRONTENDS:  # the frontends have their own password
        assert found[h] == ["600 root"], found[h]

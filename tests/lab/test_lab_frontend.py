"""ApacheFrontend for real: Apache in a lab host in front of three stand-in backends.

The frontend is not wired into estate.py yet, so this drives the component with its own small
program (tests/lab/frontend_program, the repository's stacks/Pulumi.lab-web.yaml) through the
lab runner, on lab hosts created for this module alone (state dir, bridge oxlabw0 and subnet
10.217.0.0/24 of its own; tests/lab/frontend_lab.py). The middleware is not deployed: each
middleware host runs tests/lab/fake_backend.py on :8009, which records the raw path it got and
the path a servlet container would dispatch for it. Every request is sent from inside a lab host.

SOAP and balancer-manager: the tests assert on what a backend would serve (the dispatched path),
not on Apache's status code. A generated corpus (lab/pathcorpus.py) goes from a host outside the
admin networks to both the public port and the admin listener; none may reach an admin endpoint,
and balancer-manager must be unchanged afterwards, as the admin network sees it.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from estate import skip_reason
from frontend_lab import ADMIN_HOST, ADMIN_PORT, BACKEND_LOG, OTHER_HOST, ROUTES, WEB, FrontendLab
from lab import pathcorpus

_reason = skip_reason() or (None if shutil.which("apache2") or Path("/usr/sbin/apache2").exists()
                            else "LAB TESTS SKIPPED: apache2 missing (bash lab/setup.sh installs it)")
if _reason:
    print(f"\n*** {_reason} ***\n")
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

SOAP_PATHS = {"/webservices/OXContextService": "/webservices/OXContextService",
              "/servlet/axis2/services/OXContextService": "/servlet/axis2/services/OXContextService"}
# The app's own paths: raw path sent -> the path the backend must dispatch.
APP_PATHS = {
    "/appsuite/api/login?action=login": "/ajax/login",
    "/ajax/folders?action=list&tree=..//;": "/ajax/folders",
    "/infostore/Docs/a%20b.txt": "/infostore/Docs/a b.txt",
    "/realtime/poll": "/realtime/poll",
    "/Microsoft-Server-ActiveSync?Cmd=Ping&User=u1": "/Microsoft-Server-ActiveSync",
    "/usm-json/syncUpdate": "/usm-json/syncUpdate",
    "/ajax/login;jsessionid=77.OX2?action=store": "/ajax/login",
}
# A balancer-manager change a leaked nonce would allow: drain OX3 and change its factor.
ATTACK_WORKER = "http://10.217.0.23:8009"
OX2_WORKER = "http://10.217.0.22:8009"
ATTACK_FORM = f"b=oxcluster&w={ATTACK_WORKER}&w_status_D=1&w_status_N=1&w_lf=7&w_ls=3"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = FrontendLab(tmp_path_factory.mktemp("lab-web"))
    try:
        lab.create_hosts()
        for host in ROUTES:
            lab.start_backend(host)
        lab.first = lab.up()
        yield lab
    finally:
        for host in list(lab.pids):
            lab.stop_backend(host)
        lab.destroy_hosts()


def _nodes(rows: list[str]) -> Counter:
    return Counter(rows)


def test_first_up_starts_apache_with_event_mpm(lab):
    (status,) = lab.first["frontendStatus"]
    assert status["mpm"] == "event" and status["balancer"] == 200
    assert lab.first["frontendUrls"] == [f"http://{WEB}/appsuite/"]
    conf = lab.run_on("wweb1", "apache2ctl -S 2>&1; ls /etc/apache2/sites-enabled /etc/apache2/mods-enabled")
    assert "000-default" not in conf.split("mods-enabled")[0]  # the pristine default site is off
    assert "mpm_prefork" not in conf and "lbmethod_byrequests.load" in conf


def test_cookie_route_sticks(lab):
    """JSESSIONID=123.OX2: 20 of 20 requests land on OX2."""
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 20, cookie="123.OX2")) == {"200 OX2": 20}


def test_path_jsessionid_sticks_even_with_a_further_param(lab):
    """;jsessionid=456.OX3 in the path: 20 of 20 to OX3; scolonpathdelim keeps that with ;foo after it."""
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x;jsessionid=456.OX3", 20)) == {"200 OX3": 20}
    assert _nodes(lab.requests(OTHER_HOST, "/ajax/x;jsessionid=456.OX1;foo=bar", 10)) == {"200 OX1": 10}


def test_new_sessions_spread_over_the_backends_only(lab):
    """Without a session id requests spread over all three backends, never the provisioning node.
    Apache's byrequests balancer counts sticky requests too, and earlier tests sent many to one
    member, so new sessions go in batches of 60 until each backend got some (at most 300)."""
    counts: Counter = Counter()
    while len(counts) < 3 and sum(counts.values()) < 300:
        counts += _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 60))
    assert set(counts) == {"200 OX1", "200 OX2", "200 OX3"}, counts
    assert lab.run_on("wmw4", f"cat {BACKEND_LOG} 2>/dev/null | grep -c ajax || true") == "0"


def test_sticky_requests_count_so_new_sessions_avoid_a_member_that_served_many(lab):
    """byrequests counts a sticky request against its member ("so that even session routes get
    into account"): with the counters reset, 60 requests of OX2's sessions, then the next 60 new
    sessions all go to OX1 and OX3; OX2 takes new ones again once they caught up. This is why the
    spread checks (above and lab/verify.py) send new sessions in batches."""
    rows = {row[1]: row for row in lab.manager_state() if row[0] == "oxcluster"}
    assert lab.manager_set(ADMIN_HOST, OX2_WORKER, f"w_lf={rows[OX2_WORKER][4]}") == 200  # resets the counters
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 60, cookie="8.OX2")) == {"200 OX2": 60}
    first = _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 60))
    later = _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 120))
    print(f"after 60 sticky requests to OX2: next 60 new sessions {dict(first)}; the 120 after {dict(later)}")
    assert "200 OX2" not in first and sum(first.values()) == 60, first
    assert "200 OX2" in later, later


def _corpus() -> list[tuple[int, str, str]]:
    return [(i, v.method, v.path) for i, v in enumerate(pathcorpus.variants())]


def test_corpus_from_outside_the_admin_networks_reaches_no_admin_endpoint(lab):
    """Every corpus variant, from a non-admin host, to the public port and to the admin listener
    (with a balancer-manager change and the real nonce, as if leaked): no backend is asked for a
    path a servlet container could dispatch onto SOAP, none of it reaches a backend at all, no
    answer is the balancer-manager page, and balancer-manager is unchanged afterwards."""
    corpus = _corpus()
    assert len(corpus) >= 2000
    before_state = lab.manager_state()
    form = f"{ATTACK_FORM}&nonce={lab.nonce()}"
    sent = lab.send_corpus(OTHER_HOST, corpus, (80, ADMIN_PORT), form)
    records = [r for r in lab.backend_records() if r.get("corpus")]
    print(f"corpus: {len(corpus)} variants x 2 ports from {OTHER_HOST}; answers {json.dumps(sent)[:400]}; "
          f"reached a backend: {len(records)}; reached an admin endpoint: {sum(1 for r in records if r['admin'])}")
    assert [r for r in records if r["admin"]] == [], "a request reached SOAP from outside the admin networks"
    assert records == [], "a corpus request reached a backend"
    for port in ("80", str(ADMIN_PORT)):
        assert sent[port]["failed"] == [] and sent[port]["manager_pages"] == [], (port, sent[port])
        assert sum(sent[port]["codes"].values()) == len(corpus)
        assert set(sent[port]["codes"]) <= {"400", "403", "404"}, (port, sent[port]["codes"])
    # The admin listener admits nobody else: 403, except where Apache refuses an encoded slash
    # before any authorization (AllowEncodedSlashes Off: 404).
    encoded_slash = sum(1 for _, _, path in corpus if "%2f" in path.lower())
    assert sent[str(ADMIN_PORT)]["codes"] == {"403": len(corpus) - encoded_slash, "404": encoded_slash}
    assert lab.manager_state() == before_state


def test_corpus_from_the_frontend_itself_reaches_no_admin_endpoint(lab):
    """127.0.0.1 is not an admin network either: a slice of the corpus, sent on the frontend host."""
    corpus = _corpus()[::10]
    sent = lab.send_corpus("wweb1", corpus, (80, ADMIN_PORT), f"{ATTACK_FORM}&nonce={lab.nonce()}", host="127.0.0.1")
    assert [r for r in lab.backend_records() if r.get("corpus")] == []
    encoded_slash = sum(1 for _, _, path in corpus if "%2f" in path.lower())
    assert sent[str(ADMIN_PORT)]["codes"] == {"403": len(corpus) - encoded_slash, "404": encoded_slash}
    assert sent["80"]["manager_pages"] == [] and sent["80"]["failed"] == []


def test_control_the_same_change_from_the_admin_network_is_applied(lab):
    """Counterpart of the corpus test: the change it sends does drain OX3 when the admin network
    sends it, public traffic then avoids OX3, and a graceful reload keeps the drain (BalancerPersist
    in every scope that uses the balancers: the admin listener and the public vhost share them)."""
    assert lab.manager_set(ADMIN_HOST, ATTACK_WORKER, "w_status_D=1") == 200
    try:
        state = {row[1]: row for row in lab.manager_state() if row[0] == "oxcluster"}
        assert "Dis" in state[ATTACK_WORKER][6], state
        assert "200 OX3" not in lab.requests(OTHER_HOST, "/appsuite/api/x", 12)
        lab.run_on("wweb1", "apache2ctl graceful && sleep 2")
        assert "Dis" in {r[1]: r for r in lab.manager_state()}[ATTACK_WORKER][6]
        assert "200 OX3" not in lab.requests(OTHER_HOST, "/appsuite/api/x", 12)
    finally:
        assert lab.manager_set(ADMIN_HOST, ATTACK_WORKER, "w_status_D=0") == 200
    assert "Dis" not in {r[1]: r for r in lab.manager_state()}[ATTACK_WORKER][6]
    lab.wait_routed("OX3")


def test_admin_network_reaches_soap_and_balancer_manager_on_the_admin_listener(lab):
    for path, dispatched in SOAP_PATHS.items():
        code, body = lab.get(ADMIN_HOST, f"http://{WEB}:{ADMIN_PORT}{path}")
        assert code == 200 and body["dispatch"] == dispatched and body["soap"] is True, (path, code, body)
        # Not mapped on the public vhost, for the admin network too: SOAP has one door.
        assert lab.get(ADMIN_HOST, f"http://{WEB}{path}")[0] == 404, path
    page = lab.manager_page()
    assert "balancer://oxcluster" in page and "balancer://eas_oxcluster" in page
    assert all(r in page for r in ("OX1", "OX2", "OX3")) and "PROV" not in page
    assert lab.get(ADMIN_HOST, f"http://{WEB}/balancer-manager")[0] == 404


def test_the_lab_verifier_frontend_checks_pass_here(lab):
    """What `python -m lab up` verifies of a frontend (lab/verify.py) holds on this one, the admin
    listener checks included: the verifier is only worth what it is checked against."""
    checks = lab.verify_frontend()
    names = [name for name, _, _ in checks]
    assert any(n.startswith("apache: SOAP and balancer-manager refused from wdb1") for n in names), names
    assert any(n.startswith(f"apache: SOAP and balancer-manager on :{ADMIN_PORT} from wmw1") for n in names), names
    # On a failure, balancer-manager's worker table (status, load factor, counters) says why.
    assert [c for c in checks if not c[1]] == [], lab.manager_workers()


def test_app_paths_work_from_anywhere(lab):
    """The app's own prefixes (and the ;jsessionid= form) reach the backend as the app path, from
    outside and inside the admin networks; the path jsessionid still routes."""
    for source in (OTHER_HOST, ADMIN_HOST):
        for path, dispatched in APP_PATHS.items():
            code, body = lab.get(source, f"http://{WEB}{path}")
            assert code == 200 and body["dispatch"] == dispatched and body["soap"] is False, (source, path, body)
        assert lab.get(source, f"http://{WEB}/ajax/login;jsessionid=77.OX2?action=store")[1]["node"] == "OX2"
        assert Counter(lab.requests(source, "/usm-json/x;jsessionid=5.OX3", 5)) == {"200 OX3": 5}
        assert Counter(lab.requests(source, "/Microsoft-Server-ActiveSync", 5, cookie="9.OX1")) == {"200 OX1": 5}


def test_second_up_changes_nothing(lab):
    """Same config: no step runs, so no file is written and Apache keeps its pid and generation."""
    lab.up()
    mtime = lab.run_on("wweb1", "stat -c %Y /etc/apache2/sites-available/000-appsuite.conf")
    pid = lab.run_on("wweb1", "cat /run/apache2/apache2.pid")
    status = lab.up()["frontendStatus"][0]
    assert lab.record()["executed"] == 0
    assert lab.run_on("wweb1", "stat -c %Y /etc/apache2/sites-available/000-appsuite.conf") == mtime
    assert lab.run_on("wweb1", "cat /run/apache2/apache2.pid") == pid == str(int(status["pid"]))


def test_a_changed_admin_network_is_reloaded_not_restarted(lab):
    """Widening adminNetworks to the DB host: a graceful reload (same pid, next generation) opens SOAP
    on the admin listener; the change back closes it again."""
    before = lab.up()["frontendStatus"][0]
    # Live, not the stored output of that unchanged up: another test may have reloaded Apache by
    # hand (as logrotate does), which moves the generation on without a run of the program.
    before["generation"] = lab.generation()
    try:
        wider = lab.up(frontend={"mode": "dedicated", "nodes": ["wweb1"], "maxConnections": 256,
                                 "adminNetworks": ["10.217.0.16/28", "10.217.0.8/29"]})["frontendStatus"][0]
        ran = {s["name"] for s in lab.record()["steps"] if s.get("start") is not None}
        assert {"web-wweb1-configure", "web-wweb1-start"} <= ran and "web-wweb1-install" not in ran
        assert wider["pid"] == before["pid"] and wider["generation"] == before["generation"] + 1
        assert lab.requests(OTHER_HOST, "/servlet/axis2/services/OXContextService", port=ADMIN_PORT)[0] \
            .startswith("200 OX")
    finally:
        back = lab.up()["frontendStatus"][0]
    assert back["pid"] == before["pid"] and back["generation"] == before["generation"] + 2
    assert lab.requests(OTHER_HOST, "/servlet/axis2/services/OXContextService", port=ADMIN_PORT) == ["403 -"]


def test_a_changed_mpm_size_restarts(lab):
    """ServerLimit cannot change on a graceful reload: a new maxConnections restarts Apache."""
    before = lab.up()["frontendStatus"][0]
    try:
        bigger = lab.up(frontend={"mode": "dedicated", "nodes": ["wweb1"], "maxConnections": 320,
                                  "adminNetworks": ["10.217.0.16/28"]})["frontendStatus"][0]
        assert bigger["pid"] != before["pid"]
        assert "MaxRequestWorkers       320" in lab.run_on("wweb1", "cat /etc/apache2/conf-available/ox-mpm-event.conf")
    finally:
        lab.up()


def test_sessions_of_a_stopped_backend_fail_over(lab):
    """OX2 stops: its sessions (cookie .OX2) all land on another node; POSTs too."""
    lab.stop_backend("wmw2")
    try:
        rows = lab.requests(OTHER_HOST, "/appsuite/api/x", 20, cookie="123.OX2")
        assert all(r in ("200 OX1", "200 OX3") for r in rows), rows
        post = lab.run_on(OTHER_HOST, f"curl -sS -b JSESSIONID=9.OX2 -d a=b http://{WEB}/ajax/x")
        assert json.loads(post)["node"] in ("OX1", "OX3")
    finally:
        lab.start_backend("wmw2")
        lab.wait_routed("OX2")


def test_colocated_hosts_keep_new_sessions_local_and_honour_routes(lab):
    """Colocated: each middleware host's Apache sends new sessions to its own node; +H members
    still take the sessions routed to them, and take over when the local node is gone."""
    try:
        _colocated(lab)
    finally:
        lab.up()  # back to the dedicated frontend the other tests use


def _colocated(lab):
    out = lab.up(frontend={"mode": "colocated", "adminNetworks": ["10.217.0.16/28"], "maxConnections": 256})
    assert out["frontendUrls"] == [f"http://10.217.0.2{i}/appsuite/" for i in (1, 2, 3)]
    local = "10.217.0.22"
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 12, host=local)) == {"200 OX2": 12}
    assert _nodes(lab.requests(OTHER_HOST, "/appsuite/api/x", 10, cookie="5.OX3", host=local)) == {"200 OX3": 10}
    assert lab.requests(OTHER_HOST, "/webservices;x/OXContextService", host=local) == ["403 -"]
    assert lab.requests(OTHER_HOST, "/webservices/OXContextService", host=local, port=ADMIN_PORT) == ["403 -"]
    assert lab.requests(ADMIN_HOST, "/webservices/OXContextService", host=local, port=ADMIN_PORT) == ["200 OX2"]
    lab.stop_backend("wmw2")
    try:
        rows = lab.requests(OTHER_HOST, "/appsuite/api/x", 10, host=local)
        assert all(r in ("200 OX1", "200 OX3") for r in rows), rows
    finally:
        lab.start_backend("wmw2")

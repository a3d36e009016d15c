"""Document converter nodes for real (stack lab-dc): two stand-in converters (DC1, DC2) behind
the frontend's balancer://oxcluster_docs, reached by the middleware through its local HAProxy
(127.0.0.1:8008, round robin over the frontends), and by nobody else.

Subnet 10.223.0.0/24 on the bridge oxlabc0 (oxlabd0 is lab-db's, tests/lab/test_database.py).
"""

import json
import time
from collections import Counter

import pytest

from estate import estate_up, requires_lab

pytestmark = requires_lab

URL = "http://127.0.0.1:8008/documentconverterws"
CLIENT = "/opt/open-xchange/etc/documentconverter-client.properties"


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    with estate_up("lab-dc", "10.223.0.0/24", "oxlabc0", tmp_path_factory.mktemp("lab-dc")) as estate:
        yield estate


def _routes(estate, host: str, count: int, cookie: str = "") -> list[str]:
    """The converter route of each of `count` GETs of the middleware's converter URL from `host`."""
    header = f"-H 'Cookie: JSESSIONID={cookie}'" if cookie else ""
    code, out, err = estate.ssh.run(host, f"for i in $(seq {count}); do curl -s --max-time 10 {header} '{URL}' "
                                          "| grep -o 'Route: [A-Za-z0-9_-]*' || echo 'Route: error'; done", timeout=300)
    assert code == 0, err
    return [line.removeprefix("Route: ") for line in out.splitlines()]


def test_up_verifies_the_converter_routing(dc):
    out = dc.first_up.stdout
    assert "verify: " in out and "FAIL" not in out, out[-3000:]
    print("\n".join(line for line in out.splitlines() if "convert" in line or line.startswith("verify:")))
    for check in ("converter client cmw1", "converter client cmw2", "converters: new sessions from cmw1 reach every route",
                  "converters: cookie x.DC2 sticks from cmw2", "converters: /documentconverterws refused from cdb1"):
        assert f"ok    {check}" in out, out[-3000:]
    assert dc.state["outputs"]["documentConverterRoutes"] == {"cdc1": "DC1", "cdc2": "DC2"}


def test_the_middleware_nodes_hold_the_client_url_and_previews(dc):
    for host in ("cmw1", "cmw2"):
        props = dc.run_on(host, f"cat {CLIENT}").splitlines()
        assert f"com.openexchange.documentconverter.client.remoteDocumentConverterUrl={URL}" in props
        permissions = dc.run_on(host, "cat /opt/open-xchange/etc/permissions.properties").splitlines()
        assert "com.openexchange.capability.document_preview=true" in permissions


def test_the_converters_hold_their_route_and_listener(dc):
    for host, route in (("cdc1", "DC1"), ("cdc2", "DC2")):
        server = dc.run_on(host, "cat /opt/open-xchange/etc/server.properties").splitlines()
        assert f"com.openexchange.server.backendRoute={route}" in server
        assert "com.openexchange.connector.networkListenerHost=*" in server
        jobs = dc.run_on(host, "cat /opt/open-xchange/documentconverter/etc/documentconverter.properties")
        assert "com.openexchange.documentconverter.jobProcessorCount=2" in jobs.splitlines()


def test_new_sessions_answer_from_dc1_and_dc2_in_turn(dc):
    """Without a session, Apache's byrequests alternates: both converters answer. byrequests also
    counts sticky requests (lab-findings), so after the verifier's 20 sticky DC2 requests DC1 may
    take the next ones alone: batches until both answered, bounded."""
    seen: list[str] = []
    while len(seen) < 100 and not {"DC1", "DC2"} <= set(seen):
        seen += _routes(dc, "cmw1", 10)
    later = _routes(dc, "cmw2", 10)
    print(f"new sessions from cmw1: {dict(Counter(seen))}; the next 10 from cmw2: {later}")
    assert {"DC1", "DC2"} <= set(seen) and "error" not in seen
    # Once the counters are level again, new sessions alternate.
    assert set(later) == {"DC1", "DC2"} and max(Counter(later).values()) <= 6, later


def test_a_dc2_session_sticks_to_dc2(dc):
    routes = _routes(dc, "cmw1", 20, cookie="x.DC2")
    print(f"cookie x.DC2 from cmw1: {dict(Counter(routes))}")
    assert routes == ["DC2"] * 20
    assert _routes(dc, "cmw2", 20, cookie="12345.DC1") == ["DC1"] * 20


def test_the_endpoint_is_not_public(dc):
    """From the DB host (no middleware node): Apache refuses /documentconverterws (403), in every
    spelling, and the converters' own port is closed to it (the firewall admits only the web hosts)."""
    codes = {}
    for path in ("/documentconverterws", "/documentconverterws/", "/documentconverterws;x",
                 "/DocumentConverterWS", "/documentconverterws/../documentconverterws"):
        codes[path] = dc.run_on("cdb1", f"curl -s --path-as-is --max-time 5 -o /dev/null -w '%{{http_code}}' "
                                        f"'http://10.223.0.41{path}'", check=False)
    direct = dc.run_on("cdb1", "curl -s --max-time 3 -o /dev/null -w '%{http_code}' "
                               "http://10.223.0.51:8008/documentconverterws", check=False)
    print(f"from cdb1 through Apache: {codes}; direct to cdc1:8008: {direct}")
    assert codes["/documentconverterws"] == "403"
    assert all(c in ("403", "404", "000") for c in codes.values()), codes
    assert direct == "000"


def test_the_middleware_reaches_the_frontend_path_directly_too(dc):
    """The frontend's balancer admits a middleware node's own address (what HAProxy connects from)."""
    page = dc.run_on("cmw2", "curl -s --max-time 10 http://10.223.0.41/documentconverterws")
    assert "WebService is running" in page and "Error Code: 0" in page


def test_second_up_runs_nothing(dc):
    dc.up()
    assert dc.record()["executed"] == 0


def test_a_job_processor_change_restarts_only_the_converters(dc):
    """A changed jobProcessorCount: each converter's configure, start (a restart: the digest changed)
    and check run again, and nothing else; the converters answer with the new count. Apache skips a
    converter for retry= (60 s) once a request found it down during its restart, so the verifier
    waits (bounded) for every route to answer new sessions again; the time is printed."""
    pids = {h: dc.run_on(h, "cat /run/open-xchange-documentconverter-server.pid") for h in ("cdc1", "cdc2")}
    try:
        result = dc.up("--set", "documentConverter.jobProcessorCount=5")
        record = dc.record()
        changed = sorted(r["name"] for r in record["plan"] if r["op"] != "same")
        print(f"jobProcessorCount 2 -> 5: {record['executed']} commands, {changed}")
        print("\n".join(line for line in result.stdout.splitlines() if "converters:" in line))
        assert changed == sorted(f"ox-dc-{h}-{p}" for h in ("cdc1", "cdc2") for p in ("configure", "start", "check"))
        for host in ("cdc1", "cdc2"):
            assert dc.run_on(host, "cat /run/open-xchange-documentconverter-server.pid") != pids[host]
            assert "Job processors: 5" in dc.run_on(host, "curl -s http://127.0.0.1:8008/documentconverterws")
        starts = [json.loads(c["stdout"]) for c in dc.state["commands"].values() if c["name"].startswith("ox-dc-")
                  and c["name"].endswith("-start")]
        assert [s["action"] for s in starts] == ["restart", "restart"], starts
    finally:
        # Back to the stack's count (2), which the other tests read, in whatever order they run;
        # and until Apache routes new sessions to both again (retry=60 after a restart).
        dc.up()
        _wait_for_both_routes(dc)


def _wait_for_both_routes(estate, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not {"DC1", "DC2"} <= set(_routes(estate, "cmw1", 10)):
        assert time.monotonic() < deadline, f"new sessions did not reach both converters within {seconds:.0f} s"
        time.sleep(2)

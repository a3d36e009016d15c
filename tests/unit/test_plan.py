"""The rendered plan (components/plan.py) and the topology picture (components/topology.py).

The plan is rendered by the real program under mocks, so it is checked like the program is: the
steps each host gets, no secret written anywhere, the same tree every time, and the picture's
nodes and flows from the same stack config.
"""

import asyncio
import gc
import json
import re
import shutil
from pathlib import Path

import pytest

from components import plan, topology
from components.db.dbproxy import MAXCONN, ProxiedCluster, listener_values
from components.core.render import render

ROOT = Path(__file__).resolve().parents[2]
# Known secret values given as the stack's secret config, to be found nowhere in the plan.
SECRETS = {"mysqlRootPassword": "Root-pw-plan-test-5be1", "configdbPassword": "Configdb-pw-plan-test-93aa",
           "oxAdminMasterPassword": "Oxadmin-pw-plan-test-27c4"}
CONVERGE = "plan-test-1"
MW, GALERA, GTID = ["mw1", "mw2", "mw3"], ["db1", "db2", "db3"], ["db4", "db5"]
DOT_MISSING = "TOPOLOGY IMAGES NOT CHECKED: Graphviz's `dot` is missing (bash lab/setup.sh installs package graphviz)"


def _render(out: Path) -> dict:
    """One plan of the lab stack, in its own event loop, leaving no Pulumi state behind."""
    return _fresh_loop(lambda: plan.render_plan("lab", out, {**SECRETS, "converge": CONVERGE}))


def _fresh_loop(run):
    """run() in its own event loop, leaving no Pulumi state behind."""
    from pulumi.runtime import settings

    previous = asyncio.get_event_loop()  # the test's (conftest); back in place afterwards
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return run()
    finally:
        settings.SETTINGS.rpc_manager.clear()
        settings.SETTINGS.outputs.clear()
        settings.ROOT.set(None)
        gc.collect()
        loop.close()
        asyncio.set_event_loop(previous)


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> tuple[Path, Path]:
    """The lab stack planned twice, into two directories (each plan takes a few seconds)."""
    first, second = tmp_path_factory.mktemp("plan-a"), tmp_path_factory.mktemp("plan-b")
    _render(first)
    _render(second)
    return first, second


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _index(root: Path) -> dict:
    return json.loads((root / "index.json").read_text())


def test_rendering_twice_gives_byte_identical_trees(plans):
    """Mocks hand out ids and passwords; the plan must not show them, so two plans diff cleanly."""
    first, second = plans
    a, b = _tree(first), _tree(second)
    assert sorted(a) == sorted(b)
    assert [f for f in a if a[f] != b[f]] == []


def test_every_host_has_the_steps_of_its_roles(plans):
    hosts = _index(plans[0])["hosts"]
    assert sorted(hosts) == sorted([*GALERA, *GTID, *MW, "nfs1", "web1"])
    for host, steps in hosts.items():
        assert {f"{host}-facts", f"{host}-hosts-file", f"ox-firewall-{host}-nftables"} <= set(steps), host
    for node in GALERA:
        assert {f"ox-galera-{node}-{p}" for p in ("install", "configure", "probe", "recover", "verify")} \
            <= set(hosts[node]), node
    assert "ox-galera-db1-bootstrap" in hosts["db1"] and "ox-galera-db2-join" in hosts["db2"]
    assert "ox-gtid-db5-replica" in hosts["db5"] and "ox-gtid-db4-accounts" in hosts["db4"]
    for node in MW:
        assert {f"ox-mw-{node}-configure", f"ox-dbproxy-{node}-haproxy", f"ox-mwroll-{node}-restart"} \
            <= set(hosts[node]), node
        assert (plans[0] / node / f"ox-mw-{node}-configure.create.sh").is_file()
    assert "ox-registration-database-oxdb-galera-read" in hosts["mw1"]  # on the admin host
    assert "ox-fs-nfs1-export" in hosts["nfs1"]
    assert {"ox-web-web1-configure", "ox-web-web1-start"} <= set(hosts["web1"])


def test_no_step_is_left_unknown_and_every_listed_file_exists(plans):
    index = _index(plans[0])
    for host, steps in index["hosts"].items():
        for name, step in steps.items():
            assert "unknown" not in step, f"{host} {name}: a script unknown at plan time"
            for file in step["files"]:
                assert (plans[0] / file).is_file(), file


def test_no_secret_is_written_in_clear(plans):
    """Secrets reach hosts on stdin only: the plan lists their names, never their values."""
    index = _index(plans[0])
    assert index["secretsScrubbedFrom"] == []  # the program put no secret into any script
    for file, data in _tree(plans[0]).items():
        for key, value in SECRETS.items():
            assert value.encode() not in data, f"{key} in {file}"
    stdin = (plans[0] / "mw1" / "ox-registration-server.stdin").read_text()
    assert stdin == "OX_ADMIN_MASTER_PASSWORD=<secret>\n"
    assert index["hosts"]["mw1"]["ox-registration-server"]["secrets"] == ["OX_ADMIN_MASTER_PASSWORD"]


def test_what_only_a_host_can_tell_is_a_named_placeholder(plans):
    """Ids printed by registration and hostnames from the facts are unknown until the run."""
    mw1 = plans[0] / "mw1"
    slave = (mw1 / "ox-registration-database-oxdb-galera-read.create.sh").read_text()
    assert "-M <unknown:ox-registration-database-oxdb-galera.id>" in slave
    assert "10.213.0.11 db1 <unknown:db1-facts.hostname>" in (mw1 / "mw1-hosts-file.create.sh").read_text()
    for file, data in _tree(plans[0]).items():
        text = data.decode(errors="replace")
        assert "UNKNOWN@" not in text and not re.search(r"(?<![0-9])98765[0-9]{4}(?![0-9])", text), file


def test_converge_token_reaches_exactly_the_converging_steps(plans):
    mw1 = plans[0] / "mw1"
    assert f"# converge {CONVERGE}:" in (mw1 / "ox-dbproxy-mw1-haproxy.create.sh").read_text()
    assert "# converge" not in (mw1 / "ox-mw-mw1-packages.create.sh").read_text()


def test_index_holds_each_steps_dependencies(plans):
    hosts = _index(plans[0])["hosts"]
    assert "ox-registration-database-oxdb-galera" in hosts["mw1"]["ox-registration-database-oxdb-galera-read"]["dependsOn"]
    assert "ox-galera-db1-bootstrap" in hosts["db2"]["ox-galera-db2-join"]["dependsOn"]
    assert "ox-mwroll-web1-drain-mw2" in hosts["mw2"]["ox-mwroll-mw2-restart"]["dependsOn"]


def test_a_new_plan_replaces_an_old_one_and_refuses_a_foreign_directory(plans, tmp_path):
    stale = tmp_path / "plan"
    shutil.copytree(plans[0], stale)
    (stale / "mw1" / "gone.create.sh").write_text("old\n")
    plan._fresh(stale)
    assert not stale.exists() or not any(stale.iterdir())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError):
        plan._fresh(foreign)
    assert (foreign / "notes.txt").read_text() == "mine\n"


def test_compare_with_host_finds_the_planned_file_and_reports_a_drifted_one(plans):
    """The helper the lab test uses: a host's file must be one the plan's scripts write."""
    nodes = [("db1", "10.213.0.11"), ("db2", "10.213.0.12"), ("db3", "10.213.0.13")]
    galera = {**listener_values(ProxiedCluster("galera", [], 3306, 3307)), "nodes": nodes}
    haproxy = render("files/haproxy.cfg.j2", clusters=[galera], converter_frontends=[], maxconn=MAXCONN)
    files = {"/etc/haproxy/haproxy.cfg": haproxy, "/etc/drifted.cfg": haproxy + "# edited\n"}

    def read(path: str) -> str:
        return files[path]

    assert plan.compare_with_host(plans[0], "mw2", read, ["/etc/haproxy/haproxy.cfg"]) == {}
    problems = plan.compare_with_host(plans[0], "mw2", read, ["/etc/drifted.cfg", "/etc/missing"])
    assert sorted(problems) == ["/etc/drifted.cfg", "/etc/missing"]
    assert "unreadable" in problems["/etc/missing"]


def test_topology_dot_has_the_hosts_and_flows(plans):
    dot = (plans[0] / "topology.dot").read_text()
    for cluster in ("cluster_web", "cluster_mw", "cluster_galera", "cluster_gtid", "cluster_nfs"):
        assert f"subgraph {cluster}" in dot, cluster
    assert "clients -> web_web1" in dot
    for i, node in enumerate(MW, 1):
        assert re.search(rf'web_web1 -> ox_{node} \[label="route OX{i}"', dot), node
        assert f"ox_{node} -> haproxy_{node}" in dot
        assert re.search(rf"haproxy_{node} -> db_db\d \[[^]]*lhead=cluster_galera", dot), node
    for node in GALERA:
        assert f"db_{node} -> wsrep" in dot
    assert re.search(r'db_db4 -> db_db5 \[label="GTID replication"[^]]*dir=forward', dot)
    assert re.search(r'-> db_db4 \[label="write :3306"', dot) and re.search(r'-> db_db5 \[label="read :3306"', dot)
    assert re.search(r"-> nfs_nfs1 \[[^]]*ltail=cluster_mw", dot)


def test_topology_draws_floating_addresses_and_master_master():
    dot = topology.for_stack("lab-vip").source
    assert "clients -> vip_web" in dot and "vip_web -> web_vweb1" in dot and "vip_web -> web_vweb2" in dot
    assert re.search(r'-> vip_gtid \[label="write :3306"', dot)
    assert "vip_gtid -> db_vdb4" in dot and "vip_gtid -> db_vdb5" in dot
    assert re.search(r'db_vdb4 -> db_vdb5 \[label="GTID replication"[^]]*dir=both', dot)


def test_topology_draws_the_stackreference_edges():
    """Both ends of a composition: the consumer's OX nodes to each database stack it reads, and a
    database stack's client networks to its databases."""
    consumer = topology.for_stack("lab-sref-mw").source
    for i, stack in enumerate(("lab-sref-galera", "lab-sref-gtid")):
        assert f"database stack organization/ox-estate/{stack}" in consumer
        assert re.search(rf'ox_smw1 -> stack_{i} \[label="StackReference: [^]]*ltail=cluster_mw', consumer)
    producer = topology.for_stack("lab-sref-galera").source
    assert "10.225.0.31/32" in producer
    assert re.search(r'db_clients -> db_sgal1 \[label="database.clients[^]]*lhead="?cluster_users-a', producer)
    assert "db_clients" not in topology.for_stack("lab").source


def test_a_consumer_is_planned_from_what_its_database_stacks_exported(tmp_path):
    """`--reference STACK=FILE` (`pulumi stack output --json --show-secrets`): the consumer's HAProxy
    reaches the producer's nodes, its registration their userdbs, and their password is scrubbed.
    Without it the plan is refused as `pulumi preview` would be, naming the key."""
    references, files = {}, []
    for stack in ("lab-sref-galera", "lab-sref-gtid"):
        _, outputs = _fresh_loop(lambda: plan.evaluate(stack))
        outputs["databaseCredentials"] = {**outputs["databaseCredentials"], "password": f"{stack}-exported-pw"}
        (tmp_path / f"{stack}.json").write_text(json.dumps(outputs))
        files += ["--reference", f"organization/ox-estate/{stack}={tmp_path / f'{stack}.json'}"]
    out = tmp_path / "plan"
    assert _fresh_loop(lambda: plan.main(["--stack", "lab-sref-mw", "--out", str(out), *files])) == 0
    haproxy = (out / "smw1" / "ox-dbproxy-smw1-haproxy.create.sh").read_text()
    assert "10.225.0.11:3306" in haproxy and "mysql-write-users-a" in haproxy
    assert "-H 10.225.0.21" in (out / "smw1" / "ox-registration-database-oxdb-users-b.create.sh").read_text()
    written = "".join(f.read_text() for f in out.rglob("*") if f.is_file() and f.suffix != ".png")
    assert "exported-pw" not in written
    assert _fresh_loop(lambda: plan.main(["--stack", "lab-sref-mw", "--out", str(tmp_path / "none")])) == 1


def test_committed_lab_picture_is_current():
    """lab/topology/ (shown in the README) is the lab stack's picture: regenerate it with
    `python -m components.plan --stack lab --out DIR` and copy DIR/topology.* when this fails."""
    assert (ROOT / "lab" / "topology" / "lab.dot").read_text() == topology.for_stack("lab").source
    assert (ROOT / "lab" / "topology" / "lab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_topology_images_are_rendered(plans):
    if shutil.which("dot") is None:
        print(f"\n*** {DOT_MISSING} ***\n")
        pytest.skip(DOT_MISSING)
    assert (plans[0] / "topology.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (plans[0] / "topology.svg").read_text()
    assert "<svg" in svg and "route OX1" in svg

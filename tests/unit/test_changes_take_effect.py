"""A change that only matters once something acts on it takes effect (no "change that never does").

Under the engine a step runs again only when its own rendered script (or stdin, connection)
changes. So a step that applies another step's change (reload, restart, change* call) must see
that change in its own script. Here: the wiring under mocks (which scripts change when a setting
changes, and which stay the same), and the scripts themselves, run with the real bash against
fake tools in a private mount namespace (nothing on this machine is touched).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pulumi
import pytest
from pulumi_command import remote

from components.core import config
from components.db import mycnf
from components.web.frontend import ApacheFrontend, Backend
from components.estate import frontend_args
from components.core.hosts import static_hosts
from components.core.parse import parse_context_id, parse_registered_id
from components.core.remote import command_line, render_step
from components.core.render import Rendered
from components.core.secrets import mysql_native_hash
from harness import Recording, run_built, run_program, script_of
from conftest import BASE_CONFIG

SECRET = {"sshPrivateKey"}


# --------------------------------------------------------------------------- wiring under mocks

# Frontend knobs of the single-knob matrix (see single_knobs below).
FRONTEND_KNOBS = [{"adminNetworks": ["10.0.0.0/28"]}, {"maxConnections": 4000}]

def _scripts(recording: Recording, prefix: str) -> dict[str, str]:
    return {r.name: script_of(r) for r in recording.of_type("command:remote:Command") if r.name.startswith(prefix)}


def _frontend(stack_config, **frontend) -> dict[str, str]:
    """The ox-web-* scripts of an ApacheFrontend built under mocks (as test_frontend.py builds it)."""
    fe = {"mode": "dedicated", "nodes": ["web1"], "adminNetworks": ["10.0.0.0/28", "192.0.2.0/24"], **frontend}
    cfg = config.parse(stack_config(frontend=fe), {"sshPrivateKey"})
    def program():
        hosts = static_hosts(cfg, pulumi.Output.secret(cfg.secrets.ssh_private_key.get_secret_value()))
        backends = [Backend(n.host, hosts[n.host].address, n.jkroute) for n in cfg.middleware.nodes]
        ready = remote.Command("mw-ready", connection=hosts["mw1"].connection, create="true")
        fe = ApacheFrontend("ox-web", frontend_args(cfg, [hosts[n] for n in cfg.frontend.nodes], backends, [ready]))
        return fe.urls

    recording = run_built(program)
    scripts = _scripts(recording, "ox-web-")
    scripts["start-deps"] = " ".join(sorted(recording.named("ox-web-web1-start").dependencies))
    scripts["mw-ready"] = recording.named("mw-ready").urn
    return scripts


def test_an_apache_configuration_change_reaches_the_start_step(stack_config):
    """adminNetworks, maxConnections, the backends: each changes configure AND start (and the check
    after it); install stays the same, and the same config renders the same scripts."""
    base = _frontend(stack_config)
    assert _frontend(stack_config) == base
    for change in FRONTEND_KNOBS:
        changed = _frontend(stack_config, **change)
        assert changed["ox-web-web1-configure"] != base["ox-web-web1-configure"], change
        assert changed["ox-web-web1-start"] != base["ox-web-web1-start"], change
        assert changed["ox-web-web1-install"] == base["ox-web-web1-install"]
        assert changed["ox-web-web1-check"] != base["ox-web-web1-check"]  # it reports the new state
    moved = dict(BASE_CONFIG["middleware"], nodes=[{"host": "mw1", "jkroute": "OX1"}])
    fewer = _frontend(lambda **kw: stack_config(middleware=moved, **kw))
    assert fewer["ox-web-web1-start"] != base["ox-web-web1-start"]
    # the start step applies the marker configure leaves, and still waits for the middleware
    assert "apache2.pending" in base["ox-web-web1-start"] and "config_digest=" in base["ox-web-web1-start"]
    assert base["mw-ready"] in base["start-deps"].split()


def _estate(stack_config, **overrides) -> dict[str, str]:
    return _scripts(run_program(stack_config(**overrides), SECRET), "ox-")


def _database(**tuning) -> dict:
    return dict(BASE_CONFIG["database"], tuning=tuning) if tuning else BASE_CONFIG["database"]


# The single-knob matrix: one setting changed at a time, as the tests here change them.
# benchmarks/ counts the steps each knob touches from this table (single_knobs), not a copy.
TUNING_KNOBS = [{"maxConnections": 300}, {"bufferPoolPercent": 30}, {"durability": "strict"}]
SST_RSYNC = {"nodes": ["db1", "db2", "db3"], "sstMethod": "rsync"}
FILESTORE_CHANGE = {"server": "nfs1", "sizeMb": 5000, "maxContexts": 10}


def single_knobs() -> dict[str, dict]:
    """Knob label -> the top-level overrides of BASE_CONFIG that change that one knob."""
    knobs = {f"database.tuning.{k}={v}": {"database": _database(**t)} for t in TUNING_KNOBS for k, v in t.items()}
    knobs["database.galera.sstMethod=rsync"] = {"database": dict(BASE_CONFIG["database"], galera=SST_RSYNC)}
    knobs["filestore.sizeMb=5000,maxContexts=10"] = {"filestore": FILESTORE_CHANGE}
    for change in FRONTEND_KNOBS:
        for k, v in change.items():
            knobs[f"frontend.{k}={v}"] = {"frontend": dict(BASE_CONFIG["frontend"], **change)}
    return knobs


@pytest.fixture
def estate(stack_config):
    return _estate(stack_config)


def test_the_same_config_renders_the_same_scripts(stack_config, estate):
    assert _estate(stack_config) == estate


@pytest.mark.parametrize("tuning", TUNING_KNOBS)
def test_a_tuning_change_reaches_the_step_that_starts_each_server(stack_config, estate, tuning):
    changed = _estate(stack_config, database=_database(**tuning))
    starters = ["ox-galera-db1-bootstrap", "ox-galera-db2-join", "ox-galera-db3-join",
                "ox-gtid-db4-start", "ox-gtid-db5-start"]
    for name in starters + [n.replace("bootstrap", "configure").replace("join", "configure").replace("start", "configure")
                            for n in starters]:
        assert changed[name] != estate[name], name
    for name in ("ox-galera-db1-verify", "ox-galera-db2-install", "ox-mw-mw1-configure", "ox-web-web1-start"):
        assert changed[name] == estate[name], name
    # each starter carries its own node's digest (the Galera nodes' files differ: host.cnf)
    digests = {n: re.search(r"config_digest=(\w+)", changed[n]).group(1) for n in starters}
    assert len(set(digests.values())) == len(starters)


def test_an_sst_method_change_is_applied_at_runtime_and_reaches_the_chain(stack_config, estate):
    database = dict(BASE_CONFIG["database"], galera=SST_RSYNC)
    changed = _estate(stack_config, database=database)
    for name in ("ox-galera-db1-bootstrap", "ox-galera-db2-join", "ox-galera-db3-join"):
        assert changed[name] != estate[name], name
    configure = changed["ox-galera-db2-configure"]
    assert "wsrep_sst_method = rsync" in configure
    assert "wsrep_sst_method) kind=text ;;" in configure  # SET GLOBAL, no restart
    assert changed["ox-gtid-db4-start"] == estate["ox-gtid-db4-start"]


def test_the_runtime_table_lists_only_what_the_files_set():
    files = {"tunings.cnf": "[mysqld]\nmax_connections = 505\ninnodb-buffer-pool-size = 4096M\nserver_id = 3\n",
             "wsrep.cnf": "[mysqld]\nwsrep_sst_method = rsync\nwsrep_cluster_address = gcomm://a,b\n"}
    assert mycnf.runtime_settings(files) == {"innodb_buffer_pool_size": "size", "max_connections": "number",
                                             "wsrep_sst_method": "text"}
    for never in ("server_id", "log_bin", "read_only", "wsrep_cluster_address", "wsrep_provider",
                  "wsrep_node_address", "wsrep_cluster_name"):
        assert never not in mycnf.RUNTIME_SETTINGS


def test_standalone_start_follows_its_tuning(stack_config):
    database = {"standalone": {"host": "db4", "serverId": 1}, "configdb": "standalone", "userdbs": ["standalone"]}
    base = _estate(stack_config, database=database)
    changed = _estate(stack_config, database=dict(database, tuning={"maxConnections": 200}))
    assert changed["ox-standalone-db4-start"] != base["ox-standalone-db4-start"]
    assert changed["ox-standalone-db4-root"] == base["ox-standalone-db4-root"]


def test_registration_values_reach_their_steps(stack_config, estate):
    changed = _estate(stack_config, filestore=FILESTORE_CHANGE)
    assert changed["ox-registration-filestore"] != estate["ox-registration-filestore"]
    assert "changefilestore -i" in changed["ox-registration-filestore"]
    assert changed["ox-registration-server"] == estate["ox-registration-server"]


# --------------------------------------------------------------------------- the scripts, for real

MOUNT, MKDIR = shutil.which("mount") or "/usr/bin/mount", shutil.which("mkdir") or "/usr/bin/mkdir"
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="NEEDS ROOT: runs steps in a private mount namespace (CI runs as root)")


def _b64(**secrets) -> str:
    return "".join(f"{k}={base64.b64encode(v.encode()).decode()}\n" for k, v in secrets.items())


def _fake(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


class Box:
    """A private mount namespace: /etc an overlay (writes land in <tmp>/etc), /var/lib, /root, /run
    and /opt empty tmpfs but for /var/lib/ox-estate, /var/lib/mysql and /opt/open-xchange/etc (kept in
    <tmp> across runs),
    fake OX tools in /opt/open-xchange/sbin, other fakes first on PATH."""

    def __init__(self, tmp_path: Path):
        self.tmp, self.fake = tmp_path, tmp_path / "fake"
        self.etc, self.sbin, self.bin = tmp_path / "etc", tmp_path / "sbin", tmp_path / "bin"
        self.state, self.datadir = tmp_path / "state", tmp_path / "mysql"  # /var/lib/ox-estate, /var/lib/mysql
        self.oxetc = tmp_path / "oxetc"  # /opt/open-xchange/etc
        for d in (self.fake, self.etc, self.sbin, self.bin, self.state, self.datadir, self.oxetc, tmp_path / "work"):
            d.mkdir(exist_ok=True)

    @property
    def marker(self) -> str | None:
        f = self.state / "mariadb.restart-pending"
        return f.read_text() if f.exists() else None

    def run(self, template: str, values: dict, stdin: str = "", step: str = "t1-step", host: str = "t1"):
        script = render_step(step, host, template, values)
        # absolute paths: the fakes on PATH may include a mount of their own
        setup = " && ".join([
            f"{MOUNT} -t overlay overlay -o lowerdir=/etc,upperdir={self.etc},workdir={self.tmp / 'work'} /etc",
            f"{MOUNT} -t tmpfs tmpfs /var/lib", f"{MOUNT} -t tmpfs tmpfs /root", f"{MOUNT} -t tmpfs tmpfs /opt",
            f"{MOUNT} -t tmpfs tmpfs /run",
            f"{MKDIR} -p /opt/open-xchange/sbin && {MOUNT} --bind {self.sbin} /opt/open-xchange/sbin",
            f"{MKDIR} /opt/open-xchange/etc && {MOUNT} --bind {self.oxetc} /opt/open-xchange/etc",
            f"{MKDIR} /var/lib/ox-estate && {MOUNT} --bind {self.state} /var/lib/ox-estate",
            f"{MKDIR} /var/lib/mysql && {MOUNT} --bind {self.datadir} /var/lib/mysql",
        ])
        env = {**os.environ, "FAKE": str(self.fake), "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup + ' && exec "$@"', "box",
                "sh", "-c", command_line(step, script)]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, env=env)

    def calls(self, name: str = "calls") -> list[str]:
        f = self.fake / name
        return f.read_text().splitlines() if f.exists() else []


# The OX admin tools: log how they were called (and whether ADMIN_PASSWORD came in the
# environment), list what $FAKE/<tool>.csv holds, print what the real ones print.
OX_TOOL = 'echo "$(basename "$0") $* ADMIN_PASSWORD=${ADMIN_PASSWORD:-unset}" >>"$FAKE/calls"\n'
MASTER = "Master-pw-4f1e"


def _ox_box(tmp_path) -> Box:
    box = Box(tmp_path)
    for tool in ("listfilestore", "listcontext"):
        _fake(box.sbin / tool, OX_TOOL + f'cat "$FAKE/{tool}.csv"\n')
    _fake(box.sbin / "changefilestore", OX_TOOL + 'echo "filestore $5 changed"\n')
    _fake(box.sbin / "registerfilestore", OX_TOOL + 'echo "filestore 7 registered"\n')
    _fake(box.sbin / "changecontext", OX_TOOL + 'echo "context $4 changed"\n')
    _fake(box.sbin / "createcontext", OX_TOOL + 'echo "context 1 created"\n')
    return box


FILESTORE = {"uri": "s3://oxfilestore", "size_mb": 2000, "max_contexts": 10}
FS_CSV = 'id,uri,size,used,maxcontexts,currentcontexts\n"2","s3://oxfilestore","{size}","0","{maxctx}","1"\n'


@needs_root
@pytest.mark.parametrize("size, maxctx, change", [
    (2000, 10, None),
    (1000, 10, "changefilestore -A oxadminmaster -i 2 -s 2000 -x 10"),
    (2000, 5000, "changefilestore -A oxadminmaster -i 2 -s 2000 -x 10"),
])
def test_an_adopted_filestore_is_changed_only_when_it_differs(tmp_path, size, maxctx, change):
    box = _ox_box(tmp_path)
    (box.fake / "listfilestore.csv").write_text(FS_CSV.format(size=size, maxctx=maxctx))
    r = box.run("mw/register-filestore.sh.j2", FILESTORE, stdin=_b64(OX_ADMIN_MASTER_PASSWORD=MASTER),
                step="ox-registration-filestore")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "filestore 2 registered\n"  # the same id line, changed or not
    assert parse_registered_id("ox-registration-filestore", r.stdout, "filestore") == 2
    calls = box.calls()
    assert calls[0] == f"listfilestore -A oxadminmaster --csv ADMIN_PASSWORD={MASTER}"
    assert calls[1:] == ([f"{change} ADMIN_PASSWORD={MASTER}"] if change else [])
    assert all(" -P" not in c for c in calls)  # the master password never on argv


@needs_root
def test_a_new_filestore_is_registered_with_the_stack_values(tmp_path):
    box = _ox_box(tmp_path)
    (box.fake / "listfilestore.csv").write_text("id,uri,size,used,maxcontexts,currentcontexts\n")
    r = box.run("mw/register-filestore.sh.j2", FILESTORE, stdin=_b64(OX_ADMIN_MASTER_PASSWORD=MASTER))
    assert (r.returncode, r.stdout) == (0, "filestore 7 registered\n"), r.stderr
    assert box.calls()[1] == f"registerfilestore -A oxadminmaster -t s3://oxfilestore -s 2000 -x 10 ADMIN_PASSWORD={MASTER}"


@needs_root
def test_a_filestore_listing_without_the_columns_fails_loudly(tmp_path):
    box = _ox_box(tmp_path)
    (box.fake / "listfilestore.csv").write_text('id,uri\n"2","s3://oxfilestore"\n')
    r = box.run("mw/register-filestore.sh.j2", FILESTORE, stdin=_b64(OX_ADMIN_MASTER_PASSWORD=MASTER),
                step="ox-registration-filestore", host="mw1")
    assert r.returncode == 1 and "step ox-registration-filestore on mw1" in r.stderr
    assert "no size or maxcontexts for filestore 2" in r.stderr and len(box.calls()) == 1


CONTEXT = {"context_id": 1, "name": "ctx1", "admin_user": "oxadmin", "admin_email": "a@example.com",
           "quota_mb": 500, "mappings": []}
CTX_CSV = ('id,filestore_id,filestore_name,enabled,max_quota,used_quota,name,lmappings\n'
           '"1","2","1_ctx_store","true","{quota}","0","ctx1","1,ctx1"\n')


@needs_root
@pytest.mark.parametrize("quota, change", [(500, None), (100, "changecontext -A oxadminmaster -c 1 -q 500")])
def test_an_adopted_context_gets_the_stack_quota(tmp_path, quota, change):
    box = _ox_box(tmp_path)
    (box.fake / "listcontext.csv").write_text(CTX_CSV.format(quota=quota))
    r = box.run("mw/create-context.sh.j2", CONTEXT,
                stdin=_b64(OX_ADMIN_MASTER_PASSWORD=MASTER, OX_CONTEXT_ADMIN_PASSWORD="ctx-pw"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "context 1 created\n" and parse_context_id("s", r.stdout) == 1
    assert box.calls()[1:] == ([f"{change} ADMIN_PASSWORD={MASTER}"] if change else [])


# MariaDB fakes: the client answers wsrep status, @@ variables and information_schema from
# $FAKE (alive, size, name, server_id; readonly and refuse list variable names) and logs every
# statement; the init script logs its action and starts or stops the "server".
MARIADB = r'''sql=""
while [ $# -gt 0 ]; do
  if [ "$1" = -e ]; then sql=$2; shift; fi
  shift
done
[ -n "$sql" ] || sql=$(cat)
printf '%s\n' "$sql" >>"$FAKE/sql"
[ -e "$FAKE/alive" ] || { echo "ERROR 2002 (HY000): Can't connect" >&2; exit 1; }
status() { printf '%s\t%s\n' "$1" "$2"; }
case $sql in
  *"LIKE 'wsrep_local_state_comment'"*) status wsrep_local_state_comment Synced ;;
  *"LIKE 'wsrep_cluster_status'"*) status wsrep_cluster_status Primary ;;
  *"LIKE 'wsrep_ready'"*) status wsrep_ready ON ;;
  *"LIKE 'wsrep_cluster_size'"*) status wsrep_cluster_size "$(cat "$FAKE/size")" ;;
  *"LIKE 'wsrep_local_commits'"*) status wsrep_local_commits 42 ;;
  *"@@wsrep_cluster_name"*) cat "$FAKE/name" ;;
  *"@@server_id"*) cat "$FAKE/server_id" ;;
  *SYSTEM_VARIABLES*)
    name=$(printf '%s' "$sql" | sed -n "s/.*VARIABLE_NAME = '\([A-Z_]*\)'.*/\1/p")
    if grep -qx "$name" "$FAKE/readonly" 2>/dev/null; then echo YES; else echo NO; fi ;;
  "SET GLOBAL "*)
    name=$(printf '%s' "$sql" | sed 's/^SET GLOBAL \([a-z_]*\) .*/\1/')
    if grep -qx "$name" "$FAKE/refuse" 2>/dev/null; then echo "ERROR 1238: refused" >&2; exit 1; fi ;;
esac
'''
ADMIN = '[ "$*" = "--protocol=socket -uroot ping" ] && [ -e "$FAKE/alive" ]\n'
INIT = r'''echo "mariadb $1" >>"$FAKE/service"
case $1 in
  start|restart|bootstrap) touch "$FAKE/alive" ;;
  stop) rm -f "$FAKE/alive" ;;
  status) [ -e "$FAKE/alive" ] ;;
esac
'''


def _db_box(tmp_path, *, alive=True, size=3, name="oxcluster", server_id=1, marker=None) -> Box:
    box = Box(tmp_path)
    _fake(box.bin / "mariadb", MARIADB)
    _fake(box.bin / "mariadb-admin", ADMIN)
    _fake(box.etc / "init.d" / "mariadb", INIT)
    if alive:
        (box.fake / "alive").touch()
    (box.fake / "size").write_text(f"{size}\n")
    (box.fake / "name").write_text(f"{name}\n")
    (box.fake / "server_id").write_text(f"{server_id}\n")
    (box.datadir / "mysql").mkdir()  # an initialized datadir
    (box.fake / "readonly").write_text("")
    (box.fake / "refuse").write_text("")
    if marker:
        (box.state / "mariadb.restart-pending").write_text(marker)
    return box


TUNINGS = {"old": "[mysqld]\nmax_connections = 505\ninnodb_buffer_pool_size = 4096M\nsql_mode = NO_ENGINE_SUBSTITUTION\n",
           "new": "[mysqld]\nmax_connections = 300\ninnodb_buffer_pool_size = 1G\nsql_mode = NO_ENGINE_SUBSTITUTION\n"}
WSREP = {"old": "[mysqld]\nwsrep_sst_method = mariabackup\nwsrep_cluster_address = gcomm://a,b,c\n[sst]\nsst-log-archive = 0\n",
         "new": "[mysqld]\nwsrep_sst_method = rsync\nwsrep_cluster_address = gcomm://a,b,d\n[sst]\nsst-log-archive = 1\n"}


def _configure(box: Box, version: str, galera: bool = True):
    # Rendered: file texts reach the script as the components' render() returns them.
    files = {"tunings.cnf": Rendered(TUNINGS[version]), **({"wsrep.cnf": Rendered(WSREP[version])} if galera else {})}
    values = {"conf_dir": "/etc/mysql/ox.conf.d", "datadir": "/var/lib/mysql", "files": files,
              "sst_user": "sstuser" if galera else "", "runtime_settings": mycnf.runtime_settings(files)}
    secrets = _b64(MYSQL_ROOT_PASSWORD="root-pw-1", **({"SST_PASSWORD": "sst-pw-2"} if galera else {}))
    return box.run("db/mariadb-configure.sh.j2", values, stdin=secrets, step="ox-galera-db2-configure", host="db2")


@needs_root
def test_configure_applies_dynamic_settings_at_runtime_and_leaves_the_rest_pending(tmp_path):
    box = _db_box(tmp_path)
    # the files as the last run left them, in the overlay's upper /etc
    conf = box.etc / "mysql" / "ox.conf.d"
    conf.mkdir(parents=True)
    (conf / "tunings.cnf").write_text(TUNINGS["old"])
    (conf / "wsrep.cnf").write_text(WSREP["old"])
    (box.etc / "mysql" / "my.cnf").write_text(Path("/etc/mysql/my.cnf").read_text() + "\n!includedir /etc/mysql/ox.conf.d/\n")
    r = _configure(box, "new")
    assert r.returncode == 0, r.stderr
    sets = [s for s in box.calls("sql") if s.startswith("SET GLOBAL")]
    assert "SET GLOBAL max_connections = 300" in sets
    assert f"SET GLOBAL innodb_buffer_pool_size = {1024 ** 3}" in sets
    assert "SET GLOBAL wsrep_sst_method = 'rsync'" in sets
    assert not [s for s in sets if "sql_mode" in s or "cluster_address" in s]  # unchanged / not at runtime
    assert any(s.startswith("SET GLOBAL wsrep_sst_auth = ") and "sst-pw-2" in s for s in box.calls("sql"))
    assert "sst-pw-2" not in r.stderr + r.stdout
    assert "a restart is pending for: wsrep_cluster_address" in r.stderr
    assert box.calls("service") == []  # configure never restarts
    assert box.marker == "wsrep_cluster_address\n"
    # a re-run with the same files changes nothing and applies nothing again
    before = len(box.calls("sql"))
    again = _configure(box, "new")
    assert again.returncode == 0, again.stderr
    assert not [s for s in box.calls("sql")[before:] if s.startswith("SET GLOBAL") and "sst_auth" not in s]
    assert box.marker == "wsrep_cluster_address\n" and "a restart is pending for: wsrep_cluster_address (the start step" in again.stderr


@needs_root
def test_configure_falls_back_to_a_restart_when_the_server_refuses(tmp_path):
    box = _db_box(tmp_path)
    conf = box.etc / "mysql" / "ox.conf.d"
    conf.mkdir(parents=True)
    (conf / "tunings.cnf").write_text(TUNINGS["old"])
    (box.etc / "mysql" / "my.cnf").write_text(Path("/etc/mysql/my.cnf").read_text() + "\n!includedir /etc/mysql/ox.conf.d/\n")
    (box.fake / "readonly").write_text("INNODB_BUFFER_POOL_SIZE\n")  # not dynamic on this server
    (box.fake / "refuse").write_text("max_connections\n")  # refused
    r = _configure(box, "new", galera=False)
    assert r.returncode == 0, r.stderr
    assert box.marker == "innodb_buffer_pool_size\nmax_connections\n"
    assert not [s for s in box.calls("sql") if s.startswith("SET GLOBAL innodb")]


@needs_root
def test_configure_of_a_stopped_server_leaves_nothing_pending(tmp_path):
    box = _db_box(tmp_path, alive=False)
    conf = box.etc / "mysql" / "ox.conf.d"
    conf.mkdir(parents=True)
    (conf / "tunings.cnf").write_text(TUNINGS["old"])
    r = _configure(box, "new", galera=False)
    assert r.returncode == 0, r.stderr
    assert box.marker is None and not [s for s in box.calls("sql") if s.startswith("SET GLOBAL")]
    assert "max_connections = 300" in (conf / "tunings.cnf").read_text()


START = {"server_id": 1, "config_digest": "d1"}


@needs_root
@pytest.mark.parametrize("alive, marker, service", [
    (True, "max_connections\n", ["mariadb restart"]),
    (True, None, []),
    (False, "max_connections\n", ["mariadb start"]),
])
def test_the_start_step_restarts_for_what_is_pending(tmp_path, alive, marker, service):
    box = _db_box(tmp_path, alive=alive, marker=marker)
    r = box.run("db/mariadb-start.sh.j2", START, step="ox-gtid-db4-start", host="db4")
    assert r.returncode == 0, r.stderr
    assert box.calls("service") == service and box.marker is None
    assert r.stdout == "mariadb db4 running (server_id 1)\n"


@needs_root
def test_the_start_step_never_restarts_for_a_new_server_id(tmp_path):
    box = _db_box(tmp_path, server_id=7, marker="server_id\n")
    r = box.run("db/mariadb-start.sh.j2", START, step="ox-gtid-db4-start", host="db4")
    assert r.returncode == 1 and "restart it deliberately" in r.stderr
    assert box.calls("service") == [] and box.marker == "server_id\n"


JOIN = {"datadir": "/var/lib/mysql", "cluster_name": "oxcluster", "config_digest": "d2", "sst_method": "mariabackup",
        "peers": []}
BOOTSTRAP = {**JOIN, "sst_user": "sstuser", "peers": [], "node_addresses": []}
DB_SECRETS = _b64(MYSQL_ROOT_HASH=mysql_native_hash("root-pw-1"), SST_HASH=mysql_native_hash("sst-pw-2"))


@needs_root
@pytest.mark.parametrize("alive, marker, service", [
    (True, "innodb_log_file_size\n", ["mariadb restart"]),  # a member restart, never a bootstrap
    (True, None, []),
    (False, "innodb_log_file_size\n", ["mariadb start"]),  # started with the new files: nothing left
])
def test_a_galera_join_restarts_its_node_as_a_member(tmp_path, alive, marker, service):
    box = _db_box(tmp_path, alive=alive, marker=marker)
    r = box.run("db/galera-join.sh.j2", JOIN, step="ox-galera-db2-join", host="db2")
    assert r.returncode == 0, r.stderr
    assert box.calls("service") == service and box.marker is None
    assert r.stdout == "galera db2 Synced (cluster size 3)\n"
    if service == ["mariadb restart"]:
        assert "rolling restart: leaving oxcluster (3 members)" in r.stderr
        assert "SET GLOBAL wsrep_desync = ON" in box.calls("sql")  # drained before it leaves
    else:
        assert "SET GLOBAL wsrep_desync = ON" not in box.calls("sql")


@needs_root
@pytest.mark.parametrize("size, name, why", [
    (1, "oxcluster", "the only member of oxcluster"),
    (3, "oldname", "cannot be renamed"),
])
def test_a_galera_join_refuses_a_restart_that_would_not_rejoin(tmp_path, size, name, why):
    box = _db_box(tmp_path, size=size, name=name, marker="innodb_log_file_size\n")
    r = box.run("db/galera-join.sh.j2", JOIN, step="ox-galera-db2-join", host="db2")
    assert r.returncode == 1 and why in r.stderr and "step ox-galera-db2-join on db2" in r.stderr
    assert box.calls("service") == [] and box.marker == "innodb_log_file_size\n"  # still pending


@needs_root
@pytest.mark.parametrize("alive, size, marker, service", [
    (True, 3, "wsrep_slave_threads\n", ["mariadb restart"]),  # others up: an ordinary member restart
    (True, 1, "wsrep_slave_threads\n", ["mariadb stop", "mariadb bootstrap"]),  # the only member
    (True, 3, None, []),
    (False, 1, "wsrep_slave_threads\n", ["mariadb bootstrap"]),  # a new cluster, with the new files
])
def test_the_galera_bootstrap_restarts_the_first_node_safely(tmp_path, alive, size, marker, service):
    box = _db_box(tmp_path, alive=alive, size=size, marker=marker)
    r = box.run("db/galera-bootstrap.sh.j2", BOOTSTRAP, stdin=DB_SECRETS, step="ox-galera-db1-bootstrap", host="db1")
    assert r.returncode == 0, r.stderr
    assert box.calls("service") == service and box.marker is None
    assert r.stdout == f"galera db1 Synced (cluster size {size})\n"


# --------------------------------------------------------------------------- the audit's fixes

OX_INSTALLER = r'''etc=/opt/open-xchange/etc
mkdir -p "$etc"
for a; do case $a in --servermemory=*) mem=${a#*=} ;; esac; done
[ -e "$etc/configdb.properties" ] || echo 'readUrl=jdbc:mysql://127.0.0.1:3306/configdb' >"$etc/configdb.properties"
echo "JAVA_XTRAOPTS=\"-Xmx${mem}M -server\"" >"$etc/ox-scriptconf.sh"
'''
OX_INIT = r'''echo "open-xchange $1" >>"$FAKE/service"
case $1 in
  start) touch "$FAKE/ox-alive" ;;
  restart) if [ -e "$FAKE/fail-restart" ]; then rm -f "$FAKE/fail-restart" "$FAKE/ox-alive"; exit 1; fi
           touch "$FAKE/ox-alive" ;;
  status) [ -e "$FAKE/ox-alive" ] ;;
esac
'''


def _ox_configure(box: Box, servermemory: int, members: str = "10.0.0.21", converter_url: str = ""):
    hazelcast = (f"com.openexchange.hazelcast.enabled=true\ncom.openexchange.hazelcast.network.interfaces={members}\n"
                 f"com.openexchange.hazelcast.network.join.static.nodes={members}\n")
    values = {"write_host": "127.0.0.1", "write_port": 3307, "read_host": "127.0.0.1", "read_port": 3306,
              "db_user": "openexchange", "db_name": "configdb", "server_name": "oxserver", "cluster_name": "ox",
              "jkroute": "OX1", "servermemory": servermemory, "hazelcast": Rendered(hazelcast),
              "hazelcast_group_password": False, "replication_monitor": "false", "converter_url": converter_url}
    secrets = _b64(CONFIGDB_PASSWORD="cdb-pw", OX_ADMIN_MASTER_PASSWORD=MASTER)
    return box.run("mw/ox-configure.sh.j2", values, stdin=secrets, step="ox-mw-mw1-configure", host="mw1")


def _ox_restart(box: Box):
    secrets = _b64(OX_ADMIN_MASTER_PASSWORD=MASTER)
    return box.run("mw/ox-restart.sh.j2", {"restart_digest": "d1", "jkroute": "OX1", "drained_at": "1"}, stdin=secrets,
                   step="ox-mwroll-mw1-restart", host="mw1")


def _ox_service_box(tmp_path) -> Box:
    box = Box(tmp_path)
    (box.etc / "group").write_text(Path("/etc/group").read_text() + "open-xchange:x:2001:\n")
    _fake(box.sbin / "oxinstaller", OX_INSTALLER)
    _fake(box.sbin / "listserver", "exit 0\n")
    _fake(box.etc / "init.d" / "open-xchange", OX_INIT)
    _fake(box.bin / "curl", "printf 200\n")  # OX's HTTP listener answers
    return box


@needs_root
def test_a_servermemory_change_is_left_to_the_restart_step_which_restarts_even_after_a_failure(tmp_path):
    """--servermemory lands in ox-scriptconf.sh, not in a .properties file: it must count too. The
    configure step (every node at once) never restarts a running node: it leaves the restart
    pending for the rolling restart's step, and that step restarts until it succeeds."""
    box = _ox_service_box(tmp_path)
    assert _ox_configure(box, 2048).returncode == 0
    assert _ox_configure(box, 2048).returncode == 0
    assert box.calls("service") == ["open-xchange status", "open-xchange start", "open-xchange status"]
    assert not (box.state / "open-xchange.restart-pending").exists()
    changed = _ox_configure(box, 4096)
    assert changed.returncode == 0, changed.stderr
    assert box.calls("service")[-1] == "open-xchange status"  # running, not restarted
    assert (box.state / "open-xchange.restart-pending").exists()
    (box.fake / "fail-restart").touch()
    failed = _ox_restart(box)
    assert failed.returncode == 1 and "step ox-mwroll-mw1-restart on mw1" in failed.stderr
    assert (box.state / "open-xchange.restart-pending").exists()
    (box.fake / "ox-alive").touch()  # say it came back with the old settings somehow
    retry = _ox_restart(box)  # nothing changes in the files now: the marker restarts it
    assert retry.returncode == 0, retry.stderr
    assert '"action": "restart"' in retry.stdout
    assert box.calls("service")[-4:] == ["open-xchange status", "open-xchange restart", "open-xchange status",
                                         "open-xchange restart"]
    assert not (box.state / "open-xchange.restart-pending").exists()
    again = _ox_restart(box)
    assert '"action": "none"' in again.stdout and box.calls("service")[-1] == "open-xchange status"


@needs_root
def test_a_converter_url_is_left_to_the_restart_step(tmp_path):
    """Document converters added: the client URL and the preview capability land in OX's
    .properties (kept: the other keys of those files stay), and the running node is left for the
    rolling restart, like any setting OX reads at start; the same run again changes nothing."""
    box = _ox_service_box(tmp_path)
    (box.oxetc / "permissions.properties").write_text("# shipped\ncom.openexchange.capability.other=true\n")
    assert _ox_configure(box, 2048).returncode == 0
    url = "http://127.0.0.1:8008/documentconverterws"
    changed = _ox_configure(box, 2048, converter_url=url)
    assert changed.returncode == 0, changed.stderr
    assert box.calls("service")[-1] == "open-xchange status"  # running, not restarted
    assert (box.state / "open-xchange.restart-pending").exists()
    client = (box.oxetc / "documentconverter-client.properties").read_text().splitlines()
    assert client == [f"com.openexchange.documentconverter.client.remoteDocumentConverterUrl={url}"]
    assert (box.oxetc / "permissions.properties").read_text().splitlines() == [
        "# shipped", "com.openexchange.capability.other=true", "com.openexchange.capability.document_preview=true"]
    assert _ox_restart(box).returncode == 0
    assert not (box.state / "open-xchange.restart-pending").exists()
    assert _ox_configure(box, 2048, converter_url=url).returncode == 0
    assert not (box.state / "open-xchange.restart-pending").exists()


@needs_root
def test_a_new_hazelcast_member_is_written_without_a_restart(tmp_path):
    """Hazelcast's TCP-IP join: a new member needs one running member in its own list; the running
    nodes read the longer list at their next start. So a new member list leaves nothing pending."""
    box = _ox_service_box(tmp_path)
    assert _ox_configure(box, 2048, "10.0.0.21,10.0.0.22").returncode == 0
    grown = _ox_configure(box, 2048, "10.0.0.21,10.0.0.22,10.0.0.23")
    assert grown.returncode == 0, grown.stderr
    assert "10.0.0.23" in (box.oxetc / "hazelcast.properties").read_text()
    assert not (box.state / "open-xchange.restart-pending").exists()
    assert "restart" not in " ".join(box.calls("service"))


NFS_FAKES = {
    "dpkg-query": "printf installed\n",
    "mountpoint": '[ -s "$FAKE/mounted" ]\n',
    "findmnt": 'cat "$FAKE/mounted"\n',
    "umount": 'echo "umount $*" >>"$FAKE/calls"; [ ! -e "$FAKE/busy" ] || exit 32; : >"$FAKE/mounted"\n',
    "mount": 'echo "mount $*" >>"$FAKE/calls"; awk -v m="$1" \'$2 == m {print $1}\' /etc/fstab >"$FAKE/mounted"\n',
}


@needs_root
@pytest.mark.parametrize("mounted, busy, calls, ok", [
    ("", False, ["mount {m}"], True),
    ("10.0.0.31:/var/opt/filestore", False, [], True),
    ("10.0.0.99:/var/opt/filestore", False, ["umount {m}", "mount {m}"], True),  # the server moved
    ("10.0.0.99:/var/opt/filestore", True, ["umount {m}"], False),  # in use: never forced
])
def test_a_changed_nfs_source_is_remounted(tmp_path, mounted, busy, calls, ok):
    box = Box(tmp_path)
    for name, text in NFS_FAKES.items():
        _fake(box.bin / name, text)
    (box.etc / "fstab").write_text(f"# static\n{mounted or '10.0.0.31:/var/opt/filestore'} {tmp_path}/fs nfs4 defaults 0 0\n")
    (box.fake / "mounted").write_text(mounted + "\n" if mounted else "")
    if busy:
        (box.fake / "busy").touch()
    m = f"{tmp_path}/fs"
    values = {"client_mount": "nfs", "server": "10.0.0.31", "export_path": "/var/opt/filestore", "mount_path": m}
    r = box.run("fs/nfs-client.sh.j2", values, step="ox-fs-mw1-mount", host="mw1")
    assert (r.returncode == 0) == ok, r.stderr
    assert box.calls() == [c.format(m=m) for c in calls]
    assert (box.etc / "fstab").read_text().count(f" {m} ") == 1
    assert f"10.0.0.31:/var/opt/filestore {m} nfs4" in (box.etc / "fstab").read_text()
    if not ok:
        assert "is busy" in r.stderr and "step ox-fs-mw1-mount on mw1" in r.stderr


HAPROXY_FAKES = {
    "dpkg-query": "printf installed\n",
    "haproxy": "exit 0\n",  # haproxy -c: the rendered config passes
    # It reads its stdin first, as socat does: a fake that exits unread makes `echo | socat` a
    # SIGPIPE (exit 141 under pipefail) when the echo comes late, as it did on a loaded machine.
    "socat": "cat >/dev/null; printf 'mysql-write,db1,,,,,,,,,,,,,,,,UP\\nmysql-read,db1,,,,,,,,,,,,,,,,UP\\n'\n",
}
HAPROXY_INIT = r'''echo "haproxy $1" >>"$FAKE/service"
case $1 in
  start) touch "$FAKE/ha-alive" ;;
  reload) if [ -e "$FAKE/fail-reload" ]; then rm -f "$FAKE/fail-reload"; exit 1; fi ;;
  status) [ -e "$FAKE/ha-alive" ] ;;
esac
'''


@needs_root
def test_a_haproxy_change_is_reloaded_even_after_a_failed_reload(tmp_path):
    box = Box(tmp_path)
    for name, text in HAPROXY_FAKES.items():
        _fake(box.bin / name, text)
    _fake(box.etc / "init.d" / "haproxy", HAPROXY_INIT)
    run = lambda cfg: box.run("mw/haproxy.sh.j2", {"config": Rendered(cfg), "clusters": [{
        "name": "galera", "named": False, "read_listener": "mysql-read", "write_listener": "mysql-write",
        "read_port": 3306, "write_port": 3307}]},  # noqa: E731
                              step="ox-dbproxy-mw1-haproxy", host="mw1")
    assert run("global\n# one\n").returncode == 0
    assert run("global\n# one\n").returncode == 0
    assert box.calls("service") == ["haproxy status", "haproxy start", "haproxy status"]
    (box.fake / "fail-reload").touch()
    assert run("global\n# two\n").returncode == 1  # written, but the reload failed
    assert (box.state / "haproxy.reload-pending").exists()
    retry = run("global\n# two\n")  # the file is as wanted now: only the marker knows
    assert retry.returncode == 0, retry.stderr
    assert box.calls("service")[-4:] == ["haproxy status", "haproxy reload", "haproxy status", "haproxy reload"]
    assert not (box.state / "haproxy.reload-pending").exists()
    assert retry.stdout == '{"host": "mw1", "writers": 1, "readers": 1}\n'

"""Tests for the LAB STAND-INS of OX's CLTs and middleware (lab/standins/).

Needs root-free-ish local tools only: mariadbd + mariadb-install-db (apt
mariadb-server) and /usr/bin/python3 with python3-pymysql.  Starts a
throwaway mariadbd on 127.0.0.1 with a temp datadir, installs the stand-ins
below a temp root (OX_STANDIN_ROOT), and drives them as the product would.
Only processes started here are stopped; all traffic is loopback.

Every test stands alone (any order, any -k selection): the mariadbd is shared
by the module, but each test gets its own install and ports, and fixtures, not
earlier tests, bring it to the state the test needs (configdb, oxinstaller,
middleware running).
"""

import csv
import http.client
import io
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

import pytest
from loopback import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
STANDINS = REPO / "lab" / "standins"
SYS_PY = "/usr/bin/python3"

sys.path.insert(0, str(STANDINS))
import layout  # noqa: E402

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(MARIADBD) or not os.path.exists(INSTALL_DB),
                       reason="mariadb-server not installed"),
    pytest.mark.skipif(subprocess.run([SYS_PY, "-c", "import pymysql"], capture_output=True).returncode != 0,
                       reason="python3-pymysql not installed for /usr/bin/python3"),
]

DB_PASS = "db-Secret-1"
MASTER_PASS = "master-Secret-2"
ADMIN_PASS = "ctxadmin-Secret-3"
USER_PASS = "user-Secret-4"


def wait_port_closed(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    base = tmp_path_factory.mktemp("mariadb")
    datadir = base / "data"
    port = free_port()
    subprocess.run([INSTALL_DB, "--no-defaults", "--user=root", "--datadir=%s" % datadir,
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=180)
    log = open(base / "mariadbd.out", "wb")
    proc = subprocess.Popen([MARIADBD, "--no-defaults", "--user=root", "--datadir=%s" % datadir,
                             "--port=%d" % port, "--bind-address=127.0.0.1",
                             "--socket=%s" % (base / "mysqld.sock"), "--pid-file=%s" % (base / "mysqld.pid"),
                             "--log-error=%s" % (base / "error.log"), "--skip-log-bin",
                             "--innodb-buffer-pool-size=32M", "--skip-name-resolve"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run([SYS_PY, "-c", "import pymysql,sys; pymysql.connect(host='127.0.0.1', port=%d, "
                                "user='root', password='', connect_timeout=2).close()" % port],
                               capture_output=True)
            if r.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mariadbd did not come up: %s" % (base / "error.log").read_text()[-2000:])
            time.sleep(0.3)
        yield {"port": port, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def root_sql(mariadb, statement):
    """Run one statement as the mariadbd's root (no password, loopback only)."""
    subprocess.run([SYS_PY, "-c", "import pymysql,sys; c = pymysql.connect(host='127.0.0.1', port=%d, "
                    "user='root', password='', connect_timeout=5); c.cursor().execute(sys.argv[1]); "
                    "c.commit(); c.close()" % mariadb["port"], statement],
                   check=True, capture_output=True, timeout=30)


def _own_middleware_pid(info):
    """The pid in this install's pidfile if it is this install's middleware (not a recycled pid)."""
    try:
        pid = int((info["base"] / "open-xchange.pid").read_text().strip())
        cmdline = pathlib.Path("/proc/%d/cmdline" % pid).read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(info["root"] / "sbin" / "open-xchange").encode() in cmdline else None


@pytest.fixture
def ox(tmp_path):
    """Stand-ins installed below a temp root of this test's own, plus ports for the middleware.
    Stops the middleware if the test started one."""
    base = tmp_path / "oxroot"
    layout.install(str(base))
    root = base / "opt" / "open-xchange"
    env = dict(os.environ)
    for key in ("ADMIN_PASSWORD", "NEW_USER_PASSWORD", "RMI_HOSTNAME"):
        env.pop(key, None)
    http_port, rmi_port = free_port(), free_port()
    env.update({
        "OX_STANDIN_ROOT": str(root),
        "OX_STANDIN_PIDFILE": str(base / "open-xchange.pid"),
        "OX_STANDIN_LOGFILE": str(base / "log" / "open-xchange.log"),
        "RMI_HOSTNAME": "rmi://127.0.0.1:%d/" % rmi_port,
    })
    info = {"base": base, "root": root, "env": env, "http_port": http_port, "rmi_port": rmi_port,
            "init": str(base / "etc" / "init.d" / "open-xchange")}
    yield info
    # Stop only the middleware this test started (pid from its own pidfile).
    if (base / "open-xchange.pid").exists():
        subprocess.run([info["init"], "stop"], env=env, capture_output=True, timeout=30)
        pid = _own_middleware_pid(info)
        if pid:                                  # the init script's stop gave up on it
            os.kill(pid, signal.SIGKILL)


def configdb_args(mariadb):
    return ("--configdb-user=openexchange", "--configdb-pass=%s" % DB_PASS, "--configdb-host=127.0.0.1",
            "--configdb-port=%d" % mariadb["port"])


@pytest.fixture
def configdb(ox, mariadb):
    """A fresh, empty configdb and its openexchange user (-i drops one an earlier test left)."""
    r = tool(ox, "initconfigdb", *configdb_args(mariadb), "-a", "--mysql-root-user=root",
             "--mysql-root-passwd=", "-i")
    assert r.returncode == 0, r.stderr


@pytest.fixture
def installed(ox, mariadb, configdb):
    """ox after initconfigdb and oxinstaller (route OX1, server oxserver), on this test's ports."""
    r = tool(ox, "oxinstaller", *oxinstaller_args(mariadb, "OX1"))
    assert r.returncode == 0, r.stderr
    configure_ports(ox)
    return ox


@pytest.fixture
def running(installed):
    """installed, with its middleware started (ox stops it afterwards)."""
    r = subprocess.run([installed["init"], "start"], env=installed["env"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    return installed


def tool(ox, name, *args, env=None):
    e = dict(ox["env"])
    e.update(env or {})
    return subprocess.run([SYS_PY, str(ox["root"] / "sbin" / name), *args], env=e,
                          capture_output=True, text=True, timeout=60)


def master(*args):
    return ("-A", "oxadminmaster", "-P", MASTER_PASS) + args


def configure_ports(ox):
    sys.path.insert(0, str(STANDINS))
    from oxstandin.props import set_properties
    etc = ox["root"] / "etc"
    set_properties(str(etc / "server.properties"),
                   {"com.openexchange.connector.networkListenerPort": str(ox["http_port"])})
    set_properties(str(etc / "rmi.properties"), {"com.openexchange.rmi.port": str(ox["rmi_port"])})


def oxinstaller_args(mariadb, route, dbpass=DB_PASS):
    return ("--no-license", "--servername=oxserver", "--configdb-readhost=127.0.0.1",
            "--configdb-writehost=127.0.0.1", "--configdb-readport=%d" % mariadb["port"],
            "--configdb-writeport=%d" % mariadb["port"], "--configdb-user=openexchange",
            "--configdb-pass=%s" % dbpass, "--master-pass=%s" % MASTER_PASS, "--jkroute=%s" % route,
            "--network-listener-host=localhost", "--servermemory", "1024")


def parse_table(text):
    lines = text.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:] if line.strip()]


# --------------------------------------------------------------------------- tests

def test_every_file_says_it_is_a_standin():
    for target, src in layout.files().items():
        assert target.startswith(("/opt/open-xchange/", "/etc/init.d/"))
        assert "STAND-IN" in src.read_text()[:1500], src


def test_the_converter_files_are_stand_ins():
    for target, src in layout.converter_files().items():
        assert target.startswith(("/opt/open-xchange/", "/etc/init.d/"))
        assert "STAND-IN" in src.read_text()[:1500], src
    assert layout.mode(STANDINS / "documentconverter.py") == 0o755


def test_the_converter_answers_with_its_route_and_sets_sticky_sessions(tmp_path):
    """Started by its init script: the guide's page plus its route, a JSESSIONID <id>.<route> for a
    new session only, 404 elsewhere; status 3 once stopped."""
    layout.install(str(tmp_path))
    root = tmp_path / "opt" / "open-xchange"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "server.properties").write_text(
        "com.openexchange.server.backendRoute=DC7\ncom.openexchange.connector.networkListenerHost=localhost\n")
    port = free_port()
    env = {**os.environ, "OX_STANDIN_ROOT": str(root), "OX_STANDIN_PIDFILE": str(tmp_path / "dc.pid"),
           "OX_STANDIN_LOGFILE": str(tmp_path / "dc.log"), "OX_STANDIN_DC_PORT": str(port)}
    init = str(tmp_path / "etc" / "init.d" / "open-xchange-documentconverter-server")
    assert subprocess.run(["sh", init, "start"], env=env, capture_output=True).returncode == 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/documentconverterws")
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 200 and "WebService is running" in body and "Error Code: 0" in body
        assert "Route: DC7" in body and r.getheader("X-OX-Route") == "DC7"
        assert re.match(r"JSESSIONID=\d{19}\.DC7;", r.getheader("Set-Cookie"))
        conn.request("GET", "/documentconverterws", headers={"Cookie": "JSESSIONID=1.DC2"})
        r = conn.getresponse()
        r.read()
        assert r.getheader("Set-Cookie") is None
        conn.request("GET", "/other")
        r = conn.getresponse()
        r.read()
        assert r.status == 404
    finally:
        subprocess.run(["sh", init, "stop"], env=env, capture_output=True)
    assert subprocess.run(["sh", init, "status"], env=env, capture_output=True).returncode == 3


def test_argument_errors(ox):
    r = tool(ox, "registerdatabase")
    assert r.returncode == 104
    assert 'Error: Option(s) "name,dbpasswd,master" missing' in r.stderr
    assert "database could not be registered: " in r.stderr
    assert "Usage: registerdatabase" in r.stderr

    r = tool(ox, "registerserver", "-n", "x", "--bogus")
    assert r.returncode == 111
    assert "Error: Unrecognized options on the command line: Unknown option '--bogus'" in r.stderr

    r = tool(ox, "registerfilestore", "-Z")
    assert r.returncode == 111

    r = tool(ox, "oxinstaller", "--no-license", "--bogus-option=1")
    assert r.returncode == 1
    assert "oxinstaller: unrecognized option '--bogus-option'" in r.stderr

    r = tool(ox, "oxinstaller", "--servername=x")
    assert r.returncode == 1
    assert "--no-license" in r.stderr and "--configdb-pass" in r.stderr

    r = tool(ox, "initconfigdb", "--configdb-user=openexchange")
    assert r.returncode == 1
    assert "--configdb-pass" in r.stderr

    r = tool(ox, "registerdatabase", *master("-n", "x", "-p", "y", "-m", "false"))
    assert r.returncode == 104
    assert "master id must be set if this database isn't the master" in r.stderr


def test_clts_refused_without_admin_daemon(ox):
    r = tool(ox, "listserver", *master())
    assert r.returncode == 105
    assert "Connection refused to host: 127.0.0.1" in r.stderr


def test_initconfigdb(ox, mariadb):
    common = configdb_args(mariadb)
    root_sql(mariadb, "DROP DATABASE IF EXISTS configdb")    # another test's, in the shared mariadbd
    r = tool(ox, "initconfigdb", *common, "-a", "--mysql-root-user=root", "--mysql-root-passwd=")
    assert r.returncode == 0, r.stderr
    r = tool(ox, "initconfigdb", *common)
    assert r.returncode == 1 and "database exists" in r.stderr
    r = tool(ox, "initconfigdb", *common, "-i")
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr and "dropping" in r.stderr


def test_oxinstaller_writes_properties_idempotently(ox, mariadb):
    etc = ox["root"] / "etc"
    r = tool(ox, "oxinstaller", *oxinstaller_args(mariadb, "OX9"))
    assert r.returncode == 0, r.stderr
    r = tool(ox, "oxinstaller", *oxinstaller_args(mariadb, "OX1"))
    assert r.returncode == 0, r.stderr
    server = (etc / "server.properties").read_text()
    assert server.count("com.openexchange.server.backendRoute=") == 1
    assert "com.openexchange.server.backendRoute=OX1" in server
    cdb = (etc / "configdb.properties").read_text()
    assert "writeUrl=jdbc:mysql://127.0.0.1:%d/configdb" % mariadb["port"] in cdb
    assert "readUrl=jdbc:mysql://127.0.0.1:%d/configdb" % mariadb["port"] in cdb
    assert "writeProperty.1=user=openexchange" in cdb and "writeProperty.2=password=%s" % DB_PASS in cdb
    assert "SERVER_NAME=oxserver" in (etc / "system.properties").read_text()
    mpasswd = (etc / "mpasswd").read_text()
    assert "oxadminmaster:" in mpasswd and MASTER_PASS not in mpasswd
    assert oct((etc / "mpasswd").stat().st_mode & 0o777) == "0o600"


def test_middleware_refuses_wrong_credentials(installed):
    ox = installed
    etc = ox["root"] / "etc"
    saved = (etc / "configdb.properties").read_text()
    try:
        (etc / "configdb.properties").write_text(saved.replace("password=%s" % DB_PASS, "password=wrong"))
        r = subprocess.run([ox["init"], "start"], env=ox["env"], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        log = pathlib.Path(ox["env"]["OX_STANDIN_LOGFILE"]).read_text()
        assert "cannot connect to configdb" in log and "refusing to start" in log
        st = subprocess.run([ox["init"], "status"], env=ox["env"], capture_output=True, timeout=30)
        assert st.returncode == 3
        assert wait_port_closed(ox["http_port"], timeout=1)
    finally:
        (etc / "configdb.properties").write_text(saved)


def test_middleware_start_and_registration_chain(installed, mariadb):
    ox = installed
    r = subprocess.run([ox["init"], "start"], env=ox["env"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    assert subprocess.run([ox["init"], "status"], env=ox["env"], capture_output=True).returncode == 0

    # wrong master password / missing credentials
    r = tool(ox, "listserver", "-A", "oxadminmaster", "-P", "nope")
    assert r.returncode == 101 and "Authentication failed" in r.stderr
    r = tool(ox, "listserver")
    assert r.returncode == 104 and 'Options "adminuser, adminpass" missing' in r.stderr

    r = tool(ox, "registerserver", *master("-n", "oxserver"))
    assert (r.returncode, r.stdout) == (0, "server 1 registered\n"), r.stderr
    r = tool(ox, "registerserver", *master("--name", "oxserver"))
    assert r.returncode != 0 and "already exists" in r.stderr

    store = ox["base"] / "filestore"
    r = tool(ox, "registerfilestore", *master("-t", "file:%s" % store, "-s", "1000000", "-x", "1000000"))
    assert (r.returncode, r.stdout) == (0, "filestore 2 registered\n"), r.stderr
    r = tool(ox, "registerfilestore", *master("--storepath=file:%s" % store))
    assert r.returncode != 0 and "already exists" in r.stderr

    # password for -P taken from ADMIN_PASSWORD (the real CLTs' env option)
    r = tool(ox, "registerdatabase", "-A", "oxadminmaster", "-n", "oxdb", "-H", "127.0.0.1:%d" % mariadb["port"],
             "-u", "openexchange", "-p", DB_PASS, "-m", "true", env={"ADMIN_PASSWORD": MASTER_PASS})
    assert (r.returncode, r.stdout) == (0, "database 3 registered\n"), r.stderr
    r = tool(ox, "registerdatabase", *master("--name", "oxdb", "--dbpasswd", DB_PASS, "--master", "true"))
    assert r.returncode != 0 and "Database oxdb already exists" in r.stderr
    r = tool(ox, "registerdatabase", *master("-n", "oxdbr", "-H", "127.0.0.1:%d" % mariadb["port"],
                                             "-p", DB_PASS, "-m", "false", "-M", "99"))
    assert r.returncode != 0 and "99" in r.stderr
    r = tool(ox, "registerdatabase", *master("-n", "oxdbr", "-H", "127.0.0.1:%d" % mariadb["port"],
                                             "-u", "openexchange", "-p", DB_PASS, "-m", "false", "--masterid=3"))
    assert (r.returncode, r.stdout) == (0, "database 4 registered\n"), r.stderr
    # a slave's id is no master
    r = tool(ox, "registerdatabase", *master("-n", "oxdbr2", "-p", DB_PASS, "-m", "false", "-M", "4"))
    assert r.returncode != 0

    # list* output parses (table and --csv)
    servers = parse_table(tool(ox, "listserver", *master()).stdout)
    assert servers == [{"Id": "1", "Name": "oxserver"}]
    stores = parse_table(tool(ox, "listfilestore", *master()).stdout)
    assert stores[0]["id"] == "2" and stores[0]["maxctx"] == "1000000"
    r = tool(ox, "listdatabase", *master())
    assert r.returncode == 0, r.stderr
    dbs = {d["name"]: d for d in parse_table(r.stdout)}
    assert r.stdout.split("\n")[0].split() == ["id", "name", "hostname", "master", "mid", "maxctx", "curctx",
                                               "hlimit", "max", "inital"]
    assert dbs["oxdb"]["id"] == "3" and dbs["oxdb"]["master"] == "true" and dbs["oxdb"]["hostname"] == "127.0.0.1"
    assert dbs["oxdbr"]["id"] == "4" and dbs["oxdbr"]["master"] == "false" and dbs["oxdbr"]["mid"] == "3"
    r = tool(ox, "listdatabase", *master("--csv"))
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {row["display_name"]: row["id"] for row in rows} == {"oxdb": "3", "oxdbr": "4"}
    assert [row["masterid"] for row in rows] == ["0", "3"]
    r = tool(ox, "listdatabase", *master("-s", "oxdbr"))
    assert [d["name"] for d in parse_table(r.stdout)] == ["oxdbr"]

    # context + user; new-user passwords from NEW_USER_PASSWORD
    r = tool(ox, "createcontext", *master("-c", "1", "-N", "localdomain", "-u", "oxadmin", "-d", "Admin User",
                                          "-g", "Admin", "-s", "User", "-e", "oxadmin@localdomain", "-q", "100",
                                          "--access-combination-name", "groupware_premium"),
             env={"NEW_USER_PASSWORD": ADMIN_PASS})
    assert (r.returncode, r.stdout) == (0, "context 1 created\n"), r.stderr
    r = tool(ox, "createuser", "-c", "1", "-A", "oxadmin", "-P", "bad", "-u", "testuser", "-d", "Test User",
             "-g", "Test", "-s", "User", "-p", USER_PASS, "-e", "testuser@localdomain")
    assert r.returncode == 101
    r = tool(ox, "createuser", "-c", "1", "-A", "oxadmin", "-u", "testuser", "-d", "Test User", "-g", "Test",
             "-s", "User", "-e", "testuser@localdomain", "--access-combination-name", "groupware_premium",
             env={"ADMIN_PASSWORD": ADMIN_PASS, "NEW_USER_PASSWORD": USER_PASS})
    assert (r.returncode, r.stdout) == (0, "user 3 in context 1 created\n"), r.stderr
    ctxs = parse_table(tool(ox, "listcontext", *master()).stdout)
    assert ctxs[0]["cid"] == "1" and ctxs[0]["name"] == "localdomain"
    dbs = {d["name"]: d for d in parse_table(tool(ox, "listdatabase", *master()).stdout)}
    assert dbs["oxdb"]["curctx"] == "1"

    # unregister refuses a database in use
    r = tool(ox, "unregisterdatabase", *master("-i", "3"))
    assert r.returncode != 0


def test_middleware_http_and_jsessionid(running):
    ox = running
    conn = http.client.HTTPConnection("127.0.0.1", ox["http_port"], timeout=10)
    conn.request("GET", "/appsuite/api/login?action=login")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200
    cookie = resp.getheader("Set-Cookie")
    m = re.match(r"JSESSIONID=(\d+)\.OX1;", cookie or "")
    assert m, cookie
    assert b'"route": "OX1"' in body and b'"server_name": "oxserver"' in body
    # with a session cookie: no new cookie
    conn.request("GET", "/ajax/login", headers={"Cookie": "JSESSIONID=%s.OX1" % m.group(1)})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200 and resp.getheader("Set-Cookie") is None
    conn.request("GET", "/servlet/axis2;jsessionid=5.OX1/services")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200 and resp.getheader("Set-Cookie") is None
    conn.request("GET", "/not-ox")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    # It dispatches as a servlet container would: the ";" of "..;" goes, then ".." resolves, so this
    # is SOAP to the middleware whatever Apache made of it; raw and dispatched path are recorded.
    raw = "/ajax/..;/servlet//axis2;x/services/OXContextService"
    conn.request("GET", raw, headers={"Cookie": "JSESSIONID=5.OX1"})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    assert resp.status == 200
    assert (answer["raw_path"], answer["path"], answer["soap"]) == (
        raw, "/servlet/axis2/services/OXContextService", True)
    conn.request("GET", "/../ajax")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 400
    # A long poll for the frontend benchmark: X-Lab-Hold delays the answer, by at most 10 s.
    for hold, low, high in (("0.5", 0.5, 2.0), ("nonsense", 0.0, 0.5)):
        started = time.monotonic()
        conn.request("GET", "/realtime/poll", headers={"X-Lab-Hold": hold})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and low <= time.monotonic() - started < high, hold
    conn.close()
    log = pathlib.Path(ox["env"]["OX_STANDIN_LOGFILE"]).read_text()
    assert f'request GET raw={json.dumps(raw)} dispatch="/servlet/axis2/services/OXContextService" soap=yes' in log


def test_middleware_stop(running):
    ox = running
    r = subprocess.run([ox["init"], "stop"], env=ox["env"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([ox["init"], "status"], env=ox["env"], capture_output=True).returncode == 3
    assert wait_port_closed(ox["http_port"]) and wait_port_closed(ox["rmi_port"])
    r = tool(ox, "listdatabase", *master())
    assert r.returncode == 105 and "Connection refused" in r.stderr


def csv_rows(result):
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture
def registered(running, mariadb):
    """A running stand-in middleware with server 1, filestore 2 (1000 MB, 10 contexts),
    database 3 and context 1 (quota 100 MB), in a fresh configdb."""
    ox = running
    steps = [
        ("registerserver", master("-n", "oxserver"), "server 1 registered\n"),
        ("registerfilestore", master("-t", "file:%s" % (ox["base"] / "filestore"), "-s", "1000", "-x", "10"),
         "filestore 2 registered\n"),
        ("registerdatabase", master("-n", "oxdb", "-H", "127.0.0.1:%d" % mariadb["port"], "-u", "openexchange",
                                    "-p", DB_PASS, "-m", "true"), "database 3 registered\n"),
    ]
    for name, args, out in steps:
        r = tool(ox, name, *args)
        assert (r.returncode, r.stdout) == (0, out), r.stderr
    r = tool(ox, "createcontext", *master("-c", "1", "-N", "ctx1", "-u", "oxadmin", "-d", "Admin", "-g", "A",
                                          "-s", "U", "-e", "oxadmin@example.com", "-q", "100"),
             env={"NEW_USER_PASSWORD": ADMIN_PASS})
    assert (r.returncode, r.stdout) == (0, "context 1 created\n"), r.stderr
    return ox


# --------------------------------------------------------------------------- changefilestore, changecontext


def test_the_change_tools_are_installed_stand_ins():
    files = layout.files()
    for name in ("changefilestore", "changecontext"):
        src = files["/opt/open-xchange/sbin/%s" % name]
        assert "STAND-IN" in src.read_text()[:1500] and layout.mode(src) == 0o755, src
    readme = (STANDINS / "README.md").read_text()
    assert "| changefilestore |" in readme and "| changecontext |" in readme


def test_change_tools_argument_errors(ox):
    r = tool(ox, "changefilestore", "-s", "10")
    assert r.returncode == 104
    assert 'Error: Option(s) "id" missing' in r.stderr and "filestore could not be changed: " in r.stderr
    assert "Usage: changefilestore" in r.stderr
    r = tool(ox, "changefilestore", "-i", "2", "--bogus")
    assert r.returncode == 111 and "Unknown option '--bogus'" in r.stderr
    r = tool(ox, "changefilestore", "-i", "two")
    assert r.returncode == 1 and "Ids must be numbers!" in r.stderr
    r = tool(ox, "changecontext", "-q", "10")
    assert r.returncode == 104 and "Either contextid or contextname must be given" in r.stderr
    assert "context could not be changed: " in r.stderr
    r = tool(ox, "changecontext", "-c", "1", "-Z")
    assert r.returncode == 111


def test_change_tools_refused_without_admin_daemon(ox):
    nobody = {"RMI_HOSTNAME": "rmi://127.0.0.1:%d/" % free_port()}  # whatever else runs, nothing listens here
    for name, args in (("changefilestore", ("-i", "2", "-s", "5")), ("changecontext", ("-c", "1", "-q", "5"))):
        r = tool(ox, name, *master(*args), env=nobody)
        assert r.returncode == 105 and "Connection refused" in r.stderr, (name, r.stderr)


def test_changefilestore_changes_only_what_is_given(registered):
    ox = registered
    r = tool(ox, "changefilestore", *master("-i", "2", "-s", "2000"))
    assert (r.returncode, r.stdout) == (0, "filestore 2 changed\n"), r.stderr
    (row,) = csv_rows(tool(ox, "listfilestore", *master("--csv")))
    assert (row["id"], row["size"], row["maxcontexts"]) == ("2", "2000", "10")
    # the long options, and ADMIN_PASSWORD for -P as the product passes it
    r = tool(ox, "changefilestore", "-A", "oxadminmaster", "--id=2", "--maxcontexts", "20",
             env={"ADMIN_PASSWORD": MASTER_PASS})
    assert (r.returncode, r.stdout) == (0, "filestore 2 changed\n"), r.stderr
    (row,) = csv_rows(tool(ox, "listfilestore", *master("--csv")))
    assert (row["size"], row["maxcontexts"], row["uri"]) == ("2000", "20", "file:%s" % (ox["base"] / "filestore"))


def test_changefilestore_refusals(registered):
    ox = registered
    r = tool(ox, "changefilestore", *master("-i", "99", "-s", "5"))
    assert r.returncode == 103 and "No such filestore 99" in r.stderr
    r = tool(ox, "changefilestore", "-A", "oxadminmaster", "-P", "wrong", "-i", "2", "-s", "5")
    assert r.returncode == 101 and "Authentication failed" in r.stderr
    r = tool(ox, "changefilestore", *master("-i", "2", "-x", "-3"))
    assert r.returncode == 103
    (row,) = csv_rows(tool(ox, "listfilestore", *master("--csv")))
    assert row["maxcontexts"] != "-3" and row["size"] != "5"


def test_changecontext_quota_and_mappings(registered):
    ox = registered
    r = tool(ox, "changecontext", *master("-c", "1", "-q", "500"))
    assert (r.returncode, r.stdout) == (0, "context 1 changed\n"), r.stderr
    (row,) = csv_rows(tool(ox, "listcontext", *master("--csv")))
    assert (row["id"], row["max_quota"], row["name"]) == ("1", "500", "ctx1")
    r = tool(ox, "changecontext", "-A", "oxadminmaster", "--contextid=1", "--quota", "-1", "-L", "extra.example",
             env={"ADMIN_PASSWORD": MASTER_PASS})
    assert (r.returncode, r.stdout) == (0, "context 1 changed\n"), r.stderr
    (row,) = csv_rows(tool(ox, "listcontext", *master("--csv")))
    assert row["max_quota"] == "-1" and "extra.example" in row["lmappings"].split(",")
    # found by name; a mapping removed; the quota left alone when -q is not given
    r = tool(ox, "changecontext", *master("-N", "ctx1", "-R", "extra.example"))
    assert (r.returncode, r.stdout) == (0, "context 1 changed\n"), r.stderr
    (row,) = csv_rows(tool(ox, "listcontext", *master("--csv")))
    assert row["max_quota"] == "-1" and "extra.example" not in row["lmappings"].split(",")


def test_changecontext_refusals(registered):
    ox = registered
    r = tool(ox, "changecontext", *master("-c", "9", "-q", "5"))
    assert r.returncode == 102 and "Context 9 does not exist" in r.stderr
    r = tool(ox, "changecontext", "-A", "oxadminmaster", "-P", "wrong", "-c", "1", "-q", "5")
    assert r.returncode == 101
    r = tool(ox, "changecontext", *master("-c", "1", "-q", "-7"))
    assert r.returncode == 103
    r = tool(ox, "changecontext", *master("-c", "1", "-R", "1"))
    assert r.returncode == 103
    (row,) = csv_rows(tool(ox, "listcontext", *master("--csv")))
    assert row["max_quota"] not in ("5", "-7") and "1" in row["lmappings"].split(",")

"""Tests for the LAB STAND-INS of OX's changefilestore and changecontext (lab/standins/).

Same set-up as test_standins.py (whose fixtures this copies): a throwaway mariadbd on
127.0.0.1 with a temp datadir, the stand-ins installed below a temp root (OX_STANDIN_ROOT),
the stand-in middleware started from its init script, and the tools driven as the product
drives them. Only processes started here are stopped; all traffic is loopback.
"""

import csv
import io
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="module")
def ox(tmp_path_factory):
    """Stand-ins installed below a temp root, plus ports for the middleware."""
    base = tmp_path_factory.mktemp("oxroot")
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
    # stop only the middleware this module started (pid from its own pidfile)
    pidfile = base / "open-xchange.pid"
    if pidfile.exists():
        subprocess.run([info["init"], "stop"], env=env, capture_output=True, timeout=30)
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


def tool(ox, name, *args, env=None):
    e = dict(ox["env"])
    e.update(env or {})
    return subprocess.run([SYS_PY, str(ox["root"] / "sbin" / name), *args], env=e,
                          capture_output=True, text=True, timeout=60)


def master(*args):
    return ("-A", "oxadminmaster", "-P", MASTER_PASS) + args


def configure_ports(ox):
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


def csv_rows(result):
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture(scope="module")
def registered(ox, mariadb):
    """A running stand-in middleware with server 1, filestore 2 (1000 MB, 10 contexts),
    database 3 and context 1 (quota 100 MB)."""
    common = ("--configdb-user=openexchange", "--configdb-pass=%s" % DB_PASS, "--configdb-host=127.0.0.1",
              "--configdb-port=%d" % mariadb["port"])
    r = tool(ox, "initconfigdb", *common, "-a", "--mysql-root-user=root", "--mysql-root-passwd=")
    assert r.returncode == 0, r.stderr
    r = tool(ox, "oxinstaller", *oxinstaller_args(mariadb, "OX1"))
    assert r.returncode == 0, r.stderr
    configure_ports(ox)
    r = subprocess.run([ox["init"], "start"], env=ox["env"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
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
    yield ox
    subprocess.run([ox["init"], "stop"], env=ox["env"], capture_output=True, timeout=60)


# --------------------------------------------------------------------------- tests

def test_the_change_tools_are_installed_stand_ins():
    files = layout.files()
    for name in ("changefilestore", "changecontext"):
        src = files["/opt/open-xchange/sbin/%s" % name]
        assert "STAND-IN" in src.read_text()[:1500] and layout.mode(src) == 0o755, src
    readme = (STANDINS / "README.md").read_text()
    assert "| changefilestore |" in readme and "| changecontext |" in readme


def test_argument_errors(ox):
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


def test_refused_without_admin_daemon(ox):
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

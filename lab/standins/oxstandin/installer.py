"""LAB STAND-IN -- NOT PRODUCT CODE.  ``initconfigdb`` and ``oxinstaller``.

The real tools are bash scripts parsing options with GNU getopt; their
option names come from the OX command-line documentation
(documentation/command_line_tools/{database/initconfigdb,configuration/oxinstaller}.md)
and the OXpedia install guides.  Like the real scripts they take passwords
as option values only (``--configdb-pass``, ``--master-pass``,
``--mysql-root-passwd``); see README.md, "Secrets".
"""

import os
import sys

import pymysql

from . import config, configdb
from .props import set_properties


class GetoptError(Exception):
    pass


def getopt_long(prog, args, short_flags, short_args, long_flags, long_args):
    """GNU getopt(1) style parsing: --opt=val, --opt val, -x val, -xval; abbreviations
    of long options are not accepted (keeps it strict).  Returns a list of
    (name, value) in order."""
    out = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            if i + 1 < len(args):
                raise GetoptError("%s: unexpected argument '%s'" % (prog, args[i + 1]))
            break
        if tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            if name in long_args:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise GetoptError("%s: option '--%s' requires an argument" % (prog, name))
                    val = args[i]
                out.append((name, val))
            elif name in long_flags:
                if eq:
                    raise GetoptError("%s: option '--%s' doesn't allow an argument" % (prog, name))
                out.append((name, None))
            else:
                raise GetoptError("%s: unrecognized option '--%s'" % (prog, name))
        elif tok.startswith("-") and len(tok) > 1:
            j = 1
            while j < len(tok):
                ch = tok[j]
                if ch in short_flags:
                    out.append((ch, None))
                    j += 1
                elif ch in short_args:
                    val = tok[j + 1:]
                    if not val:
                        i += 1
                        if i >= len(args):
                            raise GetoptError("%s: option requires an argument -- '%s'" % (prog, ch))
                        val = args[i]
                    out.append((ch, val))
                    break
                else:
                    raise GetoptError("%s: invalid option -- '%s'" % (prog, ch))
        else:
            raise GetoptError("%s: unexpected argument '%s'" % (prog, tok))
        i += 1
    return out


# --- initconfigdb ---------------------------------------------------------------

INITCONFIGDB_LONG_ARGS = ("configdb-user", "configdb-pass", "configdb-host", "configdb-port",
                          "configdb-dbname", "mysql-root-user", "mysql-root-passwd", "addon-sql")


def initconfigdb_usage(out=sys.stderr):
    out.write("""
initconfigdb currently knows the following parameters:

  --configdb-user=openexchange     user name of the configdb user
  --configdb-pass=<password>       password of the configdb user (mandatory)
  --configdb-host=localhost        host the database system runs on
  -p, --configdb-port=3306         port of the database system
  --configdb-dbname=configdb       name of the configdb
  --mysql-root-user=root           SQL root user (only with -a)
  --mysql-root-passwd=<password>   SQL root password (only with -a)
  --addon-sql=<files>              comma separated additional sql files
  -a                               create the SQL admin user (GRANT) using the root account
  -i                               automatically delete the configdb if it exists

""")


def initconfigdb(args):
    prog = "initconfigdb"
    try:
        opts = getopt_long(prog, args, short_flags="aih", short_args="p",
                           long_flags=("help",), long_args=INITCONFIGDB_LONG_ARGS)
    except GetoptError as exc:
        sys.stderr.write("%s\n" % exc)
        initconfigdb_usage()
        return 1
    o = {"configdb-user": "openexchange", "configdb-host": "localhost", "configdb-port": "3306",
         "configdb-dbname": "configdb", "mysql-root-user": "root"}
    flags = set()
    for name, val in opts:
        if name in ("h", "help"):
            initconfigdb_usage(sys.stdout)
            return 0
        if name == "p":
            name = "configdb-port"
        if val is None:
            flags.add(name)
        else:
            o[name] = val
    if not o.get("configdb-pass"):
        initconfigdb_usage()
        sys.stderr.write("ERROR: configdb password not set (--configdb-pass)\n")
        return 1
    try:
        port = int(o["configdb-port"])
    except ValueError:
        sys.stderr.write("ERROR: invalid port: %s\n" % o["configdb-port"])
        return 1
    host, user, password, dbname = o["configdb-host"], o["configdb-user"], o["configdb-pass"], o["configdb-dbname"]

    if "a" in flags:
        try:
            root = configdb.connect(host, port, o["mysql-root-user"], o.get("mysql-root-passwd", ""))
        except pymysql.MySQLError as exc:
            sys.stderr.write("ERROR %s: %s\n" % (exc.args[0], exc.args[-1]))
            return 1
        try:
            with root.cursor() as cur:
                for h in ("%", "localhost"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, h, password))
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, h, password))
                    cur.execute("GRANT %s ON *.* TO %%s@%%s WITH GRANT OPTION" % configdb.OX_PRIVILEGES, (user, h))
            root.commit()
        except pymysql.MySQLError as exc:
            sys.stderr.write("ERROR %s: %s\n" % (exc.args[0], exc.args[-1]))
            return 1
        finally:
            root.close()

    try:
        conn = configdb.connect(host, port, user, password)
    except pymysql.MySQLError as exc:
        sys.stderr.write("ERROR %s: %s\n" % (exc.args[0], exc.args[-1]))
        return 1
    qdb = "`%s`" % dbname.replace("`", "``")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (dbname,))
            exists = cur.fetchone()[0] > 0
            if exists and "i" in flags:
                sys.stderr.write("WARNING: -i given: dropping the existing configdb '%s' on %s:%d "
                                 "-- every registration in it is lost\n" % (dbname, host, port))
                cur.execute("DROP DATABASE %s" % qdb)
            elif exists:
                sys.stderr.write("ERROR 1007 (HY000) at line 1: Can't create database '%s'; database exists\n"
                                 % dbname)
                return 1
            cur.execute("CREATE DATABASE %s DEFAULT CHARACTER SET utf8mb4" % qdb)
            cur.execute("USE %s" % qdb)
            for stmt in configdb.SCHEMA:
                cur.execute(stmt)
            for sqlfile in filter(None, (o.get("addon-sql") or "").split(",")):
                path = sqlfile if os.path.isabs(sqlfile) else os.path.join(
                    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sbin", "mysql", sqlfile)
                with open(path, encoding="utf-8") as fh:
                    for stmt in fh.read().split(";"):
                        if stmt.strip():
                            cur.execute(stmt)
        conn.commit()
    except (pymysql.MySQLError, OSError) as exc:
        sys.stderr.write("ERROR: %s\n" % (exc,))
        return 1
    finally:
        conn.close()
    return 0


# --- oxinstaller ----------------------------------------------------------------

OXINSTALLER_LONG_ARGS = (
    "servername", "imapserver", "smtpserver", "mail-login-src", "mail-server-src",
    "transport-server-src", "servermemory", "clt-memory", "tmpdir-path", "jkroute",
    "maxSession", "sessionDefLifeTime", "add-license", "configdb-user", "configdb-pass",
    "configdb-readhost", "configdb-writehost", "configdb-readport", "configdb-writeport",
    "configdb-dbname", "master-pass", "master-user", "extras-link", "object-link-hostname",
    "name-of-oxcluster", "network-listener-host", "ajp-bind-port",
)
OXINSTALLER_LONG_FLAGS = ("no-license", "disableauth", "help")


def oxinstaller_usage(out=sys.stderr):
    out.write("\noxinstaller currently knows the following parameters:\n\n")
    for name in OXINSTALLER_LONG_ARGS:
        out.write("  --%s=<value>\n" % name)
    for name in OXINSTALLER_LONG_FLAGS:
        out.write("  --%s\n" % name)
    out.write("  -D   debug\n\n")


def oxinstaller(args):
    prog = "oxinstaller"
    try:
        opts = getopt_long(prog, args, short_flags="Dh", short_args="",
                           long_flags=OXINSTALLER_LONG_FLAGS, long_args=OXINSTALLER_LONG_ARGS)
    except GetoptError as exc:
        sys.stderr.write("%s\n" % exc)
        oxinstaller_usage()
        return 1
    o = {"configdb-user": "openexchange", "configdb-readhost": "localhost",
         "configdb-writehost": "localhost", "configdb-readport": "3306", "configdb-writeport": "3306",
         "configdb-dbname": "configdb", "master-user": "oxadminmaster",
         "network-listener-host": "localhost", "servermemory": "1024", "jkroute": "APP1",
         "imapserver": "localhost", "smtpserver": "localhost", "mail-login-src": "login",
         "mail-server-src": "user", "transport-server-src": "user", "ajp-bind-port": "localhost"}
    flags = set()
    for name, val in opts:
        if name in ("h", "help"):
            oxinstaller_usage(sys.stdout)
            return 0
        if val is None:
            flags.add(name)
        else:
            o[name] = val
    errors = []
    if "add-license" not in o and "no-license" not in flags:
        errors.append("Either add license with --add-license=LICENSE-CODE or specify --no-license")
    for required in ("servername", "configdb-pass"):
        if not o.get(required):
            errors.append("parameter --%s is required" % required)
    if "disableauth" not in flags and not o.get("master-pass"):
        errors.append("parameter --master-pass is required (or --disableauth)")
    for port in ("configdb-readport", "configdb-writeport", "servermemory"):
        if not o[port].isdigit():
            errors.append("invalid value for --%s: %s" % (port, o[port]))
    if errors:
        oxinstaller_usage()
        for err in errors:
            sys.stderr.write("ERROR: %s\n" % err)
        return 1

    etc = lambda name: config.etc(name)  # noqa: E731
    dbname = o["configdb-dbname"]
    try:
        os.makedirs(os.path.dirname(etc("x")), exist_ok=True)
        set_properties(etc("system.properties"), {"SERVER_NAME": o["servername"]})
        set_properties(etc("configdb.properties"), {
            "readDriverClass": "com.mysql.jdbc.Driver",
            "readUrl": "jdbc:mysql://%s:%s/%s" % (o["configdb-readhost"], o["configdb-readport"], dbname),
            "readProperty.1": "user=%s" % o["configdb-user"],
            "readProperty.2": "password=%s" % o["configdb-pass"],
            "writeDriverClass": "com.mysql.jdbc.Driver",
            "writeUrl": "jdbc:mysql://%s:%s/%s" % (o["configdb-writehost"], o["configdb-writeport"], dbname),
            "writeProperty.1": "user=%s" % o["configdb-user"],
            "writeProperty.2": "password=%s" % o["configdb-pass"],
        }, mode=0o640)
        listener = o["network-listener-host"]
        server_props = {
            "com.openexchange.server.backendRoute": o["jkroute"],
            "com.openexchange.connector.networkListenerHost": listener,
            "com.openexchange.connector.networkListenerPort": "8009",
        }
        if o.get("object-link-hostname"):
            server_props["object_link"] = "http://%s/#m=[module]&i=[object]&f=[folder]" % o["object-link-hostname"]
        set_properties(etc("server.properties"), server_props)
        set_properties(etc("rmi.properties"), {"com.openexchange.rmi.host": "localhost",
                                               "com.openexchange.rmi.port": "1099"})
        set_properties(etc("mail.properties"), {
            "com.openexchange.mail.loginSource": o["mail-login-src"],
            "com.openexchange.mail.mailServerSource": o["mail-server-src"],
            "com.openexchange.mail.transportServerSource": o["transport-server-src"],
            "com.openexchange.mail.mailServer": o["imapserver"],
            "com.openexchange.mail.transportServer": o["smtpserver"],
        })
        set_properties(etc("ox-scriptconf.sh"), {
            "JAVA_XTRAOPTS": '"-Xmx%sM -server -Djava.awt.headless=true"' % o["servermemory"]})
        if o.get("name-of-oxcluster"):
            set_properties(etc("hazelcast.properties"),
                           {"com.openexchange.hazelcast.group.name": o["name-of-oxcluster"]})
        set_properties(etc("AdminDaemon.properties"), {
            "MASTER_AUTHENTICATION_DISABLED": "true" if "disableauth" in flags else "false"})
        if o.get("master-pass"):
            path = etc("mpasswd")
            tmp = path + ".tmp%d" % os.getpid()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("# LAB STAND-IN master credentials written by the oxinstaller stand-in\n")
                fh.write("%s:%s\n" % (o["master-user"], config.hash_password(o["master-pass"])))
            os.replace(tmp, path)
        if o.get("add-license"):
            set_properties(etc("licensekeys.properties"), {"com.openexchange.licensekey": o["add-license"]},
                           mode=0o640)
    except OSError as exc:
        sys.stderr.write("ERROR: %s\n" % exc)
        return 1
    return 0

"""LAB STAND-IN -- NOT PRODUCT CODE.  The OX admin CLTs (register*, list*,
unregister*, changefilestore, createcontext, changecontext, createuser, listcontext).

Each tool: parse options like the real one, require the admin daemon (the
stand-in middleware) to answer on the RMI port, authenticate against
mpasswd (master) or the context admin, then act on the real configdb named
in configdb.properties.
"""

import os
import urllib.parse

import pymysql

from . import config, configdb
from .clt import (AdminParser, CltError, Option, add_credentials, check_master_auth,
                  connect_admin_daemon, credentials, do_csv_output, do_output, run,
                  SYSEXIT_INVALID_CREDENTIALS, SYSEXIT_INVALID_DATA, SYSEXIT_MISSING_OPTION,
                  SYSEXIT_NO_SUCH_CONTEXT, SYSEXIT_SERVERSTORAGE_ERROR)

DEFAULT_DRIVER = "com.mysql.jdbc.Driver"
DB_URL_PARAMS = ("useUnicode=true&characterEncoding=UTF-8&autoReconnect=false&useServerPrepStmts=false"
                 "&useTimezone=true&serverTimezone=UTC&connectTimeout=15000&socketTimeout=15000")


class _Db:
    """configdb connection as a context manager; storage errors -> StorageException style."""

    def __enter__(self):
        try:
            self.conn = configdb.connect_configdb("write")
        except (pymysql.MySQLError, FileNotFoundError, ValueError) as exc:
            raise CltError("Error: %s" % (exc,), SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
        return self.conn.cursor()

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()
        if isinstance(exc, pymysql.MySQLError):
            raise CltError("%s" % (exc.args[-1],), SYSEXIT_SERVERSTORAGE_ERROR, kind="server") from exc
        return False


def _int(parser, long, default=None):
    val = parser.get(long)
    if val is None:
        return default
    try:
        return int(val)
    except ValueError:
        raise CltError("Ids must be numbers!", 1, kind="invalid")


def _bool(parser, long, default=None):
    val = parser.get(long)
    if val is None:
        return default
    return val.strip().lower() == "true"   # Boolean.parseBoolean


def _like(pattern):
    if not pattern or pattern == "*":
        return "%"
    return pattern.replace("%", r"\%").replace("_", r"\_").replace("*", "%")


def _begin(parser, master=True):
    connect_admin_daemon()
    if master:
        check_master_auth(parser)


# --- server -----------------------------------------------------------------------

def _find_by_id_or_name(p, cur, kind, table, id_column):
    """The id of the `kind` named by -i/--id or -n/--name (the unregister tools); CltError if none."""
    if p.get("id") is not None:
        cur.execute("SELECT %s FROM %s WHERE %s = %%s" % (id_column, table, id_column), (_int(p, "id"),))
    else:
        cur.execute("SELECT %s FROM %s WHERE name = %%s" % (id_column, table), (p.get("name"),))
    row = cur.fetchone()
    if not row:
        raise CltError("No such %s %s" % (kind, p.get("id") or p.get("name")), SYSEXIT_INVALID_DATA, kind=kind)
    return row[0]


def registerserver(args):
    p = AdminParser("registerserver")
    add_credentials(p)
    p.add(Option("n", "name", "The name of the server", needed=True, argdesc="name"))

    def body(p):
        _begin(p)
        name = p.get("name")
        with _Db() as cur:
            cur.execute("SELECT server_id FROM server WHERE name = %s", (name,))
            if cur.fetchone():
                raise CltError("Server %s already exists" % name, SYSEXIT_INVALID_DATA, kind="server")
            sid = configdb.next_id(cur)
            cur.execute("INSERT INTO server (server_id, name) VALUES (%s, %s)", (sid, name))
        print("server %d registered" % sid)
    return run("server", "registered", p, args, body)


def unregisterserver(args):
    p = AdminParser("unregisterserver")
    add_credentials(p)
    p.add(Option("i", "id", "The id of the server which should be deleted", argdesc="id"))
    p.add(Option("n", "name", "The name of the server which should be deleted", argdesc="name"))

    def body(p):
        if p.get("id") is None and p.get("name") is None:
            raise CltError("Either servername or serverid must be given", SYSEXIT_MISSING_OPTION, usage=True)
        _begin(p)
        with _Db() as cur:
            sid = _find_by_id_or_name(p, cur, "server", "server", "server_id")
            cur.execute("SELECT COUNT(*) FROM context_server2db_pool WHERE server_id = %s", (sid,))
            if cur.fetchone()[0]:
                raise CltError("Server %d is still in use by contexts" % sid, SYSEXIT_INVALID_DATA, kind="server")
            cur.execute("DELETE FROM server WHERE server_id = %s", (sid,))
        print("server %d unregistered" % sid)
    return run("server", "unregistered", p, args, body)


def listserver(args):
    p = AdminParser("listserver")
    add_credentials(p)
    p.add(Option("s", "searchpattern", "Search/List pattern!", argdesc="searchpattern"))
    p.add(Option(None, "csv", "Format output to csv", hasarg=False))

    def body(p):
        _begin(p)
        with _Db() as cur:
            cur.execute("SELECT server_id, name FROM server WHERE name LIKE %s OR server_id LIKE %s "
                        "ORDER BY server_id", (_like(p.get("searchpattern")),) * 2)
            rows = [[str(r[0]), r[1]] for r in cur.fetchall()]
        if p.get("csv"):
            do_csv_output(["id", "name"], rows)
        else:
            do_output(["r", "l"], ["Id", "Name"], rows)
    return run("servers", "listed", p, args, body)


# --- filestore --------------------------------------------------------------------

def registerfilestore(args):
    p = AdminParser("registerfilestore")
    add_credentials(p)
    p.add(Option("t", "storepath", "Path to store filestore contents in URI format e.g. file:/tmp/filestore",
                 needed=True, argdesc="storepath"))
    p.add(Option("s", "storesize", "The maximum size of the filestore in MB. Default: 1000", argdesc="storesize"))
    p.add(Option("x", "maxcontexts", "the maximum number of contexts. Default: 5000", argdesc="maxcontexts"))

    def body(p):
        size = _int(p, "storesize", 1000)
        maxctx = _int(p, "maxcontexts", 5000)
        uri = p.get("storepath")
        parsed = urllib.parse.urlsplit(uri)
        if not parsed.scheme:
            raise CltError("Invalid filestore URI: %s" % uri, SYSEXIT_INVALID_DATA, kind="server")
        _begin(p)
        if parsed.scheme == "file":
            path = urllib.parse.unquote(parsed.path)
            if not os.path.isdir(path):
                try:
                    os.makedirs(path, exist_ok=True)
                except OSError:
                    raise CltError("Unable to create directory %s for filestore" % path,
                                   SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
        with _Db() as cur:
            cur.execute("SELECT id FROM filestore WHERE uri = %s", (uri,))
            if cur.fetchone():
                raise CltError("Filestore %s already exists" % uri, SYSEXIT_INVALID_DATA, kind="server")
            fid = configdb.next_id(cur)
            cur.execute("INSERT INTO filestore (id, uri, size, max_context) VALUES (%s, %s, %s, %s)",
                        (fid, uri, size * 1024 * 1024, maxctx))
        print("filestore %d registered" % fid)
    return run("filestore", "registered", p, args, body)


def unregisterfilestore(args):
    p = AdminParser("unregisterfilestore")
    add_credentials(p)
    p.add(Option("i", "id", "The id of the filestore which should be unregistered", needed=True, argdesc="id"))

    def body(p):
        fid = _int(p, "id")
        _begin(p)
        with _Db() as cur:
            cur.execute("SELECT id FROM filestore WHERE id = %s", (fid,))
            if not cur.fetchone():
                raise CltError("No such filestore %d" % fid, SYSEXIT_INVALID_DATA, kind="server")
            cur.execute("SELECT COUNT(*) FROM context WHERE filestore_id = %s", (fid,))
            if cur.fetchone()[0]:
                raise CltError("Filestore %d is still in use by contexts" % fid, SYSEXIT_INVALID_DATA,
                               kind="server")
            cur.execute("DELETE FROM contexts_per_filestore WHERE filestore_id = %s", (fid,))
            cur.execute("DELETE FROM filestore WHERE id = %s", (fid,))
        print("filestore %d unregistered" % fid)
    return run("filestore", "unregistered", p, args, body)


def changefilestore(args):
    """changefilestore -i <id> [-t <uri>] [-s <MB>] [-x <max contexts>]: what is given is changed."""
    p = AdminParser("changefilestore")
    add_credentials(p)
    p.add(Option("i", "id", "The id of the filestore which should be changed", needed=True, argdesc="id"))
    p.add(Option("t", "storepath", "Path to store filestore contents in URI format e.g. file:/tmp/filestore",
                 argdesc="storepath"))
    p.add(Option("s", "storesize", "The maximum size of the filestore in MB", argdesc="storesize"))
    p.add(Option("x", "maxcontexts", "the maximum number of contexts", argdesc="maxcontexts"))

    def body(p):
        fid = _int(p, "id")
        size = _int(p, "storesize")
        maxctx = _int(p, "maxcontexts")
        uri = p.get("storepath")
        if size is not None and size < 0:
            raise CltError("Invalid store size: %d" % size, SYSEXIT_INVALID_DATA, kind="server")
        if maxctx is not None and maxctx < 0:
            raise CltError("Invalid max contexts: %d" % maxctx, SYSEXIT_INVALID_DATA, kind="server")
        if uri is not None and not urllib.parse.urlsplit(uri).scheme:
            raise CltError("Invalid filestore URI: %s" % uri, SYSEXIT_INVALID_DATA, kind="server")
        _begin(p)
        with _Db() as cur:
            cur.execute("SELECT id FROM filestore WHERE id = %s", (fid,))
            if not cur.fetchone():
                raise CltError("No such filestore %d" % fid, SYSEXIT_INVALID_DATA, kind="server")
            if uri is not None:
                cur.execute("SELECT id FROM filestore WHERE uri = %s AND id <> %s", (uri, fid))
                if cur.fetchone():
                    raise CltError("Filestore %s already exists" % uri, SYSEXIT_INVALID_DATA, kind="server")
                cur.execute("UPDATE filestore SET uri = %s WHERE id = %s", (uri, fid))
            if size is not None:
                cur.execute("UPDATE filestore SET size = %s WHERE id = %s", (size * 1024 * 1024, fid))
            if maxctx is not None:
                cur.execute("UPDATE filestore SET max_context = %s WHERE id = %s", (maxctx, fid))
        print("filestore %d changed" % fid)
    return run("filestore", "changed", p, args, body)


def listfilestore(args):
    p = AdminParser("listfilestore")
    add_credentials(p)
    p.add(Option("s", "searchpattern", "Search/List pattern!", argdesc="searchpattern"))
    p.add(Option(None, "csv", "Format output to csv", hasarg=False))
    p.add(Option(None, "omitUsage", "Whether to omit usage information", hasarg=False))

    def body(p):
        _begin(p)
        with _Db() as cur:
            cur.execute("SELECT f.id, f.uri, f.size, f.max_context, "
                        "(SELECT COUNT(*) FROM context c WHERE c.filestore_id = f.id) "
                        "FROM filestore f WHERE f.uri LIKE %s OR f.id LIKE %s ORDER BY f.id",
                        (_like(p.get("searchpattern")),) * 2)
            rows = [[str(r[0]), r[1], str(int(r[2]) // (1024 * 1024)), "0", str(r[3]), str(r[4])]
                    for r in cur.fetchall()]
        if p.get("csv"):
            do_csv_output(["id", "uri", "size", "used", "maxcontexts", "currentcontexts"], rows)
        else:
            do_output(["3r", "35l", "7r", "7r", "7r", "7r"],
                      ["id", "path", "size", "used", "maxctx", "curctx"], rows)
    return run("filestores", "listed", p, args, body)


# --- database ---------------------------------------------------------------------

def registerdatabase(args):
    p = AdminParser("registerdatabase")
    add_credentials(p)
    p.add(Option("n", "name", "Name of the database", needed=True, argdesc="name"))
    p.add(Option("H", "hostname", "Hostname of the server", argdesc="hostname"))
    p.add(Option("u", "dbuser", "Name of the user for the database", argdesc="dbuser"))
    p.add(Option("d", "dbdriver", "The driver to be used for the database. Default: " + DEFAULT_DRIVER,
                 argdesc="dbdriver"))
    p.add(Option("p", "dbpasswd", "Password for the database", needed=True, argdesc="dbpasswd"))
    p.add(Option("m", "master", "Set this if the registered database is the master", needed=True,
                 argdesc="true/false"))
    p.add(Option("M", "masterid", "If this database isn't the master give the id of the master here",
                 argdesc="masterid"))
    p.add(Option("x", "maxunit", "The maximum number of contexts in this database.. Default: 1000",
                 argdesc="maxunit"))
    p.add(Option("l", "poolhardlimit", "Db pool hardlimit. Default: true", argdesc="true/false"))
    p.add(Option("o", "poolinitial", "Db pool initial. Default: 0", argdesc="poolinitial"))
    p.add(Option("a", "poolmax", "Db pool max. Default: 100", argdesc="poolmax"))
    p.add(Option(None, "create-userdb-schemas", "Whether to pre-create userdb schemas", hasarg=False))
    p.add(Option(None, "userdb-schema-count", "Number of userdb schemas to pre-create",
                 argdesc="userdb-schema-count"))

    def body(p):
        name = p.get("name")
        is_master = _bool(p, "master")
        master_id = p.get("masterid")
        if is_master is False and master_id is None:
            raise CltError("master id must be set if this database isn't the master", SYSEXIT_MISSING_OPTION,
                           usage=True)
        if is_master and master_id is not None:
            raise CltError("Master ID can only be set if this is a slave.", SYSEXIT_INVALID_DATA, kind="server")
        master_id = _int(p, "masterid")
        hardlimit = p.get("poolhardlimit", "true")
        if hardlimit not in ("true", "false"):
            raise CltError("Only true or false are allowed for poolhardlimit", SYSEXIT_INVALID_DATA, kind="server")
        maxunit = _int(p, "maxunit", 1000)
        poolinitial = _int(p, "poolinitial", 0)
        poolmax = _int(p, "poolmax", 100)
        hostname = p.get("hostname") or "localhost"
        url = "jdbc:mysql://%s/?%s" % (hostname, DB_URL_PARAMS)
        _begin(p)
        with _Db() as cur:
            cur.execute("SELECT db_pool_id FROM db_pool WHERE name = %s", (name,))
            if cur.fetchone():
                raise CltError("Database %s already exists" % name, SYSEXIT_INVALID_DATA, kind="server")
            if not is_master:
                cur.execute("SELECT cluster_id FROM db_cluster WHERE write_db_pool_id = %s", (master_id,))
                row = cur.fetchone()
                if not row:
                    raise CltError("No such master database with identifier %d" % master_id,
                                   SYSEXIT_INVALID_DATA, kind="server")
                cluster_id = row[0]
            dbid = configdb.next_id(cur)
            cur.execute("INSERT INTO db_pool (db_pool_id, url, driver, login, password, hardlimit, max, initial, "
                        "name) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        (dbid, url, p.get("dbdriver") or DEFAULT_DRIVER, p.get("dbuser") or "openexchange",
                         p.get("dbpasswd"), 1 if hardlimit == "true" else 0, poolmax, poolinitial, name))
            if is_master:
                cur.execute("SELECT COALESCE(MAX(cluster_id), 0) + 1 FROM db_cluster")
                cluster_id = cur.fetchone()[0]
                cur.execute("INSERT INTO db_cluster (cluster_id, read_db_pool_id, write_db_pool_id, weight, "
                            "max_units) VALUES (%s, 0, %s, 100, %s)", (cluster_id, dbid, maxunit))
            else:
                cur.execute("UPDATE db_cluster SET read_db_pool_id = %s WHERE cluster_id = %s", (dbid, cluster_id))
        print("database %d registered" % dbid)
    return run("database", "registered", p, args, body)


def unregisterdatabase(args):
    p = AdminParser("unregisterdatabase")
    add_credentials(p)
    p.add(Option("i", "id", "The id of the database.", argdesc="id"))
    p.add(Option("n", "name", "Name of the database", argdesc="name"))

    def body(p):
        if p.get("id") is None and p.get("name") is None:
            raise CltError("Either databasename or databaseid must be given", SYSEXIT_MISSING_OPTION, usage=True)
        _begin(p)
        with _Db() as cur:
            dbid = _find_by_id_or_name(p, cur, "database", "db_pool", "db_pool_id")
            cur.execute("SELECT COUNT(*) FROM context_server2db_pool WHERE write_db_pool_id = %s "
                        "OR read_db_pool_id = %s", (dbid, dbid))
            if cur.fetchone()[0]:
                raise CltError("Database %d is still in use by contexts" % dbid, SYSEXIT_INVALID_DATA,
                               kind="server")
            cur.execute("SELECT cluster_id, read_db_pool_id FROM db_cluster WHERE write_db_pool_id = %s", (dbid,))
            master_row = cur.fetchone()
            if master_row:
                if master_row[1]:
                    raise CltError("Database %d still has a slave (id %d); unregister that first"
                                   % (dbid, master_row[1]), SYSEXIT_INVALID_DATA, kind="server")
                cur.execute("DELETE FROM db_cluster WHERE cluster_id = %s", (master_row[0],))
            else:
                cur.execute("UPDATE db_cluster SET read_db_pool_id = 0 WHERE read_db_pool_id = %s", (dbid,))
            cur.execute("DELETE FROM contexts_per_dbpool WHERE db_pool_id = %s", (dbid,))
            cur.execute("DELETE FROM contexts_per_dbschema WHERE db_pool_id = %s", (dbid,))
            cur.execute("DELETE FROM db_pool WHERE db_pool_id = %s", (dbid,))
        print("database %d unregistered" % dbid)
    return run("database", "unregistered", p, args, body)


def _database_rows(cur, pattern):
    cur.execute(
        "SELECT p.db_pool_id, p.name, p.url, p.login, p.password, p.driver, p.hardlimit, p.max, p.initial, "
        "wc.cluster_id, wc.read_db_pool_id, wc.max_units, rc.write_db_pool_id, "
        "(SELECT COUNT(*) FROM context_server2db_pool s WHERE s.write_db_pool_id = p.db_pool_id) "
        "FROM db_pool p "
        "LEFT JOIN db_cluster wc ON wc.write_db_pool_id = p.db_pool_id "
        "LEFT JOIN db_cluster rc ON rc.read_db_pool_id = p.db_pool_id AND rc.read_db_pool_id <> 0 "
        "WHERE p.name LIKE %s OR p.db_pool_id LIKE %s ORDER BY p.db_pool_id", (_like(pattern),) * 2)
    result = []
    for (dbid, name, url, login, password, driver, hard, pmax, pinit,
         wcluster, read_id, max_units, rmaster, cur_ctx) in cur.fetchall():
        master = wcluster is not None
        result.append({
            "id": str(dbid), "name": name, "url": url, "login": login, "password": password,
            "driver": driver, "hardlimit": hard, "poolmax": pmax, "poolinitial": pinit,
            "master": "true" if master else "false",
            "masterid": "0" if master else str(rmaster or 0),
            "maxunits": str(max_units if master else 0),
            "curctx": str(cur_ctx), "read_id": str(read_id) if master else None,
        })
    return result


def listdatabase(args):
    p = AdminParser("listdatabase")
    add_credentials(p)
    p.add(Option("s", "searchpattern", "Search/List pattern!", argdesc="searchpattern"))
    p.add(Option(None, "csv", "Format output to csv", hasarg=False))

    def body(p):
        _begin(p)
        with _Db() as cur:
            dbs = _database_rows(cur, p.get("searchpattern"))
        if p.get("csv"):
            rows = [[d["id"], d["name"], d["url"], d["master"], d["masterid"], d["maxunits"], d["curctx"],
                     str(d["hardlimit"]), str(d["poolmax"]), str(d["poolinitial"]), d["login"], d["password"],
                     d["driver"], d["read_id"], None] for d in dbs]
            do_csv_output(["id", "display_name", "url", "master", "masterid", "maxUnits", "currentunits",
                           "poolHardLimit", "poolMax", "poolInitial", "login", "password", "driver",
                           "read_id", "scheme"], rows)
        else:
            rows = []
            for d in dbs:
                host = urllib.parse.urlsplit(d["url"][len("jdbc:"):]).hostname
                rows.append([d["id"], d["name"], host, d["master"], d["masterid"], d["maxunits"], d["curctx"],
                             "true" if (d["hardlimit"] or 0) > 0 else "false", str(d["poolmax"]),
                             str(d["poolinitial"])])
            do_output(["r", "l", "l", "l", "r", "r", "r", "l", "r", "r"],
                      ["id", "name", "hostname", "master", "mid", "maxctx", "curctx", "hlimit", "max", "inital"],
                      rows)
    return run("databases", "listed", p, args, body)


# --- contexts and users -----------------------------------------------------------

USER_OPTIONS = [
    ("u", "username", "Username of the user"),
    ("d", "displayname", "Display name of the user"),
    ("g", "givenname", "Given name for the user"),
    ("s", "surname", "Sur name for the user"),
    ("p", "password", "Password for the user"),
    ("e", "email", "Primary mail address"),
    ("l", "language", "Language for the user (de_DE,en_US)"),
    ("t", "timezone", "Timezone of the user (Europe/Berlin)"),
]
# Extended options the real createuser/createcontext accept; taken and ignored here.
EXTENDED_USER_LONG = ("access-combination-name", "imaplogin", "imapserver", "smtpserver", "department",
                      "company", "aliases", "mailenabled", "gui_spam_filter_capabilities_enabled",
                      "access-denied-portal", "primary-account-name", "personal", "capabilities-to-add",
                      "capabilities-to-remove", "quota", "gabMode", "csv-import", "default-folder-mode",
                      "folder-tree", "sur_name", "given_name", "display_name", "addguipreferences",
                      "removeguipreferences", "username-is-mail", "drive-user-folder-mode")


def _add_user_options(p, skip=()):
    for short, long, desc in USER_OPTIONS:
        if long not in skip:
            p.add(Option(short, long, desc, argdesc=long))
    for long in EXTENDED_USER_LONG:
        if long not in skip:
            p.add(Option(None, long, long, argdesc=long))


def _new_user_password(p):
    pw = p.get("password")
    if pw is None:
        pw = os.environ.get("NEW_USER_PASSWORD") or None
    return pw


def _require(p, names):
    missing = [n for n in names if p.get(n) is None]
    if missing:
        raise CltError('Option(s) "%s" missing' % ",".join(missing), SYSEXIT_MISSING_OPTION, usage=True)


def _pool_conn(cur, pool_id, database=None):
    cur.execute("SELECT url, login, password FROM db_pool WHERE db_pool_id = %s", (pool_id,))
    url, login, password = cur.fetchone()
    host, port, _ = config.parse_jdbc_url(url)
    return configdb.connect(host, port, login, password, database)


def createcontext(args):
    p = AdminParser("createcontext")
    add_credentials(p)
    p.add(Option("c", "contextid", "The id of the context", argdesc="contextid"))
    p.add(Option("q", "quota", "Context wide filestore quota in MB.", argdesc="quota"))
    p.add(Option("N", "contextname", "context name", argdesc="contextname"))
    p.add(Option("L", "addmapping", "Add login mappings separated by \",\"", argdesc="addmapping"))
    p.add(Option("F", "destination-store-id", "The file store identifier", argdesc="destination-store-id"))
    p.add(Option("D", "destination-database-id", "The database identifier", argdesc="destination-database-id"))
    _add_user_options(p, skip=("quota",))

    def body(p):
        _require(p, ["username", "displayname", "givenname", "surname", "email", "quota"])
        password = _new_user_password(p)
        if password is None:
            raise CltError('Option(s) "password" missing', SYSEXIT_MISSING_OPTION, usage=True)
        quota = _int(p, "quota")
        cid = _int(p, "contextid")
        _begin(p)
        server_name = config.read_properties_safe("system.properties").get("SERVER_NAME", "")
        with _Db() as cur:
            cur.execute("SELECT server_id FROM server WHERE name = %s", (server_name,))
            row = cur.fetchone()
            if not row:
                raise CltError("Server '%s' not found in configdb (registerserver first)" % server_name,
                               SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
            server_id = row[0]
            if cid is None:
                cur.execute("SELECT COALESCE(MAX(cid), 0) + 1 FROM context")
                cid = cur.fetchone()[0]
            cur.execute("SELECT cid FROM context WHERE cid = %s", (cid,))
            if cur.fetchone():
                raise CltError("Context %d already exists!" % cid, 1, kind="server")
            name = p.get("contextname") or str(cid)
            mappings = [str(cid)] + ([name] if name != str(cid) else [])
            mappings += [m for m in (p.get("addmapping") or "").split(",") if m and m not in mappings]
            for m in mappings:
                cur.execute("SELECT cid FROM login2context WHERE login_info = %s", (m,))
                if cur.fetchone():
                    raise CltError("Cannot map '%s' to context %d. It already exists." % (m, cid),
                                   SYSEXIT_INVALID_DATA, kind="server")
            # filestore: the given one or the least used with room
            fid = _int(p, "destination-store-id")
            cur.execute("SELECT f.id FROM filestore f WHERE (%s IS NULL OR f.id = %s) AND f.max_context > "
                        "(SELECT COUNT(*) FROM context c WHERE c.filestore_id = f.id) "
                        "ORDER BY (SELECT COUNT(*) FROM context c WHERE c.filestore_id = f.id), f.id LIMIT 1",
                        (fid, fid))
            row = cur.fetchone()
            if not row:
                raise CltError("No usable or suitable filestore found", SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
            fid = row[0]
            dbid = _int(p, "destination-database-id")
            cur.execute("SELECT c.write_db_pool_id, c.read_db_pool_id FROM db_cluster c "
                        "WHERE (%s IS NULL OR c.write_db_pool_id = %s) AND c.max_units <> 0 AND "
                        "(c.max_units < 0 OR c.max_units > (SELECT COUNT(*) FROM context_server2db_pool s "
                        "WHERE s.write_db_pool_id = c.write_db_pool_id)) ORDER BY c.write_db_pool_id LIMIT 1",
                        (dbid, dbid))
            row = cur.fetchone()
            if not row:
                raise CltError("The maximum number of contexts in every database cluster has been reached. "
                               "Use register-, create- or change database to resolve the problem.",
                               SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
            write_id, read_id = row
            cur.execute("SELECT schemaname FROM contexts_per_dbschema WHERE db_pool_id = %s "
                        "ORDER BY count LIMIT 1", (write_id,))
            row = cur.fetchone()
            if row:
                schema = row[0]
            else:
                cur.execute("SELECT name FROM db_pool WHERE db_pool_id = %s", (write_id,))
                schema = "%s_%d" % (cur.fetchone()[0], configdb.next_id(cur))
            # the user data schema lives on the registered database master
            try:
                uconn = _pool_conn(cur, write_id)
            except pymysql.MySQLError as exc:
                raise CltError("Unable to connect to database %d: %s" % (write_id, exc.args[-1]),
                               SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
            try:
                with uconn.cursor() as ucur:
                    ucur.execute("CREATE DATABASE IF NOT EXISTS `%s` DEFAULT CHARACTER SET utf8mb4" % schema)
                    ucur.execute("USE `%s`" % schema)
                    for stmt in configdb.USER_SCHEMA:
                        ucur.execute(stmt)
                    ucur.execute("DELETE FROM user WHERE cid = %s", (cid,))
                    ucur.execute("DELETE FROM login2user WHERE cid = %s", (cid,))
                    ucur.execute("INSERT INTO user (cid, id, mail, displayName, givenName, surName, userPassword, "
                                 "passwordMech, preferredLanguage, timeZone, accessCombination) "
                                 "VALUES (%s, 2, %s, %s, %s, %s, %s, 'PBKDF2', %s, %s, %s)",
                                 (cid, p.get("email"), p.get("displayname"), p.get("givenname"), p.get("surname"),
                                  config.hash_password(password), p.get("language") or "en_US",
                                  p.get("timezone") or "Europe/Berlin", p.get("access-combination-name")))
                    ucur.execute("INSERT INTO login2user (cid, id, uid) VALUES (%s, 2, %s)",
                                 (cid, p.get("username")))
                uconn.commit()
            except pymysql.MySQLError as exc:
                raise CltError("%s" % (exc.args[-1],), SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
            finally:
                uconn.close()
            cur.execute("INSERT INTO context (cid, name, enabled, filestore_id, filestore_name, quota_max) "
                        "VALUES (%s, %s, 1, %s, %s, %s)",
                        (cid, name, fid, "%d_ctx_store" % cid, quota if quota < 0 else quota * 1024 * 1024))
            for m in mappings:
                cur.execute("INSERT INTO login2context (cid, login_info) VALUES (%s, %s)", (cid, m))
            cur.execute("INSERT INTO context_server2db_pool (server_id, cid, read_db_pool_id, write_db_pool_id, "
                        "db_schema) VALUES (%s, %s, %s, %s, %s)", (server_id, cid, read_id or write_id, write_id,
                                                                   schema))
            cur.execute("INSERT INTO contexts_per_dbschema (db_pool_id, schemaname, count) VALUES (%s, %s, 1) "
                        "ON DUPLICATE KEY UPDATE count = count + 1", (write_id, schema))
            cur.execute("INSERT INTO contexts_per_dbpool (db_pool_id, count) VALUES (%s, 1) "
                        "ON DUPLICATE KEY UPDATE count = count + 1", (write_id,))
            cur.execute("INSERT INTO contexts_per_filestore (filestore_id, count) VALUES (%s, 1) "
                        "ON DUPLICATE KEY UPDATE count = count + 1", (fid,))
        print("context %d created" % cid)
    return run("context", "created", p, args, body)


def createuser(args):
    p = AdminParser("createuser")
    add_credentials(p)
    p.add(Option("c", "contextid", "The id of the context", needed=True, argdesc="contextid"))
    _add_user_options(p)

    def body(p):
        cid = _int(p, "contextid")
        _require(p, ["username", "displayname", "givenname", "surname", "email"])
        password = _new_user_password(p)
        if password is None:
            raise CltError('Option(s) "password" missing', SYSEXIT_MISSING_OPTION, usage=True)
        connect_admin_daemon()
        admin_user, admin_pass = credentials(p)
        if admin_user is None and admin_pass is None:
            raise CltError('Options "adminuser, adminpass" missing', SYSEXIT_MISSING_OPTION, usage=True)
        with _Db() as cur:
            cur.execute("SELECT write_db_pool_id, db_schema FROM context_server2db_pool WHERE cid = %s", (cid,))
            row = cur.fetchone()
            if not row:
                raise CltError("Context %d does not exist" % cid, SYSEXIT_NO_SUCH_CONTEXT, kind="server")
            write_id, schema = row
            try:
                uconn = _pool_conn(cur, write_id, schema)
            except pymysql.MySQLError as exc:
                raise CltError("Unable to connect to database %d: %s" % (write_id, exc.args[-1]),
                               SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
        try:
            with uconn.cursor() as ucur:
                ucur.execute("SELECT u.userPassword FROM login2user l JOIN user u ON u.cid = l.cid AND u.id = l.id "
                             "WHERE l.cid = %s AND l.uid = %s AND l.id = 2", (cid, admin_user))
                row = ucur.fetchone()
                if not row or not config.verify_password(admin_pass, row[0]):
                    raise CltError("Authentication failed for user %s" % admin_user,
                                   SYSEXIT_INVALID_CREDENTIALS, kind="server")
                ucur.execute("SELECT id FROM login2user WHERE cid = %s AND uid = %s", (cid, p.get("username")))
                if ucur.fetchone():
                    raise CltError("User %s already exists in this context" % p.get("username"),
                                   SYSEXIT_INVALID_DATA, kind="server")
                ucur.execute("SELECT GREATEST(COALESCE(MAX(id), 2), 2) + 1 FROM user WHERE cid = %s FOR UPDATE",
                             (cid,))
                uid = ucur.fetchone()[0]
                ucur.execute("INSERT INTO user (cid, id, mail, displayName, givenName, surName, userPassword, "
                             "passwordMech, preferredLanguage, timeZone, accessCombination) "
                             "VALUES (%s, %s, %s, %s, %s, %s, %s, 'PBKDF2', %s, %s, %s)",
                             (cid, uid, p.get("email"), p.get("displayname"), p.get("givenname"), p.get("surname"),
                              config.hash_password(password), p.get("language") or "en_US",
                              p.get("timezone") or "Europe/Berlin", p.get("access-combination-name")))
                ucur.execute("INSERT INTO login2user (cid, id, uid) VALUES (%s, %s, %s)",
                             (cid, uid, p.get("username")))
            uconn.commit()
        except pymysql.MySQLError as exc:
            raise CltError("%s" % (exc.args[-1],), SYSEXIT_SERVERSTORAGE_ERROR, kind="server")
        finally:
            uconn.close()
        print("user %d in context %d created" % (uid, cid))
    return run("user", "created", p, args, body)


def listcontext(args):
    p = AdminParser("listcontext")
    add_credentials(p)
    p.add(Option("s", "searchpattern", "Search/List pattern!", argdesc="searchpattern"))
    p.add(Option(None, "csv", "Format output to csv", hasarg=False))

    def body(p):
        _begin(p)
        with _Db() as cur:
            cur.execute("SELECT c.cid, c.filestore_id, c.filestore_name, c.enabled, c.quota_max, c.name "
                        "FROM context c WHERE c.cid LIKE %s OR c.name LIKE %s OR EXISTS (SELECT 1 FROM "
                        "login2context l WHERE l.cid = c.cid AND l.login_info LIKE %s) ORDER BY c.cid",
                        (_like(p.get("searchpattern")),) * 3)
            ctxs = cur.fetchall()
            rows = []
            for cid, fid, fname, enabled, qmax, name in ctxs:
                cur.execute("SELECT login_info FROM login2context WHERE cid = %s ORDER BY login_info", (cid,))
                maps = ",".join(r[0] for r in cur.fetchall())
                qmb = qmax if qmax is None or qmax < 0 else qmax // (1024 * 1024)
                rows.append([str(cid), str(fid), fname, "true" if enabled else "false", str(qmb), "0", name, maps])
        if p.get("csv"):
            do_csv_output(["id", "filestore_id", "filestore_name", "enabled", "max_quota", "used_quota", "name",
                           "lmappings"], rows)
        else:
            do_output(["r", "r", "l", "l", "r", "r", "l", "l"],
                      ["cid", "fid", "fname", "enabled", "qmax", "qused", "name", "lmappings"], rows)
    return run("contexts", "listed", p, args, body)


def changecontext(args):
    """changecontext -c <id> | -N <name> [-q <MB>] [-L a,b] [-R a,b]: context-wide changes."""
    p = AdminParser("changecontext")
    add_credentials(p)
    p.add(Option("c", "contextid", "The id of the context", argdesc="contextid"))
    p.add(Option("N", "contextname", "Context name", argdesc="contextname"))
    p.add(Option("q", "quota", "Quota for the context filestore in MB", argdesc="quota"))
    p.add(Option("L", "addmapping", "Add login mappings separated by \",\"", argdesc="addmapping"))
    p.add(Option("R", "removemapping", "Remove login mappings. Separated by \",\"", argdesc="removemapping"))
    # Module access and capability options the real tool takes; accepted and ignored here.
    for long in ("access-combination-name", "capabilities-to-add", "capabilities-to-remove",
                 "capabilities-to-drop", "quota-module", "quota-value"):
        p.add(Option(None, long, long, argdesc=long))

    def body(p):
        if p.get("contextid") is None and p.get("contextname") is None:
            raise CltError("Either contextid or contextname must be given", SYSEXIT_MISSING_OPTION, usage=True)
        cid = _int(p, "contextid")
        quota = _int(p, "quota")
        if quota is not None and quota < -1:
            raise CltError("Invalid quota: %d (-1 is unlimited)" % quota, SYSEXIT_INVALID_DATA, kind="server")
        _begin(p)
        with _Db() as cur:
            if cid is not None:
                cur.execute("SELECT cid FROM context WHERE cid = %s", (cid,))
            else:
                cur.execute("SELECT cid FROM context WHERE name = %s", (p.get("contextname"),))
            row = cur.fetchone()
            if not row:
                raise CltError("Context %s does not exist" % (cid if cid is not None else p.get("contextname")),
                               SYSEXIT_NO_SUCH_CONTEXT, kind="server")
            cid = row[0]
            if p.get("contextid") is not None and p.get("contextname") is not None:
                cur.execute("SELECT cid FROM context WHERE name = %s AND cid <> %s", (p.get("contextname"), cid))
                if cur.fetchone():
                    raise CltError("Context %s already exists" % p.get("contextname"), SYSEXIT_INVALID_DATA,
                                   kind="server")
                cur.execute("UPDATE context SET name = %s WHERE cid = %s", (p.get("contextname"), cid))
            if quota is not None:
                cur.execute("UPDATE context SET quota_max = %s WHERE cid = %s",
                            (quota if quota < 0 else quota * 1024 * 1024, cid))
            for m in [m for m in (p.get("addmapping") or "").split(",") if m]:
                cur.execute("SELECT cid FROM login2context WHERE login_info = %s", (m,))
                row = cur.fetchone()
                if row and row[0] != cid:
                    raise CltError("Cannot map '%s' to context %d. It already exists." % (m, cid),
                                   SYSEXIT_INVALID_DATA, kind="server")
                if not row:
                    cur.execute("INSERT INTO login2context (cid, login_info) VALUES (%s, %s)", (cid, m))
            for m in [m for m in (p.get("removemapping") or "").split(",") if m]:
                if m == str(cid):
                    raise CltError("The login mapping %s is the context id and cannot be removed" % m,
                                   SYSEXIT_INVALID_DATA, kind="server")
                cur.execute("DELETE FROM login2context WHERE cid = %s AND login_info = %s", (cid, m))
        print("context %d changed" % cid)
    return run("context", "changed", p, args, body)


TOOLS = {
    "registerserver": registerserver, "unregisterserver": unregisterserver, "listserver": listserver,
    "registerfilestore": registerfilestore, "unregisterfilestore": unregisterfilestore,
    "listfilestore": listfilestore, "changefilestore": changefilestore, "registerdatabase": registerdatabase,
    "unregisterdatabase": unregisterdatabase, "listdatabase": listdatabase,
    "createcontext": createcontext, "createuser": createuser, "listcontext": listcontext,
    "changecontext": changecontext,
}


def main(tool, args):
    if tool in ("initconfigdb", "oxinstaller"):
        from . import installer
        return getattr(installer, tool)(args)
    return TOOLS[tool](args)

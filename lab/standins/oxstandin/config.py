"""LAB STAND-IN -- NOT PRODUCT CODE.  Where the imitated OX keeps its state.

Files (under the install root, /opt/open-xchange unless OX_STANDIN_ROOT):
  etc/configdb.properties   readUrl/writeUrl + readProperty.N/writeProperty.N
  etc/server.properties     com.openexchange.server.backendRoute, connector host/port
  etc/system.properties     SERVER_NAME
  etc/rmi.properties        com.openexchange.rmi.host / com.openexchange.rmi.port
  etc/mpasswd               <masteruser>:<hash>  (master admin credentials)
  etc/AdminDaemon.properties MASTER_AUTHENTICATION_DISABLED (oxinstaller --disableauth)
"""

import base64
import hashlib
import hmac
import os
import re
import secrets
import urllib.parse

from . import etc_dir
from .props import read_properties

DEFAULT_RMI_PORT = 1099
DEFAULT_HTTP_PORT = 8009


def etc(name):
    return os.path.join(etc_dir(), name)


def parse_jdbc_url(url):
    """jdbc:mysql://host[:port][/db][?params] -> (host, port, db)."""
    if not url:
        raise ValueError("empty JDBC URL")
    u = url[len("jdbc:"):] if url.startswith("jdbc:") else url
    parsed = urllib.parse.urlsplit(u)
    if parsed.scheme != "mysql" or not parsed.hostname:
        raise ValueError("unsupported JDBC URL: %s" % url)
    db = parsed.path.lstrip("/") or None
    return parsed.hostname, parsed.port or 3306, db


def _props_to_creds(props, prefix):
    user = password = None
    for key, val in props.items():
        if key.startswith(prefix + "."):
            m = re.match(r"^(user|password)=(.*)$", val)
            if m and m.group(1) == "user":
                user = m.group(2)
            elif m:
                password = m.group(2)
    return user, password


def configdb_settings(which="write"):
    """Connection settings oxinstaller wrote to configdb.properties."""
    path = etc("configdb.properties")
    props = read_properties(path)
    url = props.get(which + "Url")
    if not url:
        raise FileNotFoundError("%s has no %sUrl (was oxinstaller run?)" % (path, which))
    host, port, db = parse_jdbc_url(url)
    user, password = _props_to_creds(props, which + "Property")
    return {"host": host, "port": port, "database": db or "configdb",
            "user": user or "openexchange", "password": password or ""}


def server_settings():
    srv = read_properties(etc("server.properties"))
    system = read_properties(etc("system.properties"))
    rmi = read_properties(etc("rmi.properties"))
    host = srv.get("com.openexchange.connector.networkListenerHost", "127.0.0.1")
    if host == "*":
        host = "0.0.0.0"
    elif host == "localhost":
        host = "127.0.0.1"
    rmi_host = rmi.get("com.openexchange.rmi.host", "localhost")
    if rmi_host in ("0", "*"):
        rmi_host = "0.0.0.0"
    elif rmi_host == "localhost":
        rmi_host = "127.0.0.1"
    return {
        "server_name": system.get("SERVER_NAME", ""),
        "route": srv.get("com.openexchange.server.backendRoute", ""),
        "http_host": host,
        "http_port": int(srv.get("com.openexchange.connector.networkListenerPort", DEFAULT_HTTP_PORT)),
        "rmi_host": rmi_host,
        "rmi_port": int(rmi.get("com.openexchange.rmi.port", DEFAULT_RMI_PORT)),
    }


def rmi_endpoint():
    """Where the CLTs look for the admin daemon: RMI_HOSTNAME env (as the real
    CLTs), default rmi://localhost:1099/."""
    raw = os.environ.get("RMI_HOSTNAME", "").strip() or "rmi://localhost:1099/"
    if not raw.startswith("rmi://"):
        raw = "rmi://" + raw
    parsed = urllib.parse.urlsplit(raw)
    return parsed.hostname or "localhost", parsed.port or DEFAULT_RMI_PORT


# --- master credentials (mpasswd) -------------------------------------------

def hash_password(password):
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 100000)
    return "{PBKDF2}%s$%s" % (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password, stored):
    if password is None or not stored:
        return False
    if stored.startswith("{PBKDF2}"):
        try:
            salt_b64, dig_b64 = stored[len("{PBKDF2}"):].split("$", 1)
            salt = base64.b64decode(salt_b64)
            want = base64.b64decode(dig_b64)
        except ValueError:
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 100000)
        return hmac.compare_digest(got, want)
    return False


def read_mpasswd():
    users = {}
    try:
        with open(etc("mpasswd"), encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#") and ":" in line:
                    user, hashed = line.split(":", 1)
                    users[user] = hashed
    except FileNotFoundError:
        pass
    return users


def master_auth_disabled():
    props = read_properties(etc("AdminDaemon.properties"))
    return props.get("MASTER_AUTHENTICATION_DISABLED", "false").strip().lower() == "true"


def read_properties_safe(name):
    return read_properties(etc(name))

"""LAB STAND-IN -- NOT PRODUCT CODE.  The configdb schema and connections.

Tables follow OX's configdb.sql (server, filestore, db_pool, db_cluster,
context, login2context, context_server2db_pool, contexts_per_*,
configdb_sequence).  The real file also defines a stored procedure for
ids; the stand-in uses ``LAST_INSERT_ID(id+1)`` instead, so the openexchange
user needs no CREATE ROUTINE privilege.  As in OX, server, filestore and
database ids share one sequence (hence "database 3 registered" after a
server 1 and filestore 2 on a fresh configdb).
"""

import pymysql

from . import config

SCHEMA = [
    """CREATE TABLE configdb_sequence (
        id INT4 UNSIGNED NOT NULL,
        PRIMARY KEY (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "INSERT INTO configdb_sequence VALUES (0)",
    """CREATE TABLE db_pool (
        db_pool_id INT4 UNSIGNED NOT NULL,
        url VARCHAR(255) NOT NULL,
        driver VARCHAR(128) NOT NULL,
        login VARCHAR(128) NOT NULL,
        password VARCHAR(128) NOT NULL,
        hardlimit INT4,
        max INT4,
        initial INT4,
        name VARCHAR(128) NOT NULL,
        PRIMARY KEY (db_pool_id),
        INDEX (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE db_cluster (
        cluster_id INT4 UNSIGNED NOT NULL,
        read_db_pool_id INT4 UNSIGNED NOT NULL,
        write_db_pool_id INT4 UNSIGNED NOT NULL,
        weight INT4 UNSIGNED,
        max_units INT4,
        PRIMARY KEY (cluster_id),
        FOREIGN KEY(write_db_pool_id) REFERENCES db_pool (db_pool_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE reason_text (
        id INT4 UNSIGNED NOT NULL,
        text VARCHAR(255) NOT NULL,
        PRIMARY KEY (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE context (
        cid INT4 UNSIGNED NOT NULL,
        name VARCHAR(128) NOT NULL,
        enabled BOOLEAN,
        reason_id INT4 UNSIGNED,
        filestore_id INT4 UNSIGNED,
        filestore_name VARCHAR(32),
        filestore_login VARCHAR(32),
        filestore_passwd VARCHAR(32),
        quota_max INT8,
        PRIMARY KEY (cid),
        INDEX (filestore_id),
        UNIQUE KEY context_name_unique (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE filestore (
        id INT4 UNSIGNED NOT NULL,
        uri VARCHAR(255) NOT NULL,
        size INT8 UNSIGNED NOT NULL,
        max_context INT4,
        PRIMARY KEY (id),
        INDEX (max_context),
        CONSTRAINT filestore_uri_unique UNIQUE(uri)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE server (
        server_id INT4 UNSIGNED NOT NULL,
        name VARCHAR(255) NOT NULL,
        PRIMARY KEY (server_id),
        CONSTRAINT server_name_unique UNIQUE (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE login2context (
        cid INT4 UNSIGNED NOT NULL,
        login_info VARCHAR(255) NOT NULL,
        PRIMARY KEY (login_info),
        FOREIGN KEY(cid) REFERENCES context (cid)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE context_server2db_pool (
        server_id INT4 UNSIGNED NOT NULL,
        cid INT4 UNSIGNED NOT NULL,
        read_db_pool_id INT4 UNSIGNED NOT NULL,
        write_db_pool_id INT4 UNSIGNED NOT NULL,
        db_schema VARCHAR(32) NOT NULL,
        PRIMARY KEY(cid, server_id),
        INDEX (write_db_pool_id),
        INDEX (server_id),
        INDEX (db_schema),
        INDEX poolAndSchema (write_db_pool_id, db_schema),
        FOREIGN KEY(cid) REFERENCES context (cid) ON DELETE CASCADE ON UPDATE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE contexts_per_dbpool (
        db_pool_id INT4 UNSIGNED NOT NULL,
        count INT4 UNSIGNED NOT NULL,
        PRIMARY KEY (db_pool_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE contexts_per_filestore (
        filestore_id INT4 UNSIGNED NOT NULL,
        count INT4 UNSIGNED NOT NULL,
        PRIMARY KEY (filestore_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE contexts_per_dbschema (
        db_pool_id INT4 UNSIGNED NOT NULL,
        schemaname VARCHAR(32) NOT NULL,
        count INT4 UNSIGNED NOT NULL,
        PRIMARY KEY (db_pool_id, schemaname)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]

#: GRANT list of initconfigdb -a (as in the OX "Creating Open-Xchange user" docs).
OX_PRIVILEGES = ("CREATE, LOCK TABLES, REFERENCES, INDEX, DROP, DELETE, ALTER, SELECT, UPDATE, "
                 "INSERT, CREATE TEMPORARY TABLES, SHOW VIEW, SHOW DATABASES")

#: Tables of a user-data schema (a tiny subset of OX's, enough for contexts/users).
USER_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS user (
        cid INT4 UNSIGNED NOT NULL,
        id INT4 UNSIGNED NOT NULL,
        mail VARCHAR(255),
        displayName VARCHAR(320),
        givenName VARCHAR(128),
        surName VARCHAR(128),
        userPassword VARCHAR(255),
        passwordMech VARCHAR(32),
        preferredLanguage VARCHAR(10),
        timeZone VARCHAR(128),
        accessCombination VARCHAR(64),
        PRIMARY KEY (cid, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS login2user (
        cid INT4 UNSIGNED NOT NULL,
        id INT4 UNSIGNED NOT NULL,
        uid VARCHAR(128) NOT NULL,
        PRIMARY KEY (cid, uid)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]


def connect(host, port, user, password, database=None, timeout=5):
    return pymysql.connect(host=host, port=int(port), user=user, password=password,
                           database=database, connect_timeout=timeout,
                           read_timeout=30, write_timeout=30, autocommit=False,
                           charset="utf8mb4")


def connect_configdb(which="write"):
    s = config.configdb_settings(which)
    return connect(s["host"], s["port"], s["user"], s["password"], s["database"])


def next_id(cur):
    cur.execute("UPDATE configdb_sequence SET id = LAST_INSERT_ID(id + 1)")
    cur.execute("SELECT LAST_INSERT_ID()")
    return int(cur.fetchone()[0])

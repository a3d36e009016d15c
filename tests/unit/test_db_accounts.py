"""Database accounts get password hashes, never passwords (issue 9: no passwords at rest in DB logs).

A `CREATE/ALTER USER ... IDENTIFIED BY '<password>'` is written as it was sent to the binlog, to
galera.cache and to a replica's relay log. The program computes the mysql_native_password hash,
the account steps get only that (on stdin), and `ox_native_account` sends a statement only when
the account's stored hash differs. Here: the hash, its wiring, and the helper run with the real
bash against a fake `mariadb` that logs what it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
from pathlib import Path

import pulumi
import pytest

from components.core.remote import render_step
from components.core.render import template_names
from components.core.secrets import mysql_native_hash, native_hash
from harness import ROOT, is_secret, run_program, script_of, unwrap

# MariaDB 10.11's own answers: SELECT PASSWORD('x'), PASSWORD('mypass') (the second is MySQL's manual's example).
VECTORS = {"x": "*B69027D44F6E5EDC07F1AEAD1477967B16F28227", "mypass": "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"}
SECRET = {"sshPrivateKey", "mysqlRootPassword", "sstPassword", "replicationPassword", "configdbPassword"}
PASSWORDS = {"mysqlRootPassword": "Root-pw-91c2", "sstPassword": "Sst-pw-0b7e", "replicationPassword": "Repl-pw-3d5a",
             "configdbPassword": "Cdb-pw-77f1"}


@pytest.mark.parametrize("password, expected", VECTORS.items())
def test_native_hash_is_mariadbs_password_function(password, expected):
    assert mysql_native_hash(password) == expected


def test_the_hash_of_a_secret_is_a_secret():
    """The hash logs in as well as the password does (native auth): it must never show in state or output."""
    async def evaluate():
        out = native_hash(pulumi.Output.secret("x"))
        return await out.is_secret(), await out.future()

    assert asyncio.run(evaluate()) == (True, VECTORS["x"])


def _stdin(step) -> dict[str, str]:
    assert is_secret(step.inputs["stdin"]) and step.inputs["logging"] == "none"
    lines = unwrap(step.inputs["stdin"]).splitlines()
    return {k: base64.b64decode(v).decode() for k, v in (line.split("=", 1) for line in lines)}


@pytest.mark.parametrize("database, steps", [
    ({"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera"},
     {"ox-galera-db1-bootstrap": {"MYSQL_ROOT_HASH": "mysqlRootPassword", "SST_HASH": "sstPassword"},
      "ox-galera-db1-ox-grants": {"CONFIGDB_HASH": "configdbPassword"}}),
    ({"gtid": {"mode": "master-master", "master": {"host": "db4", "serverId": 1},
               "slave": {"host": "db5", "serverId": 2}}, "configdb": "gtid"},
     {"ox-gtid-db4-accounts": {"MYSQL_ROOT_HASH": "mysqlRootPassword", "REPLICATION_HASH": "replicationPassword"},
      "ox-gtid-db5-accounts": {"MYSQL_ROOT_HASH": "mysqlRootPassword", "REPLICATION_HASH": "replicationPassword"},
      "ox-gtid-db5-replica": {"REPLICATION_PASSWORD": "replicationPassword"},
      "ox-gtid-db4-ox-grants": {"CONFIGDB_HASH": "configdbPassword"}}),
    ({"standalone": {"host": "db1"}, "configdb": "standalone"},
     {"ox-standalone-db1-root": {"MYSQL_ROOT_HASH": "mysqlRootPassword"},
      "ox-standalone-db1-ox-grants": {"CONFIGDB_HASH": "configdbPassword"}}),
])
def test_account_steps_get_hashes_and_only_the_replica_a_password(stack_config, database, steps):
    """Only a step that logs in (the replica, the client files) gets a password; an account step its hash."""
    recording = run_program(stack_config(database=database, **PASSWORDS), SECRET)
    for name, wanted in steps.items():
        got = _stdin(recording.named(name))
        assert got == {var: PASSWORDS[key] if var.endswith("_PASSWORD") else mysql_native_hash(PASSWORDS[key])
                       for var, key in wanted.items()}, name
        script = script_of(recording.named(name))
        assert not [pw for pw in PASSWORDS.values() if pw in script or mysql_native_hash(pw) in script]


def test_no_template_sends_a_password_in_an_account_statement():
    """`IDENTIFIED BY '<pw>'` and `PASSWORD('<pw>')` are logged as sent: only hashes go in an account statement."""
    offenders = []
    templates = [path for name, path in template_names().items() if name.endswith(".j2")]
    assert len(templates) > 50  # every tier's
    for path in templates:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"IDENTIFIED BY (?!PASSWORD )|USING PASSWORD\(|SET PASSWORD", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


# --------------------------------------------------------------------------- ox_native_account, run

# Logs every call (argv, then what came on stdin) and answers SHOW CREATE USER from $FAKE/account.
FAKE_MARIADB = r'''#!/bin/bash
sql=""
for a; do [ "$prev" = -e ] && sql=$a; prev=$a; done
[ -n "$sql" ] || sql=$(cat)
printf '%s\n' "argv: $*" "sql: $sql" >>"$FAKE/log"
case $sql in
  "SHOW CREATE USER "*) [ -s "$FAKE/account" ] && cat "$FAKE/account" \
    || { echo "ERROR 1396 (HY000): Operation SHOW CREATE USER failed" >&2; exit 1; } ;;
esac
'''
ROOT_PW = "Root-pw-91c2"
ROOT_HASH = mysql_native_hash(ROOT_PW)
WANT = f"IDENTIFIED VIA unix_socket OR mysql_native_password USING '{ROOT_HASH}'"


def _run_root_step(tmp_path: Path, account: str | None, secret: str = ROOT_HASH) -> tuple[subprocess.CompletedProcess, str]:
    """The standalone root step (it sets root's account and nothing else), with the fake mariadb."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mariadb").write_text(FAKE_MARIADB)
    (bin_dir / "mariadb").chmod(0o755)
    (tmp_path / "account").write_text(account or "")
    script = render_step("ox-standalone-db1-root", "db1", "db/mariadb-root.sh.j2", {})
    stdin = f"MYSQL_ROOT_HASH={base64.b64encode(secret.encode()).decode()}\n"
    env = {**os.environ, "FAKE": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script, "ox-standalone-db1-root"], input=stdin, capture_output=True,
                            text=True, timeout=60, env=env)
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    return result, log


@pytest.mark.parametrize("account, statement", [
    (None, f"CREATE USER 'root'@'localhost' {WANT}"),
    (f"CREATE USER `root`@`localhost` {WANT}", None),  # right already: nothing is sent, nothing logged
    (f"CREATE USER `root`@`localhost` {WANT} PASSWORD EXPIRE NEVER", None),
    ("CREATE USER `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket",
     f"ALTER USER 'root'@'localhost' {WANT}"),  # as mariadb-install-db leaves it
    (f"CREATE USER `root`@`localhost` IDENTIFIED BY PASSWORD '{ROOT_HASH}'", f"ALTER USER 'root'@'localhost' {WANT}"),
    (f"CREATE USER `root`@`localhost` IDENTIFIED VIA unix_socket OR mysql_native_password USING '{mysql_native_hash('old')}'",
     f"ALTER USER 'root'@'localhost' {WANT}"),
])
def test_an_account_changes_only_when_its_hash_differs(tmp_path, account, statement):
    result, log = _run_root_step(tmp_path, account)
    assert result.returncode == 0, result.stderr
    sent = [line[len("sql: "):] for line in log.splitlines() if line.startswith("sql: ") and "SHOW CREATE USER" not in line]
    assert sent == ([statement] if statement else [])
    # the hash went on the client's stdin only: never in a mariadb argv
    assert not [line for line in log.splitlines() if line.startswith("argv: ") and ROOT_HASH in line]


def test_a_password_where_a_hash_belongs_is_refused_and_not_echoed(tmp_path):
    result, log = _run_root_step(tmp_path, None, secret=ROOT_PW)
    assert result.returncode == 1 and "is not a mysql_native_password hash" in result.stderr
    assert ROOT_PW not in result.stderr + result.stdout + log


def test_no_command_line_holds_a_database_password_or_its_hash(stack_config):
    """A step's command line is what `ps` shows and what the engine logs on failure."""
    recording = run_program(stack_config(**PASSWORDS), SECRET)
    for step in recording.of_type("command:remote:Command"):
        text = unwrap(step.inputs["create"])
        assert not [pw for pw in PASSWORDS.values() if pw in text or mysql_native_hash(pw) in text], step.name

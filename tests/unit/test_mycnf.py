"""The ox.conf.d files, rendered for named cases and checked with the real mariadbd.

MariaDB has no --validate-config; `mariadbd --defaults-file=X --help --verbose` exits 7 on an
option it would refuse, and warns on options that were removed or are deprecated.
"""

import re
import shutil
import subprocess

import pytest

from components.db import mycnf
from components.core.config import parse

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
needs_mariadbd = pytest.mark.skipif(not shutil.which("mariadbd") and not shutil.which("/usr/sbin/mariadbd"),
                                    reason="NEEDS mariadb-server: lab/setup.sh installs it (CI runs it)")


def _cfg(stack_config, **overrides):
    return parse(stack_config(**overrides), {"sshPrivateKey"})


def _mariadbd_check(tmp_path, *texts) -> subprocess.CompletedProcess:
    """Run the server's own option parser over the files, as the last includes of a my.cnf."""
    conf = tmp_path / "ox.conf.d"
    conf.mkdir(exist_ok=True)
    for i, text in enumerate(texts):
        (conf / f"{i}.cnf").write_text(text)
    main = tmp_path / "my.cnf"
    main.write_text(f"[mysqld]\ndatadir={tmp_path}/data\n!includedir {conf}/\n")
    return subprocess.run([MARIADBD, f"--defaults-file={main}", "--help", "--verbose"],
                          capture_output=True, text=True, timeout=60)


def _values(result: subprocess.CompletedProcess) -> dict[str, str]:
    """The effective values from the table after --help --verbose's 'Variables' header."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Variables (--variable-name=value)"))
    return dict(line.split(None, 1) for line in lines[start + 2:] if len(line.split(None, 1)) == 2)


@needs_mariadbd
@pytest.mark.parametrize("durability", ["ox", "strict"])
def test_tunings_start_clean_on_mariadb_10_11(stack_config, tmp_path, durability):
    cfg = _cfg(stack_config, database={"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera",
                                       "tuning": {"durability": durability}})
    result = _mariadbd_check(tmp_path, mycnf.tunings_cnf(mycnf.server_settings(cfg), memory_mb=8192))
    assert result.returncode == 0, result.stderr
    for warning in ("unknown", "was removed", "deprecated"):
        assert warning not in result.stderr.lower(), result.stderr
    values = _values(result)
    assert values["innodb-flush-log-at-trx-commit"] == ("0" if durability == "ox" else "1")
    assert values["innodb-buffer-pool-size"] == str(4096 * 1024 * 1024)
    assert values["character-set-server"] == "utf8mb4"
    assert values["collation-server"] == "utf8mb4_general_ci"
    assert values["sql-mode"] == "NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
    assert values["query-cache-type"] == "OFF"
    assert values["innodb-strict-mode"] == "FALSE"


@needs_mariadbd
def test_galera_files_start_clean(stack_config, tmp_path):
    cfg = _cfg(stack_config)
    files = [mycnf.tunings_cnf(mycnf.server_settings(cfg), 4096),
             _wsrep(cfg, ["10.0.0.11", "10.0.0.12", "10.0.0.13"], cpus=2),
             mycnf.host_cnf("db1", "10.0.0.11")]
    result = _mariadbd_check(tmp_path, *files)
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr.lower() and "was removed" not in result.stderr, result.stderr
    assert _values(result)["wsrep-cluster-address"] == "gcomm://10.0.0.11,10.0.0.12,10.0.0.13"
    assert _values(result)["wsrep-sync-wait"] == "1"


@needs_mariadbd
@pytest.mark.parametrize("mode", ["master-slave", "master-master"])
def test_gtid_file_starts_clean(tmp_path, mode):
    text = mycnf.gtid_cnf(role="slave", mode=mode, server_id=42, gtid_domain_id=2, auto_increment_offset=2,
                          read_only=mode == "master-slave")
    result = _mariadbd_check(tmp_path, text)
    assert result.returncode == 0, result.stderr
    values = _values(result)
    assert values["auto-increment-increment"] == ("2" if mode == "master-master" else "1")
    assert values["gtid-domain-id"] == "2" and values["server-id"] == "42"
    assert values["read-only"] == ("TRUE" if mode == "master-slave" else "FALSE")


@needs_mariadbd
def test_the_check_catches_a_refused_option(tmp_path):
    """Control: the check above really fails on what 10.11 refuses (the page's old tunings)."""
    result = _mariadbd_check(tmp_path, "[mysqld]\ninnodb_additional_mem_pool_size = 20M\n")
    assert result.returncode == 7 and "unknown variable" in result.stderr


def test_dropped_options_are_named_in_the_file_not_set(stack_config):
    text = mycnf.tunings_cnf(mycnf.server_settings(_cfg(stack_config)), 8192)
    assert "#   innodb_locks_unsafe_for_binlog: removed in 10.5" in text
    assert "#   innodb_additional_mem_pool_size: refused" in text
    settings = [line.split("=")[0].strip() for line in text.splitlines() if "=" in line and not line.startswith("#")]
    for option in ("innodb_locks_unsafe_for_binlog", "innodb_log_files_in_group", "innodb_buffer_pool_instances",
                   "innodb_additional_mem_pool_size"):
        assert option not in settings


def test_sizing_follows_memory(stack_config):
    cfg = _cfg(stack_config)
    tuning = cfg.database.tuning
    small, big = mycnf.sizing(tuning, 2048), mycnf.sizing(tuning, 65536)
    assert (small.buffer_pool_mb, small.log_file_mb) == (1024, 256)
    assert (big.buffer_pool_mb, big.log_file_mb) == (32768, 8192)
    assert mycnf.sizing(tuning, 100).buffer_pool_mb == 128  # floor for tiny hosts


def _wsrep(cfg, addresses: list[str], cpus: int) -> str:
    galera = cfg.database.galera
    return mycnf.wsrep_cnf(mycnf.release_of(cfg), cluster_name=galera.cluster_name, sst_method=galera.sst_method,
                           gcache_size=galera.gcache_size, node_addresses=addresses, cpus=cpus)


def _seconds(period: str) -> float:
    assert re.fullmatch(r"PT[0-9.]+S", period), period
    return float(period[2:-1])


def test_failure_detection_respects_galeras_limits_and_is_fast():
    """Galera refuses to start outside these (gcomm evs_proto.cpp's check_range): the check period
    at most half the suspect timeout, keepalives at most a third, and the install timeout between
    two keepalives and the inactive timeout."""
    evs = {k: _seconds(v) for k, v in mycnf.EVS_TIMEOUTS.items()}
    assert evs["inactive_check_period"] <= evs["suspect_timeout"] / 2
    assert evs["keepalive_period"] <= evs["suspect_timeout"] / 3
    assert 2 * evs["keepalive_period"] <= evs["install_timeout"] <= evs["inactive_timeout"]
    assert evs["suspect_timeout"] <= evs["inactive_timeout"]
    assert evs["suspect_timeout"] <= 1.5  # writes must move within 3 s of a crash (lab-measured)


def test_provider_options_carry_gcache_and_failure_detection(stack_config):
    text = _wsrep(_cfg(stack_config), ["10.0.0.11", "10.0.0.12", "10.0.0.13"], cpus=2)
    line = next(x for x in text.splitlines() if x.startswith("wsrep_provider_options"))
    options = dict(o.split("=", 1) for o in line.split("=", 1)[1].strip().strip('"').split(";"))
    assert options["gcache.size"] == "128M"
    assert {k.removeprefix("evs."): v for k, v in options.items() if k.startswith("evs.")} == mycnf.EVS_TIMEOUTS

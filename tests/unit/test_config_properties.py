"""Property: any mutation of a valid stack config is refused with a ConfigError naming a key, or
it is accepted and the whole program builds, and every script it renders passes `bash -n`.
Never a traceback, a hang or a late failure (an error after the config was accepted)."""

from __future__ import annotations

import copy
import hashlib
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.core import config
from components.core.config import ConfigError, parse
from conftest import BASE_CONFIG
from harness import run_program, script_of

BASES = [
    BASE_CONFIG,
    {**BASE_CONFIG, "frontend": {"mode": "colocated", "adminNetworks": ["10.0.0.0/24"]},
     "middleware": {**BASE_CONFIG["middleware"], "firstContext": {"contextId": 3, "mappings": ["example.com"]}}},
]
# What operators (and attackers) put in: realistic values of every field's kind, and hostile ones.
PLAIN = ["db1", "db4", "mw1", "mw2", "nfs1", "web1", "OX1", "OX3", "10.0.0.11", "10.0.0.99", "10.0.0.0/24",
         "0.0.0.0/0", "0.0.0.0", "galera", "gtid", "standalone", "master-master", "repository", "colocated",
         "ganesha", "kernel", "rsync", "/srv/fs", "/", "/etc", "../x", "8", "7.10.6", "10.11", "true", "41",
         "s3://bucket", "https://x.example/deb", "NO_ENGINE_SUBSTITUTION", "", "aws", "static"]
HOSTILE = ["a\nb", "$(touch /tmp/x)", "`id`", "a'b", 'a"b', "a\\b", "x;id", "OX_EOF", "%s%n", "a b", "-oX=y",
           "\x00", "é", "x" * 2000]
SCALARS = st.one_of(st.sampled_from(PLAIN), st.sampled_from(HOSTILE), st.text(max_size=12),
                    st.integers(-3, 70000), st.integers(), st.booleans(), st.none(), st.floats())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.sampled_from(["host", "jkroute", "name", "address", "nodes", "mode", "x"]),
                                   SCALARS, max_size=2))

def _re(pattern: str) -> st.SearchStrategy:
    return st.from_regex(pattern, fullmatch=True)


# Knobs and values the model allows, generated at the edges of what it allows: these reach the
# templates, so the accepted side of the property is exercised too.
KNOBS: dict[tuple, st.SearchStrategy] = {
    ("middleware", "serverName"): _re(r"[A-Za-z0-9_-]{1,64}"),  # a leading '-' must be refused
    ("middleware", "clusterName"): _re(r"[A-Za-z0-9_-]{1,64}"),
    ("middleware", "nodes", 0, "jkroute"): _re(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"),
    ("middleware", "servermemoryMb"): st.integers(512, 1048576),
    ("middleware", "firstContext"): st.fixed_dictionaries({
        "contextId": st.integers(1, 2**31 - 1), "name": _re(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
        "adminUser": _re(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
        "adminEmail": _re(r"[A-Za-z0-9._+-]{1,20}@[A-Za-z0-9-]{1,10}\.[a-z]{2,5}"),
        "quotaMb": st.integers(1, 2**40), "mappings": st.lists(_re(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,30}"), max_size=3)}),
    ("database", "galera", "clusterName"): _re(r"[A-Za-z0-9_-]{1,40}"),
    ("database", "galera", "sstMethod"): st.sampled_from(["mariabackup", "rsync"]),
    ("database", "galera", "gcacheSize"): _re(r"[1-9][0-9]{0,5}[MG]"),
    ("database", "tuning"): st.fixed_dictionaries({
        "durability": st.sampled_from(["ox", "strict"]), "bufferPoolPercent": st.integers(10, 80),
        "maxConnections": st.integers(50, 100000), "sqlMode": st.sampled_from(
            ["NO_ENGINE_SUBSTITUTION", " no_auto_create_user , NO_ENGINE_SUBSTITUTION"])}),
    ("filestore", "exportPath"): _re(r"(/[A-Za-z0-9_][A-Za-z0-9._-]{0,10}){1,4}"),
    ("filestore", "mountPath"): _re(r"(/[A-Za-z0-9_][A-Za-z0-9._-]{0,10}){1,4}"),
    ("filestore", "sizeMb"): st.integers(1, 2**40),
    ("filestore", "uid"): st.integers(100, 65533),
    ("frontend", "adminNetworks"): st.lists(st.sampled_from(["10.0.0.0/24", "192.0.2.0/28", "10.0.0.0/8"]),
                                            max_size=3, unique=True),
    ("frontend", "maxConnections"): st.integers(100, 200000),
    ("ssh", "user"): _re(r"[a-z_][a-z0-9_-]{0,31}"),
    ("ssh", "port"): st.integers(1, 65535),
    ("converge",): _re(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}"),
    ("versions", "appsuite"): st.sampled_from(["7.10.6", "8", "8.30"]),
    ("mysqlRootPassword",): st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=40),
}


STATS = {"examples": 0, "refused": 0, "accepted": 0, "scripts checked": 0}
_CHECKED: set[str] = set()


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*path, i))
    return found


def _like(original: Any) -> st.SearchStrategy:
    """A value of the same kind as the one it replaces: the mutations an operator's typo makes."""
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        return st.one_of(st.integers(0, 70000), st.integers())
    if isinstance(original, str):
        return st.one_of(st.sampled_from(PLAIN), st.sampled_from(HOSTILE), st.text(max_size=12))
    if isinstance(original, list) and original:
        return st.lists(st.sampled_from(original), max_size=len(original) + 1)
    return VALUES


def _mutate(cfg: dict, path: tuple, how: str, value: Any) -> None:
    node = cfg
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if how == "delete":
        del node[last]
    elif how == "add" and isinstance(node, dict):
        node[f"{last}X" if isinstance(last, str) else "extra"] = value
    elif how == "add" and isinstance(node, list):
        node.append(value)
    else:
        node[last] = value


def _bash_n(script: str, where: str) -> None:
    digest = hashlib.sha256(script.encode()).hexdigest()
    if digest in _CHECKED:
        return
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert check.returncode == 0, f"{where}: {check.stderr[:300]}"
    _CHECKED.add(digest)
    STATS["scripts checked"] += 1


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\nhypothesis: {STATS}")


@settings(max_examples=120, deadline=timedelta(seconds=60), derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_config_is_refused_by_key_or_deploys_scripts_that_parse(ssh_key, data):
    cfg = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(0, 3))):
        knob = data.draw(st.sampled_from(sorted(KNOBS, key=str)))
        node = cfg
        for part in knob[:-1]:
            node = node[part] if isinstance(node, list) else node.setdefault(part, {})
        node[knob[-1]] = data.draw(KNOBS[knob])
    for _ in range(data.draw(st.integers(0, 2))):
        paths = _paths(cfg)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["like", "like", "like", "set", "delete", "add"]))
        node = cfg
        for part in path:
            node = node[part]
        _mutate(cfg, path, how, data.draw(_like(node) if how == "like" else VALUES))
    STATS["examples"] += 1
    raw = {**cfg, "sshPrivateKey": ssh_key}
    secret_keys = {"sshPrivateKey"} | (set(raw) & set(config.SECRET_KEYS))
    try:
        parse(raw, secret_keys)
    except ConfigError as err:
        STATS["refused"] += 1
        assert err.problems
        assert all(path and len(path) < 200 for path, _ in err.problems), err.problems
        assert len(str(err)) < 20_000
        return
    STATS["accepted"] += 1
    recording = run_program(raw, secret_keys)  # accepted: the whole program must build
    for r in recording.of_type("command:remote:Command"):
        for field in ("create", "delete"):
            if r.inputs.get(field):
                _bash_n(script_of(r, field), f"{r.name} {field}")

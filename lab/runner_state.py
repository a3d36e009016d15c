"""The lab runner's state file: a small mirror of Pulumi's checkpoint.

The state is a JSON document (mode 0600: it holds private keys, stdin and
random passwords in clear text, exactly like an unencrypted Pulumi
checkpoint would)::

    {
      "version": 1,
      "project": "ox-estate", "stack": "lab", "updated": "<iso time>",
      "graph":    {urn: {"type", "name", "parent", "dependencies": [urn]}},
      "commands": {urn: {"name", "inputs": {connection, create, delete, stdin,
                         environment, logging, addPreviousOutputInEnv, triggers},
                         "stdout", "stderr", "secretStdin": bool}},
      "random":   {urn: {"inputsHash", "result"}},
      "outputs":  {name: value}          # stack outputs; secrets keep the
                                         # Pulumi secret wrapper
    }

``graph`` holds every registered resource (components too) so that the
delete order can be derived through component parents and ``depends_on`` on
components, the way the engine's dependency graph does.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

STATE_VERSION = 1


def empty_state(project: str = "", stack: str = "") -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "project": project,
        "stack": stack,
        "graph": {},
        "commands": {},
        "random": {},
        "outputs": {},
    }


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a state file; a missing file is an empty state."""
    p = Path(path)
    if not p.exists():
        return empty_state()
    data = json.loads(p.read_text())
    base = empty_state()
    base.update(data)
    return base


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the state atomically with mode 0600 (it contains secrets)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    state["version"] = STATE_VERSION
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=str(p.parent))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def clear_state(path: str | os.PathLike[str]) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    """Remove Pulumi secret wrappers at any depth."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def _edges(graph: dict[str, dict[str, Any]], urn: str) -> set[str]:
    node = graph.get(urn) or {}
    out = set(node.get("dependencies") or [])
    if node.get("parent"):
        # A child is deleted before its parent: the engine treats children
        # as dependents of their parent.
        out.add(node["parent"])
    out.discard(urn)
    return out


def command_dependencies(
    graph: dict[str, dict[str, Any]], commands: set[str] | list[str]
) -> dict[str, set[str]]:
    """For every command URN, the commands it depends on, transitively.

    The walk goes through any resource in ``graph`` (components, randoms,
    ...), so ``depends_on=[component]`` and parent/child links count.
    """
    cmds = set(commands)
    result: dict[str, set[str]] = {}
    for c in cmds:
        seen: set[str] = set()
        stack = list(_edges(graph, c))
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            stack.extend(_edges(graph, u) - seen)
        result[c] = (seen & cmds) - {c}
    return result


def delete_plan(
    graph: dict[str, dict[str, Any]], commands: set[str] | list[str]
) -> dict[str, set[str]]:
    """For every command URN, the commands that must be deleted BEFORE it.

    That is its dependents (reverse dependency order, as ``pulumi destroy``).
    """
    deps = command_dependencies(graph, commands)
    dependents: dict[str, set[str]] = {c: set() for c in deps}
    for c, ds in deps.items():
        for d in ds:
            dependents[d].add(c)
    return dependents


def stack_from_reference(name: str) -> str:
    """'org/project/stack' or 'project/stack' or 'stack' -> 'stack'."""
    return name.rsplit("/", 1)[-1]


def wrap_secret(value: Any) -> dict[str, Any]:
    if is_secret(value):
        return value
    return {SECRET_SIG_KEY: SECRET_SIG, "value": value}

"""Stack config as the Pulumi CLI hands it to a program: `project:key` -> string."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml


class LabRunError(RuntimeError):
    """The lab run failed; the message says why (never contains secrets)."""


def read_project_name(program_dir: str | os.PathLike[str]) -> str:
    data = yaml.safe_load((Path(program_dir) / "Pulumi.yaml").read_text()) or {}
    name = data.get("name")
    if not name:
        raise LabRunError(f"{program_dir}/Pulumi.yaml has no 'name'")
    return str(name)


def stack_config_path(program_dir: str | os.PathLike[str], stack: str) -> Path:
    program_dir = Path(program_dir)
    data = yaml.safe_load((program_dir / "Pulumi.yaml").read_text()) or {}
    cfg_dir = data.get("stackConfigDir") or "."
    return program_dir / cfg_dir / f"Pulumi.{stack}.yaml"


def config_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Structured values become JSON (what Config.get_object parses); so do
    # scalars, so that booleans are "true"/"false" like the CLI sends them.
    return json.dumps(value)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def set_path(config: dict[str, Any], assignment: str, project: str) -> None:
    """Apply `ns:key.sub[0].leaf=VALUE` (VALUE read as YAML), as `pulumi config set --path` does."""
    key, sep, text = assignment.partition("=")
    if not sep:
        raise LabRunError(f"--set {assignment!r}: expected KEY=VALUE")
    namespace, _, path = key.rpartition(":") if ":" in key.split(".", 1)[0] else (project, ":", key)
    parts: list[Any] = [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART.finditer(path)]
    if not parts or not isinstance(parts[0], str):
        raise LabRunError(f"--set {assignment!r}: no key")
    parts[0] = f"{namespace}:{parts[0]}"
    node: Any = config
    for part, nxt in zip(parts, parts[1:]):
        if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
            node[part] = [] if isinstance(nxt, int) else {}
        elif isinstance(node, list) and part == len(node):
            node.append([] if isinstance(nxt, int) else {})
        node = node[part]
    last = parts[-1]
    value = yaml.safe_load(text)
    if isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value


def stack_config_data(program_dir: str | os.PathLike[str], stack: str, overrides: tuple[str, ...] = ()) -> dict:
    """The stack file's `config:` as structures, with `--set` overrides applied."""
    data = yaml.safe_load(stack_config_path(program_dir, stack).read_text()) or {}
    config = dict(data.get("config") or {})
    for assignment in overrides:
        set_path(config, assignment, read_project_name(program_dir))
    return config


def load_stack_config(program_dir: str | os.PathLike[str], stack: str,
                      overrides: tuple[str, ...] = ()) -> dict[str, str]:
    """Read ``<program_dir>/<stackConfigDir>/Pulumi.<stack>.yaml`` ``config:``.

    Keys without a namespace get the project's, as the CLI does. Values the
    lab cannot decrypt (``{secure: ...}``) are skipped: the caller passes
    secrets separately. `overrides` are `--set KEY=VALUE` assignments.
    """
    project = read_project_name(program_dir)
    out: dict[str, str] = {}
    for key, value in stack_config_data(program_dir, stack, overrides).items():
        key = str(key)
        if ":" not in key:
            key = f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        out[key] = config_value(value)
    return out


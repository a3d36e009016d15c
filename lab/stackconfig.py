"""Stack config as the Pulumi CLI hands it to a program: `project:key` -> string."""

from __future__ import annotations

import json
import os
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


def load_stack_config(program_dir: str | os.PathLike[str], stack: str) -> dict[str, str]:
    """Read ``<program_dir>/<stackConfigDir>/Pulumi.<stack>.yaml`` ``config:``.

    Keys without a namespace get the project's, as the CLI does. Values the
    lab cannot decrypt (``{secure: ...}``) are skipped: the caller passes
    secrets separately.
    """
    project = read_project_name(program_dir)
    path = stack_config_path(program_dir, stack)
    data = yaml.safe_load(path.read_text()) or {}
    out: dict[str, str] = {}
    for key, value in (data.get("config") or {}).items():
        key = str(key)
        if ":" not in key:
            key = f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        out[key] = config_value(value)
    return out


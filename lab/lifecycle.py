"""What the Pulumi engine does with each resource on `pulumi up`, decided the way it decides it.

Pure functions: the runner's monitor asks `plan_command`/`plan_random` for every resource the
program registers, and does what the answer says. The rules, and the provider and SDK lines
they follow, are in lab/README.md ("How the lab follows the engine"). In short:

- same:    no stored resource differs from the new inputs: nothing runs, the old outputs stand;
- create:  a URN the state does not hold;
- update:  an input changed that is not in replaceOnChanges: `update` runs if set, else `create`;
- replace: an input in replaceOnChanges changed (for a Command, `triggers`; for pulumi-random,
           every input): with deleteBeforeReplace the old `delete` runs first, otherwise the
           new `create` runs and the old `delete` runs with the other deletes at the end;
- delete:  a URN in the state that the program no longer registers.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any, Callable, Iterable, Optional

from . import runner_state as rs

SAME, CREATE, UPDATE, REPLACE, DELETE = "same", "create", "update", "replace", "delete"
OPS = (CREATE, UPDATE, REPLACE, DELETE, SAME)
SYMBOL = {CREATE: "+", UPDATE: "~", REPLACE: "+-", DELETE: "-", SAME: " "}

# pulumi-command's remote.Command inputs (provider/pkg/provider/remote/command.go CommandInputs,
# with common.ResourceInputs embedded). The infer framework diffs exactly these.
COMMAND_INPUTS = ("connection", "create", "update", "delete", "stdin", "environment", "logging",
                  "triggers", "addPreviousOutputInEnv")
# common/inputs.go: `Triggers *[]any `pulumi:"triggers,optional" provider:"replaceOnChanges"``;
# the SDK also sends replace_on_changes=["triggers[*]"] (pulumi_command/remote/command.py).
PROVIDER_REPLACE_ON_CHANGES = ("triggers",)
# pulumi-random's schema marks every input of RandomPassword/RandomString "forces new".
RANDOM_INPUTS = ("length", "special", "overrideSpecial", "upper", "lower", "numeric", "number",
                 "minUpper", "minLower", "minNumeric", "minSpecial", "keepers")


def is_unknown(value: Any) -> bool:
    """True where a value (at any depth) is only known once a step has run (a preview's unknowns)."""
    from pulumi.output import Unknown
    from pulumi.runtime.rpc import UNKNOWN

    if isinstance(value, Unknown) or value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_unknown(v) for v in value)
    return False


def _normal(value: Any) -> Any:
    # Numbers arrive as floats from the wire and as ints from JSON; compare them as numbers.
    value = rs.unwrap(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def changed_inputs(old: dict[str, Any], new: dict[str, Any], keys: Iterable[str]) -> list[str]:
    """The input keys whose values differ (an unknown new value counts as a change)."""
    changed = []
    for k in keys:
        if is_unknown(new.get(k)) or _normal(old.get(k)) != _normal(new.get(k)):
            changed.append(k)
    return changed


def top_key(path: str) -> str:
    """The top-level input a property path (`triggers`, `triggers[*]`, `a.b`) names."""
    return path.split("[", 1)[0].split(".", 1)[0]


def _replaces(key: str, patterns: Iterable[str]) -> bool:
    """Does a replaceOnChanges pattern (`triggers`, `triggers[*]`, `*`) cover a top-level key?"""
    return any(top_key(p) in ("*", key) for p in patterns)


def with_ignored(stored: Optional[dict], inputs: dict[str, Any], ignore_changes: Iterable[str]) -> dict[str, Any]:
    """The inputs the engine goes on with: an input in `ignoreChanges` keeps its stored value,
    so it never counts as a change."""
    if not stored:
        return inputs
    ignored = {top_key(p) for p in ignore_changes}
    return {**inputs, **{k: v for k, v in (stored.get("inputs") or {}).items() if k in ignored}}


def plan_command(stored: Optional[dict], inputs: dict[str, Any],
                 replace_on_changes: Iterable[str] = ()) -> tuple[str, list[str]]:
    """(operation, changed input keys) for a remote.Command (inputs after `with_ignored`)."""
    if stored is None:
        return CREATE, []
    changed = changed_inputs(stored.get("inputs") or {}, inputs, COMMAND_INPUTS)
    if not changed:
        return SAME, []
    patterns = (*PROVIDER_REPLACE_ON_CHANGES, *replace_on_changes)
    if any(_replaces(k, patterns) for k in changed):
        return REPLACE, changed
    return UPDATE, changed


def random_inputs_hash(inputs: dict[str, Any]) -> str:
    i = _normal(inputs)
    relevant = {k: i.get(k) for k in RANDOM_INPUTS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def plan_random(stored: Optional[dict], inputs: dict[str, Any]) -> str:
    if stored is None:
        return CREATE
    if is_unknown({k: inputs.get(k) for k in RANDOM_INPUTS}):
        return REPLACE
    return SAME if stored.get("inputsHash") == random_inputs_hash(inputs) else REPLACE


def counts(ops: Iterable[str]) -> dict[str, int]:
    out = {op: 0 for op in OPS}
    for op in ops:
        out[op] += 1
    return out


def summary(ops: Iterable[str]) -> str:
    """Pulumi's closing line: `+ 3 to create, ~ 2 to update, +- 1 to replace, - 0 to delete, 90 unchanged`."""
    c = counts(ops)
    return (f"+ {c[CREATE]} to create, ~ {c[UPDATE]} to update, +- {c[REPLACE]} to replace, "
            f"- {c[DELETE]} to delete, {c[SAME]} unchanged")


def script_diff(name: str, old: Optional[str], new: Any, scrub: Callable[[str], str]) -> str:
    """A unified diff of a step's command text, secrets masked; unknown text says so."""
    if is_unknown(new):
        return f"    (the new {name} script is known only once the steps before it have run)\n"
    a = scrub(old or "").splitlines(keepends=True)
    b = scrub(new or "").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, fromfile=f"{name} (state)", tofile=f"{name} (program)", n=2)
    return "".join("    " + ln if ln.endswith("\n") else "    " + ln + "\n" for ln in lines)

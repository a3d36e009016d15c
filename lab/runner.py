"""Run the ox-estate Pulumi program for real, without the Pulumi CLI: `up`, `preview`, `destroy`.

The Pulumi CLI and its provider plugins cannot be installed on the lab machines. The lab runs
the SAME program anyway, in-process under `pulumi.runtime.set_mocks`, with a monitor
(`lab/monitor.py`) that follows the engine's lifecycle (`lab/lifecycle.py`) and runs every
`remote.Command` that the engine would run over SSH (`lab/ssh.py`), keeping a state file
(`lab/runner_state.py`) between runs:

- `up`: an unchanged resource runs nothing; a new one is created; a changed one is updated or
  replaced, as lab/README.md sets out; resources no longer in the program, and the old halves of
  create-before-delete replacements, are deleted at the end, dependents first.
- `preview`: the same plan, computed without touching a host (no SSH connection is opened);
  what would only be known once a step ran is unknown, as the engine shows it.
- `destroy`: every stored `delete`, in reverse dependency order, then the state is cleared.

Differences from the engine (deliberate): each command has a timeout (`LAB_COMMAND_TIMEOUT`,
default 1800 s); after the first failed step nothing new starts (in-flight steps finish), like
the engine without `--continue-on-error`; the state is a JSON mirror, not a checkpoint.

CLI (one program run per process, like the language host)::

    python -m lab.runner up|preview|destroy --program DIR --stack NAME
        [--state FILE] [--record FILE] [--extra-config FILE.json] [--diff] [-v]

`--extra-config` is a JSON file `{"config": {...}, "secretKeys": [...]}` merged over the stack
file's config (use it for secrets, never argv).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import lifecycle as lc
from . import runner_state as rs
from .monitor import COMMAND_TYPE, DEFAULT_COMMAND_TIMEOUT, Lab, name_of, random_value  # noqa: F401
from .program import execute_program
from .progress import CommandFailed, Progress
from .stackconfig import LabRunError, config_value, load_stack_config, read_project_name, stack_config_path  # noqa: F401

DEFAULT_MAX_WORKERS = 64
MODES = ("up", "preview", "destroy")


@dataclass
class RunResult:
    mode: str
    stack: str
    outputs: dict[str, Any]
    state_path: Path
    record_path: Path
    duration: float
    steps: list[dict[str, Any]]
    scrub: Callable[[str], str] = lambda s: s  # removes known secret values
    plan: list[dict[str, Any]] = field(default_factory=list)  # one row per resource, with its operation
    ssh_connections: int = 0
    scripts: dict[str, tuple] = field(default_factory=dict)  # urn -> (create in the state, create now)

    @property
    def executed(self) -> list[dict[str, Any]]:
        """The remote commands this run actually ran (create, update, replace or delete)."""
        return [s for s in self.steps if s.get("type") == COMMAND_TYPE and s.get("start") is not None]


def _default_paths(program_dir: Path, stack: str, mode: str, state_path, record_path):
    state_path = Path(state_path) if state_path else program_dir / "lab" / "state" / f"{stack}.json"
    record_path = Path(record_path) if record_path else program_dir / "lab" / "out" / f"{stack}-{mode}-record.json"
    return state_path, record_path


def _plan_rows(lab: Lab, deleted: dict[str, dict]) -> list[dict[str, Any]]:
    """The plan as rows (JSON-safe), in registration order, deletes last."""
    rows = []
    for urn, p in lab.plan.items():
        rows.append({"urn": urn, "name": p["name"], "type": p["type"], "op": p["op"], "host": p.get("host"),
                     "hostName": lab.label(p.get("host")) if p.get("host") else None,
                     "changed": p.get("changed") or [], "hasDelete": p.get("hasDelete", False),
                     "deleteBeforeReplace": p.get("deleteBeforeReplace", False)})
    for urn, entry in deleted.items():
        host = entry.get("host")
        rows.append({"urn": urn, "name": entry.get("name") or name_of(urn), "type": entry.get("type", COMMAND_TYPE),
                     "op": lc.DELETE, "host": host, "hostName": lab.label(host) if host else None, "changed": [],
                     "hasDelete": bool((entry.get("inputs") or {}).get("delete")), "deleteBeforeReplace": False})
    return rows


def _scripts(lab: Lab) -> dict[str, tuple]:
    return {u: (p.get("oldCreate"), p.get("newCreate")) for u, p in lab.plan.items() if p["type"] == COMMAND_TYPE}


def _write_record(path: Path, lab: Lab, mode: str, ok: bool, error: Optional[str], duration: float,
                  plan: list[dict]) -> None:
    names = {u: n.get("name") or name_of(u) for u, n in lab.graph.items()}
    steps = []
    with lab.lock:
        raw = list(lab.steps)
        graph = dict(lab.graph)
    for s in sorted(raw, key=lambda s: (s.get("start") is None, s.get("start") or 0)):
        deps = (graph.get(s["urn"]) or {}).get("dependencies") or s.get("dependencies") or []
        s = dict(s)
        for k in ("start", "end"):
            if isinstance(s.get(k), float):
                s[k] = round(s[k], 3)
        s["dependencies"] = sorted({names.get(u, name_of(u)) for u in deps})
        steps.append(s)
    executed = [s for s in steps if s.get("type") == COMMAND_TYPE and s.get("start") is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"project": lab.project, "stack": lab.stack, "mode": mode, "ok": ok, "error": error,
           "duration": round(duration, 3),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - duration)),
           "executed": len(executed), "sshConnections": lab.pool.dials,
           "operations": lc.counts(r["op"] for r in plan), "plan": plan, "steps": steps}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def run_program(program_dir: str | os.PathLike[str], stack: str, config: dict[str, str], secret_keys: list[str],
                mode: str = "up", record_path: Optional[str | os.PathLike[str]] = None,
                state_path: Optional[str | os.PathLike[str]] = None, *,
                host_names: Optional[dict[str, str]] = None, verbose: bool = False,
                command_timeout: Optional[float] = DEFAULT_COMMAND_TIMEOUT,
                max_workers: int = DEFAULT_MAX_WORKERS, stream=None) -> RunResult:
    """Run `<program_dir>/__main__.py` as `pulumi up`, `pulumi preview` or `pulumi destroy` would.

    Raises :class:`LabRunError` on any failure, after writing the record and (partial) state.
    `config` is the full config map (`project:key` -> string, as :func:`load_stack_config`
    returns it plus any secrets); `secret_keys` names the secret ones. `host_names` maps
    addresses to display names.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    program_dir = Path(program_dir).resolve()
    project = read_project_name(program_dir)
    state_path, record_path = _default_paths(program_dir, stack, mode, state_path, record_path)
    old_state = rs.load_state(state_path)
    progress = Progress(stream, verbose)
    for k in secret_keys:
        if k in config:
            progress.add_secret(config[k])
    lab = Lab(project=project, stack=stack, old_state=old_state, state_dir=state_path.parent, mode=mode,
              host_names=host_names, progress=progress, command_timeout=command_timeout)
    t0 = time.monotonic()
    try:
        if mode == "destroy":
            return _destroy(lab, old_state, state_path, record_path, max_workers, t0)
        return _up(lab, program_dir, config, secret_keys, old_state, state_path, record_path, max_workers, t0)
    finally:
        lab.pool.close_all()


def _failure_message(lab: Lab, error: Optional[BaseException], program_dir: Path) -> Optional[str]:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted; steps in flight were stopped"
    if lab.failures:
        message = str(lab.failures[0])
        others = [f for f in lab.failures[1:] if isinstance(f, CommandFailed)]
        if others:
            message += "\nalso failed: " + ", ".join(
                f"{f.name} on {f.host} (" + (f"exit {f.exit_code})" if f.exit_code is not None else "no exit code)")
                for f in others)
        return message
    if error is not None:
        return lab.progress.scrub(f"the program failed: {type(error).__name__}: {error}\n"
                                  + _program_traceback(error, program_dir))
    if lab.outputs is None:
        return "the program finished but the stack outputs were never registered"
    return None


def _up(lab: Lab, program_dir, config, secret_keys, old_state, state_path, record_path, max_workers, t0):
    verb = "preview" if lab.preview else "up"
    lab.progress.line(f"{verb:<6} {lab.project}/{lab.stack}")
    error = execute_program(lab, program_dir, config, secret_keys, max_workers)
    message = _failure_message(lab, error, program_dir)
    # What the state holds that the program no longer registers is deleted, and so is the old
    # half of every create-before-delete replacement: the engine does both at the end.
    old_commands = old_state.get("commands", {})
    orphans = {u: {**c, "type": COMMAND_TYPE} for u, c in old_commands.items() if u not in lab.plan}
    orphans.update({u: {"name": name_of(u), "type": r.get("type", "random")}
                    for u, r in (old_state.get("random") or {}).items() if u not in lab.plan})
    plan = _plan_rows(lab, orphans if message is None else {})
    if lab.preview:
        duration = time.monotonic() - t0
        _write_record(record_path, lab, "preview", message is None, message, duration, plan)
        if message is not None:
            raise LabRunError(message)
        return RunResult("preview", lab.stack, {}, state_path, record_path, duration, list(lab.steps),
                         lab.progress.scrub, plan, lab.pool.dials, _scripts(lab))

    # Merge into the state: what ran now replaces, what did not run now is
    # kept (it still exists on the hosts) unless a successful run deletes it.
    new_state = rs.empty_state(lab.project, lab.stack)
    new_state["graph"] = {**old_state.get("graph", {}), **lab.graph}
    new_state["commands"] = {**old_commands, **lab.commands}
    new_state["random"] = {**old_state.get("random", {}), **lab.random}
    new_state["outputs"] = lab.outputs if lab.outputs is not None else old_state.get("outputs", {})
    if message is None:
        deletes = {u: c for u, c in orphans.items() if c["type"] == COMMAND_TYPE}
        deletes.update({f"{u}#replaced": c for u, c in lab.replaced.items()})
        if deletes:
            lab.progress.line(f"deleting {len(deletes)} command(s) no longer in the program or replaced")
            graph = {**old_state.get("graph", {}), **{f"{u}#replaced": old_state.get("graph", {}).get(u, {})
                                                      for u in lab.replaced}}
            done, err = _run_deletes(lab, deletes, graph, max_workers)
            for u in done:
                new_state["commands"].pop(u, None)
            message = err
        if message is None:
            keep = set(lab.graph)
            new_state["graph"] = dict(lab.graph)
            new_state["commands"] = {u: c for u, c in new_state["commands"].items() if u in keep}
            new_state["random"] = dict(lab.random)
    rs.save_state(state_path, new_state)
    duration = time.monotonic() - t0
    _write_record(record_path, lab, "up", message is None, message, duration, plan)
    if message is not None:
        lab.progress.line(f"FAILED up {lab.stack} after {duration:.2f}s")
        raise LabRunError(message)
    result = RunResult("up", lab.stack, lab.outputs or {}, state_path, record_path, duration, list(lab.steps),
                       lab.progress.scrub, plan, lab.pool.dials, _scripts(lab))
    lab.progress.line(f"done   up {lab.stack} in {duration:.2f}s ({len(result.executed)} commands run; "
                      f"{lc.summary(r['op'] for r in plan)})")
    return result


def _program_traceback(error: BaseException, program_dir: Path) -> str:
    """The traceback frames that belong to the program (not the SDK/runner)."""
    frames: list = []
    seen: set[int] = set()
    exn: Optional[BaseException] = error
    while exn is not None and id(exn) not in seen:  # the whole cause chain
        seen.add(id(exn))
        frames = list(traceback.extract_tb(exn.__traceback__)) + frames
        exn = exn.__cause__ or exn.__context__
    venv = str(program_dir / ".venv")
    mine = [f for f in frames
            if f.filename.startswith(str(program_dir)) and not f.filename.startswith(venv)
            and not f.filename.startswith(str(Path(__file__).parent))]
    picked = mine or frames[-5:]
    return "".join(traceback.format_list(picked))


def _run_deletes(lab: Lab, entries: dict[str, dict], graph: dict, max_workers: int) -> tuple[set[str], Optional[str]]:
    """Run the `delete` of the given commands in reverse dependency order.

    Returns (keys deleted, error message or None).
    """
    before = rs.delete_plan(graph, list(entries))
    done: set[str] = set()
    started: set[str] = set()
    errors: list[str] = []
    futures = {}
    # Our own pool here: deletes are not called through the SDK.
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lab-delete") as ex:
        while True:
            if not errors:  # after a failure, start nothing new
                for u in sorted(before):
                    if u not in started and before[u] <= done:
                        started.add(u)
                        futures[ex.submit(lab.run_delete, u.split("#", 1)[0], entries[u])] = u
            if not futures:
                break
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for f in finished:
                u = futures.pop(f)
                exn = f.exception()
                if exn is None:
                    done.add(u)
                else:
                    errors.append(str(exn))
    remaining = set(before) - done
    if errors:
        return done, errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    if remaining:
        return done, f"could not delete {len(remaining)} command(s) (dependency cycle?)"
    return done, None


def _destroy(lab: Lab, state: dict, state_path: Path, record_path: Path, max_workers: int, t0: float):
    lab.progress.line(f"destroy {lab.project}/{lab.stack}")
    commands = state.get("commands", {})
    lab.graph = dict(state.get("graph", {}))
    done, message = _run_deletes(lab, dict(commands), lab.graph, max_workers)
    duration = time.monotonic() - t0
    if message is None:
        rs.clear_state(state_path)
    else:
        left = dict(state)
        left["commands"] = {u: c for u, c in commands.items() if u not in done}
        rs.save_state(state_path, left)
    plan = [{"urn": u, "name": c.get("name") or name_of(u), "type": COMMAND_TYPE, "op": lc.DELETE,
             "host": c.get("host"), "changed": []} for u, c in commands.items()]
    _write_record(record_path, lab, "destroy", message is None, message, duration, plan)
    if message is not None:
        lab.progress.line(f"FAILED destroy {lab.stack} after {duration:.2f}s")
        raise LabRunError(message)
    n_deletes = sum(1 for s in lab.steps if s.get("exitCode") == 0)
    lab.progress.line(f"done   destroy {lab.stack} in {duration:.2f}s "
                      f"({len(done)} command(s), {n_deletes} delete(s) run)")
    return RunResult("destroy", lab.stack, {}, state_path, record_path, duration, list(lab.steps),
                     lab.progress.scrub, plan, lab.pool.dials)


# --------------------------------------------------------------------------
# helpers for callers


def format_plan(result: RunResult, diff: bool = False, show_same: bool = False) -> str:
    """What `pulumi preview` prints: one line per resource that changes, then the summary line.

    With `diff`, each changed command's script as a unified diff against the state (secrets masked).
    """
    lines = []
    for row in result.plan:
        if row["op"] == lc.SAME and not show_same:
            continue
        host = row.get("hostName") or row.get("host") or ""
        changed = f"  [{', '.join(row['changed'])}]" if row.get("changed") else ""
        kind = "" if row["type"] == COMMAND_TYPE else f"  ({row['type']})"
        lines.append(f"  {lc.SYMBOL[row['op']]:<2} {row['op']:<7} {row['name']}"
                     f"{'  on ' + host if host else ''}{kind}{changed}")
        if diff and row["type"] == COMMAND_TYPE and row["op"] in (lc.UPDATE, lc.REPLACE, lc.CREATE):
            old, new = result.scripts.get(row["urn"], (None, None))
            lines.append(lc.script_diff(row["name"], old, new, result.scrub).rstrip("\n"))
    lines.append(lc.summary(r["op"] for r in result.plan))
    return "\n".join(lines)


def mask_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """Stack outputs for display: secret values become '[secret]'."""

    def m(v):
        if rs.is_secret(v):
            return "[secret]"
        if isinstance(v, dict):
            return {k: m(x) for k, x in v.items()}
        if isinstance(v, list):
            return [m(x) for x in v]
        return v

    return {k: m(v) for k, v in (outputs or {}).items()}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("--program", required=True, help="program directory (has Pulumi.yaml)")
    ap.add_argument("--stack", required=True)
    ap.add_argument("--state")
    ap.add_argument("--record")
    ap.add_argument("--extra-config", help='JSON file {"config": {...}, "secretKeys": [...]}')
    ap.add_argument("--host-names", help='JSON file {"address": "name"}')
    ap.add_argument("--command-timeout", type=float, default=DEFAULT_COMMAND_TIMEOUT)
    ap.add_argument("--diff", action="store_true", help="preview: show each changed script as a diff")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    if a.mode != "destroy":
        config = load_stack_config(a.program, a.stack)
    if a.extra_config:
        extra = json.loads(Path(a.extra_config).read_text())
        config.update({k: config_value(v) for k, v in (extra.get("config") or {}).items()})
        secret_keys = list(extra.get("secretKeys") or [])
    host_names = json.loads(Path(a.host_names).read_text()) if a.host_names else None
    try:
        result = run_program(a.program, a.stack, config, secret_keys, a.mode, a.record, a.state,
                             host_names=host_names, verbose=a.verbose, command_timeout=a.command_timeout)
    except LabRunError as exn:
        print(f"lab: {a.mode} failed: {exn}", file=sys.stderr)
        return 1
    if a.mode == "preview":
        print(format_plan(result, diff=a.diff))
    elif a.mode == "up":
        print(result.scrub(json.dumps(mask_outputs(result.outputs), indent=2, sort_keys=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lab CLI.

    python -m lab up      [--stack lab] [--converge] [-v]
                              create the lab hosts, install the stand-ins, run the program as
                              `pulumi up` would (what is unchanged does not run); --converge
                              sets a new ox-estate:converge token, so every probe-and-repair
                              step runs once more (`pulumi up -c ox-estate:converge=$(date +%s)`)
    python -m lab preview [--stack lab] [--diff]
                              what `up` would do, resource by resource, touching no host
    python -m lab down    [--stack lab] [-v]   run every delete (reverse order),
                                               then remove the lab hosts
    python -m lab verify  [--stack lab]        run lab/verify.py's checks, if any

State: lab/state/<stack>.json (0600). Timings: lab/out/<stack>-<mode>-record.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path


from lab import lifecycle, runner, runner_state, stackconfig

ROOT = Path(__file__).resolve().parent.parent
KEY = "ox-estate:sshPrivateKey"


def _stack_config(a) -> dict:
    return stackconfig.stack_config_data(ROOT, a.stack, tuple(getattr(a, "set", None) or ()))


def _hosts(cfg: dict) -> list[tuple[str, str]]:
    return [(str(h["name"]), str(h["address"])) for h in cfg.get("ox-estate:hosts") or []
            if isinstance(h, dict) and h.get("name") and h.get("address")]


def _middleware_hosts(cfg: dict) -> list[str]:
    """Hosts under ox-estate:middleware -> nodes -> host (one group or a list)."""
    mw = cfg.get("ox-estate:middleware")
    groups = mw if isinstance(mw, list) else [mw] if isinstance(mw, dict) else []
    names: list[str] = []
    for g in groups:
        for n in (g.get("nodes") or []) if isinstance(g, dict) else []:
            host = n.get("host") if isinstance(n, dict) else n if isinstance(n, str) else None
            if host and str(host) not in names:
                names.append(str(host))
    return names


def _converter_hosts(cfg: dict) -> list[str]:
    """Hosts under ox-estate:documentConverter -> nodes -> host."""
    dc = cfg.get("ox-estate:documentConverter")
    nodes = (dc.get("nodes") or []) if isinstance(dc, dict) else []
    return list(dict.fromkeys(str(n["host"]) for n in nodes if isinstance(n, dict) and n.get("host")))


def _install_standins(names: list[str], converter: bool = False) -> None:
    from lab import hosts
    from lab.standins import layout

    files = layout.converter_files() if converter else layout.files()
    pick_mode = getattr(layout, "mode", lambda _src: 0o755)
    by_mode: dict[int, dict] = {}
    for dest, src in files.items():
        by_mode.setdefault(pick_mode(src), {})[dest] = src
    for name in names:
        for mode, group in by_mode.items():
            hosts.install_files(name, group, mode=mode)
        print(f"lab: stand-ins installed on {name} ({len(files)} files)", file=sys.stderr)


def _paths(stack: str, mode: str) -> tuple[Path, Path]:
    return ROOT / "lab" / "state" / f"{stack}.json", ROOT / "lab" / "out" / f"{stack}-{mode}-record.json"


def _verify(state: dict) -> bool:
    if importlib.util.find_spec("lab.verify") is None:
        print("verify: no verifier exists yet (lab/verify.py with verify(state))")
        return True
    from lab.verify import verify

    rows = verify(state)
    width = max([len(str(c)) for c, _, _ in rows] + [5])
    for check, ok, detail in rows:
        print(f"  {'ok  ' if ok else 'FAIL'}  {str(check):<{width}}  {detail}")
    print(f"verify: {sum(1 for r in rows if r[1])}/{len(rows)} checks passed")
    return all(ok for _, ok, _ in rows)


def _config(a) -> dict[str, str]:
    from lab import hosts

    config = runner.load_stack_config(ROOT, a.stack, tuple(getattr(a, "set", None) or ()))
    key_file = getattr(a, "ssh_key", None)
    config[KEY] = Path(key_file).read_text() if key_file else hosts.client_key_path().read_text()
    # `pulumi up -c ox-estate:converge=<token>` keeps the token in the stack's config, so the next
    # plain `up` does not see it removed (which would re-run those steps once more); nor does the lab.
    token_file = _paths(a.stack, "up")[0].with_suffix(".converge")
    if getattr(a, "converge", False):
        # A new token each time: exactly the probe-and-repair steps see a changed script.
        token = f"lab-{time.time_ns()}"
        if a.command == "up":
            token_file.parent.mkdir(parents=True, exist_ok=True)
            token_file.write_text(token + "\n")
        config["ox-estate:converge"] = token
    elif token_file.exists() and "ox-estate:converge" not in config:
        config["ox-estate:converge"] = token_file.read_text().strip()
    return config


def preview(a) -> int:
    from lab import hosts

    if not hosts.client_key_path().exists():
        print("lab: no lab key yet (run `python -m lab up` first): everything would be created", file=sys.stderr)
        return 1
    host_list = _hosts(_stack_config(a))
    state_path, record_path = _paths(a.stack, "preview")
    try:
        result = runner.run_program(ROOT, a.stack, _config(a), [KEY], "preview", record_path, state_path,
                                    host_names={addr: n for n, addr in host_list}, verbose=a.verbose)
    except runner.LabRunError as exn:
        print(f"lab: preview failed: {exn}", file=sys.stderr)
        return 1
    print(runner.format_plan(result, diff=a.diff))
    return 0


def up(a) -> int:
    from lab import hosts

    cfg = _stack_config(a)
    host_list = _hosts(cfg)
    try:
        hosts.create(host_list, subnet=a.subnet)
        _install_standins(_middleware_hosts(cfg))
        _install_standins(_converter_hosts(cfg), converter=True)
    except (hosts.LabError, subprocess.CalledProcessError) as exn:
        print(f"lab: cannot prepare the lab hosts: {exn}", file=sys.stderr)
        return 1
    config = _config(a)
    state_path, record_path = _paths(a.stack, "up")
    try:
        result = runner.run_program(ROOT, a.stack, config, [KEY], "up", record_path, state_path,
                                    host_names={addr: n for n, addr in host_list}, verbose=a.verbose)
    except runner.LabRunError as exn:
        print(f"lab: up failed: {exn}", file=sys.stderr)
        return 1
    print("outputs:")
    print(result.scrub(json.dumps(runner.mask_outputs(result.outputs), indent=2, sort_keys=True)))
    print(f"up took {result.duration:.1f}s, ran {len(result.executed)} commands "
          f"({lifecycle.summary(r['op'] for r in result.plan)}); record: {record_path}")
    if getattr(a, "no_verify", False):
        return 0
    return 0 if _verify(runner_state.load_state(state_path)) else 1


def down(a) -> int:
    from lab import hosts

    host_list = _hosts(_stack_config(a))
    state_path, record_path = _paths(a.stack, "destroy")
    rc = 0
    try:
        runner.run_program(ROOT, a.stack, {}, [], "destroy", record_path, state_path,
                           host_names={addr: n for n, addr in host_list}, verbose=a.verbose)
    except runner.LabRunError as exn:
        print(f"lab: a delete failed: {exn}\nlab: removing the hosts anyway", file=sys.stderr)
        runner_state.clear_state(state_path)  # whatever was left goes with the hosts
        rc = 1
    _paths(a.stack, "up")[0].with_suffix(".converge").unlink(missing_ok=True)
    hosts.destroy()
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["up", "preview", "down", "verify"])
    ap.add_argument("--stack", default="lab")
    ap.add_argument("--subnet", default="10.213.0.0/24")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a stack config value for this run, e.g. "
                         "--set 'frontend.adminNetworks=[10.213.0.0/29]' (VALUE is YAML)")
    ap.add_argument("--ssh-key", metavar="FILE", help="deploy with this private key instead of the lab's "
                                                       "(a key rotation: its public key must be authorized)")
    ap.add_argument("--converge", action="store_true", help="up: re-run every probe-and-repair step once")
    ap.add_argument("--no-verify", action="store_true",
                    help="up: skip lab/verify.py (for a test that checks what it needs itself)")
    ap.add_argument("--diff", action="store_true", help="preview: each changed script as a diff")
    ap.add_argument("-v", "--verbose", action="store_true", help="show command output (never secrets)")
    a = ap.parse_args(argv)
    if a.command == "up":
        return up(a)
    if a.command == "preview":
        return preview(a)
    if a.command == "down":
        return down(a)
    return 0 if _verify(runner_state.load_state(_paths(a.stack, "up")[0])) else 1


if __name__ == "__main__":
    sys.exit(main())

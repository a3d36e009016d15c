"""The steps each knob of the single-knob matrix touches, under the unit tests' mocks.

    .venv/bin/python -m benchmarks.knobs     (prints one JSON line)

The matrix is tests/unit/test_changes_take_effect.py's (single_knobs: one setting changed from
tests/conftest.py's BASE_CONFIG at a time). For each knob the whole program is evaluated under
mocks and its remote steps' scripts (create, update, delete) compared with the unchanged config's:
a step whose script differs would run again (an update), a new one is created, a missing one deleted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys

from benchmarks.figures import ROOT, changed_steps

SECRET = {"sshPrivateKey"}


def _fresh_runtime() -> None:
    """What tests/conftest.py's autouse fixture does between tests: one program per event loop."""
    from pulumi.runtime import settings

    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    settings.ROOT.set(None)
    gc.collect()
    asyncio.set_event_loop(asyncio.new_event_loop())


def steps(config: dict) -> dict[str, str]:
    import harness

    _fresh_runtime()
    recording = harness.run_program(config, SECRET)
    return {r.name: json.dumps([harness.unwrap(r.inputs.get(f)) for f in ("create", "update", "delete")],
                               sort_keys=True, default=str)
            for r in recording.of_type("command:remote:Command")}


def main() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "unit")]
    import copy

    from benchmarks.scale import ssh_key
    from conftest import BASE_CONFIG
    from test_changes_take_effect import single_knobs

    def config(**overrides):
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg.update(copy.deepcopy(overrides), sshPrivateKey=key)
        return cfg

    key = ssh_key()
    base = steps(config())
    out = {"steps": len(base), "knobs": {label: changed_steps(base, steps(config(**overrides)))
                                         for label, overrides in single_knobs().items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

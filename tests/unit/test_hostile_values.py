"""Every value that reaches a script or a config file, made hostile, is quoted or refused.

The program is built under mocks with a config that uses every template (repository packages,
master-master with a floating address, a first context, colocated frontends with one, and
dedicated frontends, document converters with and without Galera's HAProxy, are covered by the
two builds).
Each call to render() is recorded with its values. Then every string in those values, one at a
time, is replaced by each hostile value below, and the template rendered again:

- either the render refuses it (UnsafeValue: it was not a plain token where the template writes it
  raw, or it holds a newline where a filter cannot carry one);
- or the output is safe: a script passes `bash -n`, and run as `nobody` in a throwaway directory,
  with every command a no-op and every `exit`/`ox_fail` ignored so that each line runs, it never
  creates the canary file the hostile values try to create; a config file keeps its line count.

Config validation refuses these values first (test_config.py's catalogue); this shows the
rendering path holds on its own, also for values that come from hosts (facts, ids).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from components.core import render as render_module
from components.core.render import Rendered, UnsafeValue, render
from conftest import BASE_CONFIG
from harness import run_program

# Per process, so two runs on one machine never share (or remove) each other's sandbox.
SANDBOX = Path(tempfile.gettempdir()) / f"ox-estate-hostile-{os.getpid()}"
CANARY = SANDBOX / "canary"
C = str(CANARY)
HOSTILE = [
    f"x\n:>{C}\n",  # a newline, then a command
    f"$(:>{C})",
    f"`:>{C}`",
    f"';:>{C};'",
    f'";:>{C};"',
    f"\\';:>{C};#",
    f"x\nOX_EOF\n:>{C}\nOX_EOF\n",  # ends a quoted heredoc early, then a command
    f"OX_CNF_EOF\n:>{C}",
    f"x;:>{C}",
    f"x|:>{C}",
    f"x&&:>{C}",
    f"${{IFS}}:>{C}",
    f"-oProxyCommand=:>{C}",  # an option where an argument was meant
    "%s%s%n%x%%",  # printf and Apache % forms
    "x\r\nInjected: header",
    "x\x00y",
    "a" * 65536,  # 64 KB
]
# Builds that between them use every template.
CONVERTER_HOSTS = [{"name": "dc1", "address": "10.0.0.51"}, {"name": "dc2", "address": "10.0.0.52"}]
CONVERTERS = {"nodes": [{"host": "dc1", "route": "DC1"}, {"host": "dc2", "route": "DC2"}], "jobProcessorCount": 4}
BUILDS = {
    "dedicated": {"middleware": {**BASE_CONFIG["middleware"], "packageSource": "repository",
                                 "repositoryUrl": "https://software.example.com/appsuite/DebianBookworm",
                                 "repositoryUser": "customer",
                                 "firstContext": {"contextId": 1, "name": "ctx", "mappings": ["example.com"]}},
                  "oxRepositoryPassword": "repo-pw",
                  "database": {**BASE_CONFIG["database"], "gtid": {**BASE_CONFIG["database"]["gtid"],
                                                                   "mode": "master-master",
                                                                   "floatingAddress": "10.0.0.100/24"}},
                  "filestore": {"server": "nfs1", "implementation": "ganesha"},
                  # converters from the repository, behind Galera's HAProxy (the converter listener added)
                  "hosts": BASE_CONFIG["hosts"] + CONVERTER_HOSTS, "documentConverter": CONVERTERS},
    "colocated": {"frontend": {"mode": "colocated", "adminNetworks": ["10.0.0.0/24"],
                               "floatingAddress": "10.0.0.200/24"},
                  "hosts": BASE_CONFIG["hosts"] + [{"name": "db6", "address": "10.0.0.16"}] + CONVERTER_HOSTS,
                  "database": {"standalone": {"host": "db6"}, "configdb": "standalone"},
                  # preinstalled converters, and HAProxy for them alone (no Galera)
                  "documentConverter": CONVERTERS,
                  "filestore": {"server": "nfs1", "implementation": "kernel", "clientMount": "nfs"}},
}


@dataclasses.dataclass
class Call:
    template: str
    values: dict[str, Any]


class _Recorder:
    """Stands in for render's jinja Environment and keeps every (template, values)."""

    def __init__(self, env):
        self.env, self.calls = env, []

    def get_template(self, name):
        template = self.env.get_template(name)
        calls = self.calls

        class Recording:
            def render(self, **values):
                calls.append(Call(name, values))
                return template.render(**values)

        return Recording()


@pytest.fixture(scope="module")
def calls(ssh_key) -> list[Call]:
    env = render_module._ENV
    recorder = _Recorder(env)
    render_module._ENV = recorder
    try:
        for overrides in BUILDS.values():
            config = {**BASE_CONFIG, "sshPrivateKey": ssh_key, **overrides}
            secret = {"sshPrivateKey", *(k for k in overrides if k.endswith("Password"))}
            # A module fixture runs outside the per-test event loop (tests/conftest.py): its own.
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                run_program(config, secret)
            finally:
                loop.close()
    finally:
        render_module._ENV = env
    unique: dict[str, Call] = {}
    for call in recorder.calls:
        unique.setdefault(f"{call.template} {sorted(_leaves(call.values))}", call)
    return list(unique.values())


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths to the plain strings in a value (Rendered text is the output of an earlier render)."""
    if isinstance(value, Rendered):
        return
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), (*path, f.name))


def _replaced(value: Any, path: tuple, new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    if isinstance(value, (list, tuple)):
        items = list(value)
        items[head] = _replaced(items[head], rest, new)
        return type(value)(items) if isinstance(value, tuple) else items
    return dataclasses.replace(value, **{head: _replaced(getattr(value, head), rest, new)})


# Run as nobody with every command a no-op, errors and exits ignored, so every line executes.
SHIM = """
set +e +u +o pipefail
trap - ERR
command_not_found_handle() { return 0; }
ox_fail() { :; }
exit() { :; }
ox_poll() { shift 2; "$@" >/dev/null 2>&1; return 0; }  # one try: a wait is not what is audited
"""


def _run_sandboxed(script: str) -> None:
    path = SANDBOX / "script.sh"
    path.write_text(script)
    stubs = SANDBOX / "no-commands"
    stubs.mkdir(exist_ok=True)
    try:
        subprocess.run(["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/bash", str(path)],
                       cwd=SANDBOX, env={"PATH": str(stubs), "HOME": str(SANDBOX), "LC_ALL": "C"},
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        pass  # a loop that only ends on a real answer; the canary check below still holds


@pytest.fixture(scope="module")
def sandbox():
    shutil.rmtree(SANDBOX, ignore_errors=True)
    SANDBOX.mkdir(mode=0o777)
    os.chmod(SANDBOX, 0o777)
    yield SANDBOX
    shutil.rmtree(SANDBOX, ignore_errors=True)


def test_the_builds_use_every_template(calls):
    """The audit is only as good as its coverage: every template file is rendered at least once."""
    used = {c.template for c in calls}
    templates = {name for name in render_module.template_names() if name.endswith(".j2")}
    included = {t for t in templates if Path(t).name.startswith("_")}  # reached through {% include %}
    assert templates - included - used == set()


def test_every_value_is_quoted_or_refused(calls, sandbox):
    figures = {"renders": 0, "refused": 0, "scripts run": 0, "files checked": 0}
    for call in calls:
        for leaf in _leaves(call.values):
            for hostile in HOSTILE:
                values = _replaced(call.values, leaf, hostile)
                figures["renders"] += 1
                try:
                    text = render(call.template, **values)
                except UnsafeValue:
                    figures["refused"] += 1
                    continue
                where = f"{call.template} with {leaf} = {hostile[:30]!r}"
                assert "\x00" not in text, where
                if call.template.startswith("scripts/"):
                    prelude = render("prelude.sh.j2", step="audit", host="audit")
                    check = subprocess.run(["bash", "-n"], input=prelude + text, capture_output=True, text=True)
                    assert check.returncode == 0, f"{where}: bash -n: {check.stderr[:400]}"
                    _run_sandboxed(prelude + SHIM + text)
                    figures["scripts run"] += 1
                    assert not CANARY.exists(), f"{where}: the hostile value ran as a command"
                else:
                    figures["files checked"] += 1
                    # A value may steer the template's branches (a mode), but never start a line.
                    injected = [part for part in hostile.replace("\r", "\n").split("\n")[1:] if part]
                    lines = text.splitlines()
                    assert not [p for p in injected for line in lines if line.startswith(p)], \
                        f"{where}: a line was injected"
    print(f"\nhostile values: {figures}")
    assert figures["refused"] > 0 and figures["scripts run"] > 100

"""The rendered plan: every script each host would get, written to files, touching no host.

`python -m components.plan --stack NAME --out DIR` runs the real program (`__main__.py`: the same
Estate, components and templates as a deploy) for `stacks/Pulumi.NAME.yaml` as a preview under
Pulumi mocks, and records every `command:remote:Command`: its host, its `create`/`update`/`delete`
scripts and the steps it depends on. It writes

- `DIR/<host>/<step>.<field>.sh`: each script as the host would run it (config files ride in
  them as heredocs);
- `DIR/<host>/<step>.stdin`: the names of the secrets the step reads on stdin, each `<secret>`;
- `DIR/index.json`: host -> step -> files, secrets and dependencies, and the plan's assumptions;
- `DIR/topology.{dot,svg,png}` (components/topology.py).

A stack that reads other stacks (`database.fromStacks`) needs what they exported:
`--reference org/project/stack=FILE`, FILE from `pulumi stack output --json --show-secrets`.

The mocks play a first deploy on fresh hosts. What a step prints is known only on the host, so
each value a later script is built from is a sentinel that passes the step's parser and is
written as `<unknown:STEP.FIELD>`; every other output is unknown, as in `pulumi preview`, and a
script still unknown is written as such (and `unknown` is listed in the index). Facts the
program sizes from (memory, CPUs) are `ASSUMED_FACTS`. Secrets (configured or generated) only
ever reach a host on stdin; the plan writes none of them, and scrubs any it meets. The tree is
byte-identical for the same stack config: no timestamps, no random ids.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import runpy
import shlex
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .core import collector

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "ox-estate"
SECRET = "<secret>"
# What the plan takes every host to report (memory and CPUs size tunings.cnf and wsrep.cnf).
ASSUMED_FACTS = {"os": "debian", "osVersion": "12", "memoryMb": 8192, "cpus": 4}
_TEXT = "UNKNOWN@"  # sentinel prefix: a plain token (render.PLAIN_TOKEN), so templates take it
# Sentinel ids: printed ids are digits, so the sentinels are too; each from its step's name, so the
# same step gets the same one whatever order the steps register in.
_ID_BASE, _ID_SPAN = 987650000, 10000
_ID = re.compile(rf"(?<![0-9])({_ID_BASE // _ID_SPAN}[0-9]{{4}})(?![0-9])")
_REGISTERED = re.compile(r"-(server|filestore|database-.+|context)$")
COMMAND = "command:remote:Command"


@dataclass
class Step:
    name: str
    host: str | None
    scripts: dict[str, str | None]  # field -> script; None: unknown at plan time
    stdin_names: list[str]
    dependencies: list[str]  # URNs, resolved to step names by `evaluate`


@dataclass
class Evaluation:
    steps: list[Step] = field(default_factory=list)
    unknown_values: dict[str, str] = field(default_factory=dict)  # sentinel -> placeholder
    secrets: set[str] = field(default_factory=set)  # every secret value the program was given
    addresses: dict[str, str] = field(default_factory=dict)  # address -> host, where a provider assigns it


def plan_key() -> str:
    """A fixed throwaway SSH key (PEM: its text is the same every time) for stacks without one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ox-estate plan key").digest())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> tuple[dict[str, str], set[str]]:
    """`stacks/Pulumi.<stack>.yaml` as the engine hands it to the program (`ns:key` -> text), with
    `overrides` (keys without the namespace; the secret keys' values as secrets) on top; and the
    secret keys. Encrypted values cannot be read here: those secrets are generated, as where unset."""
    from .core.config import SECRET_KEYS

    data = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    raw = {k if ":" in k else f"{NAMESPACE}:{k}": v for k, v in (data.get("config") or {}).items()
           if not (isinstance(v, dict) and set(v) == {"secure"})}
    secret = {f"{NAMESPACE}:{k}" for k in overrides or {} if k in SECRET_KEYS}
    raw.update({f"{NAMESPACE}:{k}": v for k, v in (overrides or {}).items()})
    if f"{NAMESPACE}:sshPrivateKey" not in raw:
        raw[f"{NAMESPACE}:sshPrivateKey"] = plan_key()
        secret.add(f"{NAMESPACE}:sshPrivateKey")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, secret


# What AWS's data sources answer where nothing reaches AWS: the plan, and the unit tests' mocks.
AWS_LOOKUPS = {
    "aws:ec2/getAmi:getAmi": {"id": "ami-0debian12", "name": "debian-12-amd64-20260101"},
    "aws:index/getAvailabilityZones:getAvailabilityZones": {"names": ["eu-central-1a", "eu-central-1b",
                                                                      "eu-central-1c"]},
}


def _leaves(value: Any) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value] if isinstance(value, str) else []


def _make_mocks(ev: Evaluation, references: dict[str, dict] | None = None):
    import pulumi
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockMonitor

    def unknown(step: str, what: str, placeholder: Any = None) -> Any:
        """A sentinel for `what` printed by `step`, remembered with its placeholder."""
        if placeholder is None:
            placeholder = f"{_TEXT}{step}.{what}"
        ev.unknown_values[str(placeholder)] = f"<unknown:{step}.{what}>"
        return placeholder

    class PlanMocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            outputs = dict(args.inputs)
            if args.typ == COMMAND:
                stdout = self.stdout_of(args.name, _script(args.inputs.get("create")) or "")
                if stdout is not None:
                    outputs["stdout"] = stdout
                else:  # unknown, as in a preview: nothing the plan writes is built from it
                    outputs.pop("stdout", None)
            elif args.typ == "random:index/randomPassword:RandomPassword":
                outputs["result"] = f"plan-generated-{args.name}"
                ev.secrets.add(outputs["result"])
            elif args.typ == "aws:ec2/instance:Instance":  # addresses AWS assigns, each by its host's name
                outputs.update(privateIp=args.inputs.get("privateIp") or unknown(args.name, "privateIp"),
                               publicIp=unknown(args.name, "publicIp"))
                for address in (outputs["privateIp"], outputs["publicIp"]):
                    ev.addresses[address] = args.inputs["tags"]["Name"]
            elif args.typ == "aws:ec2/keyPair:KeyPair":
                outputs["keyName"] = args.name
            elif args.typ == "pulumi:pulumi:StackReference":  # --reference: what that stack exported
                from .core.stackref import CREDENTIALS

                name = args.inputs["name"]
                exported = (references or {}).get(name, {})
                ev.secrets |= set(_leaves(exported.get(CREDENTIALS)))
                return name, {"name": name, "outputs": exported,
                              "secretOutputNames": [CREDENTIALS] if CREDENTIALS in exported else []}
            return f"{args.name}-id", outputs

        def call(self, args):
            return dict(AWS_LOOKUPS.get(args.token, {}))

        @staticmethod
        def stdout_of(name: str, script: str) -> str | None:
            """What a step prints, where a later step is built from it (by its phase: the name's end)."""
            if name.endswith("-facts"):
                return json.dumps({"hostname": unknown(name, "hostname"), **ASSUMED_FACTS, "packages": {}})
            if name.endswith("-probe"):  # a fresh node: nothing to recover
                named = re.search(r"^OX_HOST=(.+)$", script, re.M)  # the prelude names the step's host
                host = shlex.split(named.group(1))[0] if named else name.split("-")[-2]
                return json.dumps({"host": host, "running": False, "primary": False, "grastate": False,
                                   "uuid": None, "seqno": None, "safeToBootstrap": False, "sstInProgress": False,
                                   "partial": None, "recovered": None, "recoverError": None})
            if re.search(r"-drain-[^-]+$", name):
                return json.dumps({"run": unknown(name, "run")})
            registered = _REGISTERED.search(name) if "-registration-" in name else None
            if registered:
                kind = registered.group(1).split("-")[0]
                number = unknown(name, "id", _sentinel_id(name, ev.unknown_values))
                return f"context {number} created" if kind == "context" else f"{kind} {number} registered"
            return None

    urns: dict[str, str] = {}  # a step's URN -> its name
    lock = threading.Lock()  # RegisterResource runs on executor threads

    class PlanMonitor(MockMonitor):
        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            if request.type == COMMAND:
                inputs = rpc.deserialize_properties(request.object) if request.object else {}
                with lock:
                    ev.steps.append(_step(request.name, inputs, list(request.dependencies)))
                    urns[response.urn] = request.name
            return response

    mocks = PlanMocks()
    return mocks, PlanMonitor(mocks), urns


def _sentinel_id(step: str, taken: dict[str, str]) -> int:
    offset = int(hashlib.sha256(step.encode()).hexdigest(), 16) % _ID_SPAN
    while str(_ID_BASE + offset) in taken and taken[str(_ID_BASE + offset)] != f"<unknown:{step}.id>":
        offset = (offset + 1) % _ID_SPAN  # two steps on one number: the later one moves on
    return _ID_BASE + offset


def _plain(value: Any) -> Any:
    """An input with its secret wrapper taken off (to read a host or secret names, never to write)."""
    from pulumi.runtime import rpc

    return _plain(value["value"]) if rpc.is_rpc_secret(value) else value


def _script(command: Any) -> str | None:
    """The script of `bash -c '<script>' <step>` (remote.command_line); None where unknown."""
    command = _plain(command)
    if not isinstance(command, str):
        return None
    from .core.remote import script_argv

    argv = script_argv(command)
    return argv[2] if argv[:2] == ["bash", "-c"] and len(argv) == 4 else command


def _step(name: str, inputs: dict, dependencies: list[str]) -> Step:
    connection = _plain(inputs.get("connection"))
    host = _plain(connection.get("host")) if isinstance(connection, dict) else None
    stdin = _plain(inputs.get("stdin"))
    names = sorted(line.split("=", 1)[0] for line in stdin.splitlines() if line) if isinstance(stdin, str) else []
    return Step(name=name, host=host if isinstance(host, str) else None,
                scripts={f: _script(inputs[f]) for f in ("create", "update", "delete") if inputs.get(f) is not None},
                stdin_names=names, dependencies=dependencies)


def evaluate(stack: str, overrides: dict[str, Any] | None = None,
             references: dict[str, dict] | None = None) -> tuple[Evaluation, dict[str, Any]]:
    """Run `__main__.py` for the stack under the plan's mocks; the steps (hosts and dependencies
    by name) and the stack's outputs. references: stack name -> its outputs, for StackReference."""
    import pulumi
    from pulumi.runtime import settings

    config, secret_keys = stack_config(stack, overrides)
    ev = Evaluation()
    ev.secrets |= {v for k, v in config.items() if k in secret_keys}
    mocks, monitor, urns = _make_mocks(ev, references)
    settings.ROOT.set(None)  # a fresh root stack: set_mocks keeps the last one otherwise
    pulumi.runtime.set_mocks(mocks, project=NAMESPACE, stack=stack, preview=True, monitor=monitor)
    pulumi.runtime.set_all_config(config, sorted(secret_keys))
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        exports = pulumi.runtime.get_root_resource().outputs

        async def resolve():
            for key, value in exports.items():
                outputs[key] = await pulumi.Output.from_input(value).future()

        return resolve()

    with collector.restored():
        program()
    for step in ev.steps:
        step.dependencies = sorted({urns[u] for u in step.dependencies if u in urns})
    ev.steps.sort(key=lambda s: s.name)
    return ev, outputs


def render_plan(stack: str, out: str | Path, overrides: dict[str, Any] | None = None,
                references: dict[str, dict] | None = None) -> dict:
    """Write the plan of `stack` under `out` (see the module docstring); returns the index."""
    from . import topology

    ev, outputs = evaluate(stack, overrides, references)
    names = {**ev.addresses, **{address: name for name, address in (outputs.get("hostAddresses") or {}).items()}}
    scrub, scrubbed = _scrubber(ev), []
    out = _fresh(Path(out))
    hosts: dict[str, dict] = {}
    for step in ev.steps:
        host = names.get(step.host, "_unknown-host")
        entry: dict[str, Any] = {"dependsOn": step.dependencies, "files": [], "secrets": step.stdin_names}
        for what, script in sorted(step.scripts.items()):
            file = f"{host}/{step.name}.{what}.sh"
            text = scrub(script) if script is not None else "# <unknown at plan time>\n"
            if SECRET in text and (script is None or SECRET not in script):
                scrubbed.append(file)  # the program put a secret into a script: it never should
            _write(out / file, text)
            entry["files"].append(file)
            if script is None:
                entry.setdefault("unknown", []).append(what)
        if step.stdin_names:
            file = f"{host}/{step.name}.stdin"
            _write(out / file, "".join(f"{n}={SECRET}\n" for n in step.stdin_names))
            entry["files"].append(file)
        hosts.setdefault(host, {})[step.name] = entry
    index = {"stack": stack, "hosts": hosts, "secretsScrubbedFrom": scrubbed,
             "assumptions": {"facts": ASSUMED_FACTS, "galeraProbes": "fresh nodes: nothing to recover",
                             "unknownValues": "<unknown:STEP.FIELD>", "secrets": SECRET,
                             "digests": "of the planned text (with the assumed facts and the placeholders)"}}
    _write(out / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    topology.write(topology.for_stack(stack, overrides), out)
    return index


def _scrubber(ev: Evaluation) -> Callable[[str], str]:
    """Sentinels to their placeholders; any secret value (or its MariaDB hash) to `<secret>`."""
    from .core.secrets import mysql_native_hash

    texts = {s: p for s, p in ev.unknown_values.items() if not s.isdigit()}
    ids = {s: p for s, p in ev.unknown_values.items() if s.isdigit()}
    secrets = {s for s in ev.secrets if s} | {mysql_native_hash(s) for s in ev.secrets if s}
    secrets |= {base64.b64encode(s.encode()).decode() for s in ev.secrets if s}

    def scrub(text: str) -> str:
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, SECRET)
        for sentinel in sorted(texts, key=len, reverse=True):
            text = text.replace(sentinel, texts[sentinel])
        return _ID.sub(lambda m: ids.get(m.group(1), m.group(1)), text)

    return scrub


def _fresh(out: Path) -> Path:
    """An empty `out`: a plan written there before is replaced whole (no stale step stays behind);
    any other content is left alone, and refused."""
    if out.is_dir() and any(out.iterdir()):
        index = out / "index.json"
        if not index.is_file() or "assumptions" not in json.loads(index.read_text()):
            raise FileExistsError(f"{out} is not empty and holds no plan: not writing a plan into it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- plan against a live host -----------------------------------------------------------------

_HEREDOC = re.compile(r"<<'([A-Za-z_]+)'\n(.*?)^\1$", re.S | re.M)


def heredocs(script: str) -> list[str]:
    """The bodies of a script's quoted heredocs: the files it writes as they are."""
    return [m.group(2) for m in _HEREDOC.finditer(script)]


def compare_with_host(plan_dir: str | Path, host: str, read_file: Callable[[str], str],
                      paths: list[str]) -> dict[str, str]:
    """Check files the lab wrote on `host` against the plan: each of `paths`, read with
    `read_file(path)`, must be one of the heredoc bodies of that host's planned scripts.
    Returns path -> what is wrong; empty when the host holds what the plan says."""
    bodies = {body for f in sorted(Path(plan_dir, host).glob("*.sh")) for body in heredocs(f.read_text())}
    problems = {}
    for path in paths:
        try:
            text = read_file(path)
        except Exception as e:  # noqa: BLE001 reported, not raised: every path gets its line
            problems[path] = f"unreadable on {host}: {e}"
            continue
        if text not in bodies:
            problems[path] = f"on {host} it is not what the plan's scripts write ({len(bodies)} files planned)"
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m components.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True, help="stacks/Pulumi.<stack>.yaml")
    ap.add_argument("--out", required=True, help="directory to write the plan into")
    ap.add_argument("--reference", action="append", default=[], metavar="STACK=FILE",
                    help="what a stack in database.fromStacks exported: FILE from `pulumi stack output --json "
                         "--show-secrets --stack STACK` (its credentials are scrubbed from the plan)")
    a = ap.parse_args(argv)
    references = {}
    for ref in a.reference:
        name, sep, file = ref.partition("=")
        if not sep or not Path(file).is_file():
            ap.error(f"--reference {ref}: expected STACK=FILE with an existing FILE")
        references[name] = json.loads(Path(file).read_text())
    from .core.config import ConfigError

    if not (ROOT / "stacks" / f"Pulumi.{a.stack}.yaml").is_file():
        ap.error(f"no stack config stacks/Pulumi.{a.stack}.yaml")
    try:
        index = render_plan(a.stack, a.out, references=references)
    except (ConfigError, FileExistsError) as e:
        print(f"plan: {e}", file=sys.stderr)
        return 1
    steps = sum(len(s) for s in index["hosts"].values())
    print(f"plan of stack {a.stack}: {steps} steps on {len(index['hosts'])} hosts in {a.out}")
    if shutil.which("dot") is None:
        print("plan: Graphviz's `dot` is missing: wrote topology.dot only (bash lab/setup.sh installs it)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

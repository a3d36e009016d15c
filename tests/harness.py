"""Run the real `__main__.py` under Pulumi mocks and record every registration.

The recording monitor keeps what `MockResourceArgs` lacks: each resource's parent, its
dependencies and its property dependencies, and the inputs exactly as they reached the
monitor (secrets still wrapped), so tests can check the graph and where secrets went.
"""

from __future__ import annotations

import json
import re
import runpy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings

from components.core import collector
from components.plan import AWS_LOOKUPS

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_VALUE = rpc._special_secret_sig


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    inputs: dict[str, Any]  # as on the wire: secrets wrapped, numbers as floats
    custom: bool


@dataclass
class Recording:
    registrations: list[Registration] = field(default_factory=list)
    invokes: list[tuple[str, dict]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: dict[str, bool] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        (found,) = [r for r in self.registrations if r.name == name]
        return found

    def waits_for(self, name: str) -> set[str]:
        """The URNs of everything the resource `name` waits for: its dependencies and theirs. Many
        steps that need many others depend on one waypoint between them (components/core/remote.py)."""
        by_urn = {r.urn: r for r in self.registrations}
        seen: set[str] = set()
        todo = list(self.named(name).dependencies)
        while todo:
            urn = todo.pop()
            if urn not in seen:
                seen.add(urn)
                todo.extend(by_urn[urn].dependencies if urn in by_urn else [])
        return seen

    @property
    def non_stack(self) -> list[Registration]:
        return [r for r in self.registrations if r.type != "pulumi:pulumi:Stack"]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def unwrap(value: Any) -> Any:
    """Inputs with their secrets unwrapped, for reading values (not for checking secrecy)."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def script_of(registration: "Registration", field: str = "create") -> str:
    """The script a step runs: its `bash -c '<script>' <step>` command, unquoted."""
    from components.core.remote import script_argv

    argv = script_argv(unwrap(registration.inputs[field]))
    assert argv[:2] == ["bash", "-c"] and len(argv) == 4, argv[:2]
    return argv[2]


def fake_facts(hostname: str, packages: list[str]) -> str:
    return json.dumps({"hostname": hostname, "os": "debian", "osVersion": "12", "memoryMb": 8192, "cpus": 4,
                       "packages": {p: "1.0" for p in packages}})


class UnitMocks(pulumi.runtime.Mocks):
    """Plausible provider outputs: commands print what their scripts would."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "command:remote:Command":
            outputs["stdout"] = self.stdout_of(args.name, args.inputs)
            outputs["stderr"] = ""
        elif args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"generated-{args.name}-0123456789abcdef"
        elif args.typ == "aws:ec2/instance:Instance":
            n = abs(hash(args.name)) % 200 + 10
            outputs.update(privateIp=f"10.20.1.{n}", publicIp=f"198.51.100.{n}")
        elif args.typ == "aws:ec2/keyPair:KeyPair":
            outputs["keyName"] = args.name
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return dict(AWS_LOOKUPS.get(args.token, {}))

    @staticmethod
    def stdout_of(name: str, inputs: dict) -> str:
        """What the step's script prints on a healthy host, by the step's phase (its name's end)."""
        create = unwrap(inputs.get("create", ""))
        if name.endswith("-facts"):
            host = name.removesuffix("-facts")
            packages = [p for p in ("mariadb-server", "haproxy", "apache2") if p in create]
            return fake_facts(f"{host}.internal", packages)
        if name.endswith("-verify") and "wsrep_cluster_size" in create:
            size = int(re.search(r"\[ \"\$size\" = (\d+) \]", create).group(1))
            return json.dumps({"node": name.split("-")[-2], "clusterSize": size, "status": "Primary",
                               "state": "Synced", "ready": "ON", "uuid": "6b1c8f7e-0000-0000-0000-000000000001"})
        if name.endswith("-probe") and "wsrep-recover" in create:  # a fresh node: nothing to recover
            return json.dumps({"host": name.split("-")[-2], "running": False, "primary": False, "grastate": False,
                               "uuid": None, "seqno": None, "safeToBootstrap": False, "sstInProgress": False,
                               "partial": None, "recovered": None, "recoverError": None})
        registered = re.search(r"-registration-(server|filestore|database)(?:-(.+))?$", name)
        if registered:
            kind, db = registered.groups()
            ids = {"server": 1, "filestore": 2}
            return f"{kind} {ids.get(kind) or 10 + sum(map(ord, db)) % 80} registered"
        if name.endswith("-registration-context"):
            return "context 1 created"
        if name.endswith("-haproxy"):
            return json.dumps({"host": name.split("-")[-2], "writers": 1, "readers": 3})
        if name.endswith("-check") and "apache2ctl -V" in create:
            url = re.search(r"http://[0-9.]+/appsuite/", create).group(0)
            return json.dumps({"host": name.split("-")[-2], "url": url, "mpm": "event", "generation": 1,
                               "pid": 100, "balancer": 200})
        if name.endswith("-check") and "WebService is running" in create:  # a document converter
            from components.core.remote import script_argv

            script = script_argv(create)[2]
            host, route = re.search(r"\\n' (\S+) (\S+) \"\$url\"", script).groups()
            url = re.search(r"^url=(\S+)$", script, re.M).group(1)
            return json.dumps({"host": host, "route": route, "url": url})
        if re.search(r"-drain-[^-]+$", name):
            return json.dumps({"host": name.split("-")[-3], "node": name.split("-")[-1], "action": "drain",
                               "drain": 1, "disabled": 1, "run": "1764655200000000000"})
        if name.endswith("-replica"):
            return json.dumps({"replica": name.split("-")[-2], "source": "peer", "io": "Yes", "sql": "Yes", "lag": 0,
                               "gtidSlavePos": "1-41-7"})
        if name.endswith("-answers") and "the floating address" in create:
            address = re.search(r"address=([0-9.]+)", create).group(1)
            return json.dumps({"host": name.split("-")[-2], "address": address, "holds": "-vip-" in name})
        return f"{name} ok"


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, recording: Recording):
        super().__init__(mocks)
        self.recording = recording
        self.lock = threading.Lock()  # RegisterResource runs on executor threads

    def RegisterResource(self, request):
        response = super().RegisterResource(request)  # also gives this thread an event loop
        inputs = rpc.deserialize_properties(request.object) if request.object else {}
        with self.lock:
            self.recording.registrations.append(Registration(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                inputs=_plain(inputs), custom=request.custom,
            ))
        return response

    def Invoke(self, request):
        with self.lock:
            self.recording.invokes.append((request.tok, {}))
        return super().Invoke(request)


def _plain(value: Any) -> Any:
    """Protobuf containers to plain dicts and lists; secret wrappers kept as dicts."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [_plain(v) for v in value]
    return value


def to_pulumi_config(config: dict[str, Any], secret_keys: set[str]) -> tuple[dict[str, str], list[str]]:
    """Stack config as the engine hands it to a program: namespaced keys, objects as JSON text."""
    values = {f"ox-estate:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    return values, [f"ox-estate:{k}" for k in secret_keys]


def set_recording_mocks(mocks: pulumi.runtime.Mocks, recording: Recording, preview: bool = False) -> None:
    """`set_mocks` with a fresh root stack: it keeps a root stack once one is set (a context variable),
    so without the reset a program would inherit the last one's exports and their pending outputs.
    preview: as `pulumi preview` runs the program (what a mock returns as `rpc.UNKNOWN` stays unknown)."""
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="ox-estate", stack="unit", preview=preview,
                             monitor=RecordingMonitor(mocks, recording))


def run_program(config: dict[str, Any], secret_keys: set[str], mocks: pulumi.runtime.Mocks | None = None,
                preview: bool = False) -> Recording:
    """Run __main__.py once under mocks (as a preview with `preview`). Raises what the program raises."""
    recording = Recording()
    set_recording_mocks(mocks or UnitMocks(), recording, preview)
    pulumi.runtime.set_all_config(*to_pulumi_config(config, secret_keys))

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        # set_mocks finished the root stack before the program ran, so its exports are only
        # here; resolve them (and whether each is secret) for the tests.
        exports = pulumi.runtime.get_root_resource().outputs

        async def resolve():
            for key, value in exports.items():
                out = pulumi.Output.from_input(value)
                recording.outputs[key] = await out.future()
                recording.secret_outputs[key] = await out.is_secret()

        return resolve()

    with collector.restored():
        program()
    return recording


def run_built(build) -> Recording:
    """Run `build()` (components built by hand, no stack config) under mocks; the recording."""
    recording = Recording()
    set_recording_mocks(UnitMocks(), recording)
    pulumi.runtime.test(build)()
    return recording

"""Run the program once, as Pulumi's language host would, against the lab's monitor.

`execute_program` runs `<program_dir>/__main__.py` in-process under `pulumi.runtime.set_mocks`
with a MockMonitor whose RegisterResource hands every resource to `monitor.Lab` (which decides
and does what the engine would) and returns its outputs to the program.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import runpy
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from components.core import collector

from . import runner_state as rs
from .monitor import STACK_TYPE, STACKREF_TYPE, Lab
from .stackconfig import LabRunError


def _make_monitor(lab: Lab):
    """Build the MockMonitor subclass (imports pulumi lazily)."""
    from google.protobuf import empty_pb2
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
    from pulumi.runtime.proto import resource_pb2
    from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

    class LabMocks(Mocks):
        def call(self, args: MockCallArgs):
            # A plain dict: MockMonitor.Invoke iterates a tuple's failures.
            return lab.call(args.token, args.args)

        def new_resource(self, args: MockResourceArgs):
            # Only reached through ReadResource (RegisterResource is overridden).
            if args.typ == STACKREF_TYPE:
                name = rs.unwrap(args.inputs).get("name") or args.resource_id
                return name, lab.read_stack_reference(name)
            return args.resource_id or f"{args.name}-id", args.inputs

    class LabMonitor(MockMonitor):
        def make_urn(self, parent: str, type_: str, name: str) -> str:
            # Like MockMonitor.make_urn, but without the context-bound
            # get_stack()/get_project() (we are on executor threads).
            if parent:
                parent_type = parent.split("::")[2].split("$").pop()
                type_ = parent_type + "$" + type_
            return "urn:pulumi:" + "::".join([lab.stack, lab.project, type_, name])

        def RegisterResource(self, request):
            urn = self.make_urn(request.parent, request.type, request.name)
            prop_deps = {k: list(v.urns) for k, v in request.propertyDependencies.items()}
            lab.note_resource(urn, request.type, request.name, request.parent,
                              list(request.dependencies), prop_deps, request.custom)
            if request.type == STACK_TYPE:
                return resource_pb2.RegisterResourceResponse(urn=urn)
            _ensure_event_loop()
            inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
            id_, state = lab.new_resource(urn, request.type, request.name, inputs, bool(request.custom),
                                          request.importId, list(request.replaceOnChanges),
                                          bool(request.deleteBeforeReplace), list(request.ignoreChanges))
            obj = _sync_await(rpc.serialize_properties(state, {}))
            with lab.lock:
                self.resources[urn] = MockMonitor.ResourceRegistration(urn, id_, state)
            return resource_pb2.RegisterResourceResponse(urn=urn, id=id_ or "", object=obj)

        def RegisterResourceOutputs(self, request):
            if request.urn.split("::")[2] == STACK_TYPE:
                _ensure_event_loop()
                outs = rpc.deserialize_properties(request.outputs) if request.outputs else {}
                with lab.lock:
                    lab.outputs = outs
            return empty_pb2.Empty()

    mocks = LabMocks()
    return mocks, LabMonitor(mocks)


class _NotAStack:
    """Placeholder root so that set_mocks does not create (and immediately
    finish, i.e. register empty outputs for) its own Stack: we want
    run_in_stack's Stack, which registers the program's exports."""


def execute_program(lab: Lab, program_dir: Path, config: dict[str, str],
                    secret_keys: list[str], max_workers: int) -> Optional[BaseException]:
    """Run `<program_dir>/__main__.py` once, as the language host would; returns its error, if any."""
    import pulumi.runtime as prt
    from pulumi.runtime import settings as psettings

    main = program_dir / "__main__.py"
    if not main.exists():
        return LabRunError(f"{main} does not exist")
    mocks, monitor = _make_monitor(lab)
    # The SDK calls the monitor through loop.run_in_executor(None, ...). The
    # default executor has min(32, cpu+4) workers -- 6 on these 2-core
    # machines -- and each remote command holds a worker for its whole SSH
    # run, so the default would silently cap the estate at 6 concurrent steps
    # and serialize what the graph does not. The language host sizes its
    # executor from --parallel the same way (automation/_server.py).
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lab-rpc")
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    # Faulted futures nobody awaited (the dependents of a failed step) would
    # log "exception was never retrieved"; the language host mutes them too.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    # paramiko logs dial failures with tracebacks from its transport threads;
    # the runner reports them itself, once, per step.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    loop.set_exception_handler(lambda _loop, _ctx: None)

    old_cwd, old_path, old_argv = os.getcwd(), list(sys.path), list(sys.argv)
    error: Optional[BaseException] = None

    def inner():
        asyncio.set_event_loop(loop)
        psettings.ROOT.set(_NotAStack())  # type: ignore[arg-type]
        prt.set_mocks(mocks, project=lab.project, stack=lab.stack, preview=lab.preview, monitor=monitor)
        psettings.ROOT.set(None)
        prt.set_all_config(dict(config), list(secret_keys))
        loop.run_until_complete(
            prt.run_in_stack(lambda: runpy.run_path(str(main), run_name="__main__")))

    try:
        os.chdir(program_dir)
        sys.path.insert(0, str(program_dir))
        sys.argv = [str(main)]
        with collector.restored():  # the program may tune the collector for itself
            contextvars.copy_context().run(inner)
    except BaseException as exn:  # noqa: BLE001 reported by the caller
        error = exn
        if isinstance(exn, KeyboardInterrupt):
            lab.aborted = True
            lab.pool.close_all()  # makes in-flight commands fail fast
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except Exception:  # noqa: BLE001
            pass
        # In-flight steps finish (like the engine waits for them) before we
        # report; their worker threads hold no loop of ours.
        executor.shutdown(wait=True)
        loop.close()
        asyncio.set_event_loop(None)
        os.chdir(old_cwd)
        sys.path[:] = old_path
        sys.argv = old_argv
        psettings.SETTINGS.rpc_manager.clear()
        psettings.SETTINGS.outputs.clear()
        gc.collect()
    return error

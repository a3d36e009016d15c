"""Parsing what steps print. Every machine-readable line a step prints is read here, and only here.

A parser either returns a value or raises `StepOutputError` naming the step and quoting what it
got, so a surprising tool output fails the deploy at the step that printed it.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, ValidationError


class StepOutputError(RuntimeError):
    def __init__(self, step: str, expected: str, stdout: str):
        shown = stdout if len(stdout) < 400 else stdout[:400] + "..."
        super().__init__(f"step {step}: expected {expected}, got: {shown!r}")


class HostFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: str
    os: str
    osVersion: str
    memoryMb: int
    cpus: int
    packages: dict[str, str | None]

    @property
    def missing_packages(self) -> list[str]:
        return sorted(p for p, v in self.packages.items() if v is None)


def parse_json_line(step: str, stdout: str) -> dict:
    """Steps that report state print one JSON object on their last line."""
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    try:
        value = json.loads(last)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise StepOutputError(step, "one JSON object on the last line", stdout)
    return value


def parse_facts(step: str, stdout: str) -> HostFacts:
    try:
        return HostFacts.model_validate(parse_json_line(step, stdout))
    except (StepOutputError, ValidationError):
        raise StepOutputError(step, "one JSON line of host facts", stdout) from None


_REGISTERED = re.compile(r"^(server|filestore|database) (\d+) registered$")
_CONTEXT = re.compile(r"^context (\d+) created$")


def parse_registered_id(step: str, stdout: str, kind: str) -> int:
    """`registerserver`/`registerfilestore`/`registerdatabase` print `<kind> <id> registered`."""
    last = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
    m = _REGISTERED.match(last)
    if not m or m.group(1) != kind:
        raise StepOutputError(step, f"'{kind} <id> registered'", stdout)
    return int(m.group(2))


def parse_context_id(step: str, stdout: str) -> int:
    """`createcontext` prints `context <id> created`."""
    last = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
    m = _CONTEXT.match(last)
    if not m:
        raise StepOutputError(step, "'context <id> created'", stdout)
    return int(m.group(1))


class GaleraProbe(BaseModel):
    """What db/galera-probe.sh.j2 prints: one node's Galera state, before anything acts on it."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    running: bool
    primary: bool
    grastate: bool
    uuid: str | None
    seqno: int | None
    safeToBootstrap: bool
    sstInProgress: bool
    partial: str | None
    recovered: str | None
    recoverError: str | None


_UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = re.compile(rf"^{_UUID_TEXT}$")
_POSITION = re.compile(rf"^{_UUID_TEXT}:-?\d+$")  # what mariadbd --wsrep-recover prints: uuid:seqno


def parse_galera_probe(step: str, stdout: str) -> GaleraProbe:
    """The probe's JSON line; a uuid or a recovered position that is not one fails here."""
    try:
        probe = GaleraProbe.model_validate(parse_json_line(step, stdout))
    except (StepOutputError, ValidationError):
        raise StepOutputError(step, "one JSON line of Galera node state", stdout) from None
    if (probe.uuid is not None and not _UUID.match(probe.uuid)) or \
            (probe.recovered is not None and not _POSITION.match(probe.recovered)):
        raise StepOutputError(step, "a cluster UUID and a recovered uuid:seqno", stdout)
    return probe

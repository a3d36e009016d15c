"""Progress lines for a lab run, with every known secret value masked, and step failures."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional


class Progress:
    def __init__(self, stream=None, verbose: bool = False):
        self.t0 = time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.verbose = verbose
        self._lock = threading.Lock()
        self._secrets: set[str] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add_secret(self, value: Any) -> None:
        if isinstance(value, str):
            for v in {value, value.strip()}:
                if len(v) >= 4:
                    with self._lock:
                        self._secrets.add(v)

    def scrub(self, text: str) -> str:
        with self._lock:
            items = sorted(self._secrets, key=len, reverse=True)
        for s in items:
            if s in text:
                text = text.replace(s, "[secret]")
        return text

    def line(self, text: str) -> None:
        text = self.scrub(text)
        with self._lock:
            self.stream.write(f"[{self.now():7.2f}s] {text}\n")
            self.stream.flush()

    def block(self, prefix: str, text: str) -> None:
        text = self.scrub(text)
        with self._lock:
            for ln in text.splitlines():
                self.stream.write(f"           {prefix} | {ln}\n")
            self.stream.flush()



class CommandFailed(RuntimeError):
    def __init__(self, message: str, *, name: str, host: str, exit_code: Optional[int]):
        super().__init__(message)
        self.name = name
        self.host = host
        self.exit_code = exit_code


class StepSkipped(RuntimeError):
    pass



def keep_stderr(step: str, text: str) -> Path:
    out = Path(__file__).resolve().parent / "out" / "failed"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{step}.stderr"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def command_failed(progress, what: str, name: str, host: str, label: str, code: int, err: str,
                    logging_mode: str) -> "CommandFailed":
    """The error for a step that exited non-zero: its stderr when logging allows, else a pointer."""
    msg = f"{what} failed on host {host} ({label}) with exit code {code}"
    if logging_mode in ("stderr", "stdoutAndStderr"):
        tail = "\n".join(err.splitlines()[-40:])
        msg += f"; stderr:\n{tail}" if tail else "; stderr is empty"
    else:
        # Not streamed (logging=none); kept for whoever debugs the lab, with every known
        # secret value masked, in a file only root reads.
        kept = keep_stderr(name, progress.scrub(err))
        msg += f" (stderr not shown: logging={logging_mode}; secrets masked in {kept})"
    return CommandFailed(progress.scrub(msg), name=name, host=host, exit_code=code)


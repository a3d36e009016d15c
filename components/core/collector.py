"""CPython's cycle collector, set for one evaluation of the program.

What the program builds lives until it ends: resources, their Outputs and futures, millions of
objects at 1,000 hosts, which the collector would rescan at every pass (30 to 40% of the CPU there:
`python -m benchmarks.scale`). Reference counting frees everything else at once, so the collector
may run rarely and skip what the imports made.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def tune_for_evaluation() -> None:
    """Called once by `__main__.py`, after its imports, before it builds the estate."""
    gc.freeze()  # modules, classes, templates: never garbage
    gc.set_threshold(200_000, 30, 30)  # default (700, 10, 10)


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Around a run of `__main__.py` in a process that runs it again and again (the unit tests,
    the plan, the lab): the collector as it was, and nothing a run made left frozen."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)

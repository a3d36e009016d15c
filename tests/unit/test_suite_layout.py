"""The test suite itself: pytest imports test modules by basename (rootdir-relative, no packages),
so two test files with one name in different folders abort the whole run at collection, and a run
of one folder alone never shows it. That happened twice; this catches it in any run."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_test_modules_have_unique_basenames():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []

"""Render text (shell scripts, config files) from components/templates/ with jinja2.

StrictUndefined: a missing value is an error at render time, never an empty string in a
script. `render()` takes plain values so tests can render without Pulumi.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    # bash's ${#array[@]} would open a jinja comment; templates comment with {## ... ##}.
    comment_start_string="{##",
    comment_end_string="##}",
)
# Quote a value for the shell: every value a template puts on a command line goes through this.
_ENV.filters["shq"] = lambda v: shlex.quote(str(v))


def render(template: str, **values: object) -> str:
    """Render `template` (a path under components/templates/) with `values`."""
    return _ENV.get_template(template).render(**values)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

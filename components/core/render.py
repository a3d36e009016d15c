"""Render text (shell scripts, config files) from the tiers' templates (components/<tier>/templates/) with jinja2.

This is the one path by which a value reaches a script or a config file, and it is safe by
construction rather than by review of each template:

- A `{{ value }}` written as it is must be a *plain token* (letters, digits and `_ . , : / @ + = -`,
  not starting with `-`): text that means the same in every context we render into (a shell
  word, a quoted heredoc body, an ini or properties value, an Apache directive, a SQL string).
  Anything else fails the render with `UnsafeValue`, naming the template.
- Any other text must go through the filter for its context, which quotes it there: `shq` for
  a shell word, `comment` for free text on a comment line. (A macro's output would be refused
  too: templates use loops and includes instead.) A filter refuses what it cannot represent (a newline, CR or NUL: a newline in a
  heredoc body could end the heredoc).
- Text this module rendered (a config file embedded in a script) is `Rendered`: every value in
  it already passed these rules, so it is embedded as it is.

Config validation (components/core/config.py) refuses unsafe values first, naming the key; this is the
second wall, and it also covers values that come from other resources (ids, addresses).

StrictUndefined: a missing value is an error at render time, never an empty string in a
script. `render()` takes plain values so tests can render without Pulumi.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

import jinja2

# Each tier keeps its own templates (components/<tier>/templates/); a template's name is its path
# below that folder, and no name is in two tiers (tests/unit/test_render.py).
COMPONENTS = Path(__file__).resolve().parent.parent
TEMPLATE_ROOTS = tuple(COMPONENTS / tier / "templates" for tier in ("core", "db", "mw", "fs", "web"))

# What a value may be when a template writes it without a filter. No quotes, `$`, backticks,
# `\`, `%`, `;`, `&`, `|`, `<>`, `()`, `*?[]{}`, `~`, `#`, `!`, whitespace or control characters;
# no leading `-` (it would read as an option).
PLAIN_TOKEN = re.compile(r"(?:[A-Za-z0-9_.,:/@+=][A-Za-z0-9_.,:/@+=-]*)?")
_UNREPRESENTABLE = re.compile(r"[\x00\n\r]")


class UnsafeValue(ValueError):
    """A value that cannot be written safely where a template puts it."""


class Rendered(str):
    """Text rendered from a template (or quoted by a filter): embedded as it is."""


def _show(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "...'"


def _plain(value: object) -> object:
    """jinja's finalize: every `{{ }}` output passes here."""
    if isinstance(value, Rendered) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if not PLAIN_TOKEN.fullmatch(str(value)):
        raise UnsafeValue(f"{_show(value)} is not a plain token: quote it for its context "
                          "(| shq for a shell word, | comment on a comment line)")
    return value


def shell_quote(value: object) -> Rendered:
    """One shell word, whatever the value holds. A value with a newline, CR or NUL is refused;
    rendered text (a whole script for `bash -c`) may span lines."""
    text = str(value)
    if "\x00" in text or (not isinstance(value, Rendered) and _UNREPRESENTABLE.search(text)):
        raise UnsafeValue(f"{_show(value)} holds a newline, CR or NUL, which no script may carry")
    return Rendered(shlex.quote(text))


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_ROOTS),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    finalize=_plain,
    # bash's ${#array[@]} would open a jinja comment; templates comment with {## ... ##}.
    comment_start_string="{##",
    comment_end_string="##}",
)
_ENV.filters["shq"] = shell_quote


def comment_text(value: object) -> Rendered:
    """Free text on a `#` comment line (shell, my.cnf, properties, Apache): safe to its end of
    line, so only a newline, CR or NUL is refused."""
    text = str(value)
    if _UNREPRESENTABLE.search(text):
        raise UnsafeValue(f"{_show(value)} holds a newline, CR or NUL and cannot sit on a comment line")
    return Rendered(text)


_ENV.filters["comment"] = comment_text


def template_path(template: str) -> Path:
    """The file of a template name (its path below its tier's templates/ folder)."""
    for root in TEMPLATE_ROOTS:
        if (root / template).is_file():
            return root / template
    raise jinja2.TemplateNotFound(template)


def template_names() -> dict[str, Path]:
    """Every template (and shipped file) by name, across the tiers."""
    return {str(p.relative_to(root)): p for root in TEMPLATE_ROOTS for p in sorted(root.rglob("*")) if p.is_file()}


def render(template: str, **values: object) -> Rendered:
    """Render `template` (a name below a tier's templates/ folder, e.g. scripts/db/...) with `values`."""
    try:
        return Rendered(_ENV.get_template(template).render(**values))
    except UnsafeValue as e:
        raise UnsafeValue(f"{template}: {e}") from None


def verbatim(template: str) -> Rendered:
    """A template file as it is (a program we ship, with no values in it)."""
    return Rendered(template_path(template).read_text())


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

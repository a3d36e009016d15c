"""The rendering path: a raw value must be a plain token, anything else goes through its
context's filter, and what no context can carry is refused, naming the template."""

import jinja2
import pytest

from components.core import render as render_module
from components.core.render import PLAIN_TOKEN, Rendered, UnsafeValue, render


def _env_render(source: str, **values) -> str:
    # The product's environment (filters, finalize), over a template given as text.
    return render_module._ENV.from_string(source).render(**values)


@pytest.mark.parametrize("value", ["db1", "10.0.0.11", "10.0.0.0/24", "OX_1", "a,b", "oxadmin@example.com",
                                   "https://x.example/deb", "", 42, "NO_ENGINE_SUBSTITUTION,ANSI"])
def test_plain_tokens_render_raw(value):
    assert _env_render("v={{ v }}", v=value) == f"v={value}"


@pytest.mark.parametrize("value", ["a b", "a\nb", "$(id)", "`id`", "a'b", 'a"b', "a\\b", "a;b", "a|b", "a&b",
                                   "a>b", "a*b", "~root", "#x", "%s", "-oX", "a\x00b"])
def test_anything_else_raw_is_refused(value):
    with pytest.raises(UnsafeValue, match="is not a plain token"):
        _env_render("v={{ v }}", v=value)


def test_a_refusal_names_the_template():
    with pytest.raises(UnsafeValue, match=r"^files/hosts-block.j2: 'a b' is not a plain token"):
        render("files/hosts-block.j2", entries=[("10.0.0.1", ["a b"])])


@pytest.mark.parametrize("value", ["a b", "$(id)", "a'b", "\\", "%s", "-oX", "x" * 65536])
def test_shq_makes_one_shell_word(value, tmp_path):
    import subprocess

    line = _env_render("printf '%s' {{ v | shq }}", v=value)
    assert subprocess.run(["bash", "-c", line], capture_output=True, text=True).stdout == value


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b"])
def test_shq_and_comment_refuse_what_no_line_can_carry(value):
    for source in ("{{ v | shq }}", "# {{ v | comment }}"):
        with pytest.raises(UnsafeValue, match="newline, CR or NUL"):
            _env_render(source, v=value)


def test_rendered_text_embeds_whole():
    inner = render("files/exports.j2", export_path="/srv/fs", clients=["10.0.0.1"], uid=2001, gid=2001)
    assert isinstance(inner, Rendered)
    assert _env_render("{{ t }}", t=inner) == inner
    assert _env_render("bash -c {{ t | shq }}", t=Rendered("a\nb")) == "bash -c 'a\nb'"


def test_a_macro_output_is_refused_like_any_other_text():
    """A macro returns plain text, which the rules cannot tell from a value: templates use loops."""
    with pytest.raises(UnsafeValue):
        _env_render("{% macro m() %}a b{% endmacro %}{{ m() }}")


def test_the_plain_token_rule_has_no_shell_or_config_metacharacters():
    for char in " \t\n\r\x00'\"`$\\;&|<>()*?[]{}~#!%":
        assert not PLAIN_TOKEN.fullmatch(f"a{char}b"), repr(char)
    assert not PLAIN_TOKEN.fullmatch("-rf")


def test_strict_undefined_still_holds():
    with pytest.raises(jinja2.UndefinedError):
        _env_render("{{ missing }}")


def test_each_template_name_lives_in_one_tier():
    """Tiers keep their own templates; a name in two tiers would render whichever comes first."""
    by_name: dict[str, list] = {}
    for root in render_module.TEMPLATE_ROOTS:
        for p in root.rglob("*"):
            if p.is_file():
                by_name.setdefault(str(p.relative_to(root)), []).append(root.parent.name)
    assert len(by_name) > 50
    assert {n: tiers for n, tiers in by_name.items() if len(tiers) > 1} == {}


def test_a_tier_renders_what_it_includes_from_another():
    """A db script includes the core prelude's helpers by name, across tiers."""
    assert render_module.template_path("scripts/db/galera-join.sh.j2").parts[-5:-3] == ("db", "templates")
    assert render_module.template_path("prelude.sh.j2").parts[-3:-1] == ("core", "templates")

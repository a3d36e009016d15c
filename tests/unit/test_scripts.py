"""The rendered scripts run with the real bash: the prelude's contract, and the baseline steps.

These run on this machine as the provider would run them on a host (`sh -c "bash -c '<script>' step"`).
Only read-only scripts run against this machine's own files; the hosts-file step runs in a
private mount namespace over a scratch copy of /etc/hosts.
"""

import base64
import os
import shutil
import subprocess

import pytest

from components.core.parse import parse_facts
from components.core.remote import command_line, render_step
from components.core.render import render


def _run(template: str, values: dict, stdin: str = "", step: str = "t1-step", host: str = "t1", wrap=()):
    script = render_step(step, host, template, values)
    argv = [*wrap, "sh", "-c", command_line(step, script)]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def _prelude_then(shell: str, **kw):
    """Run the real prelude followed by a few test lines (tests may write shell; product code may not)."""
    script = render("prelude.sh.j2", step="t1-step", host="t1") + shell
    return subprocess.run(["sh", "-c", command_line("t1-step", script)], capture_output=True, text=True,
                          timeout=60, **kw)


def _stdin(**secrets) -> str:
    return "".join(f"{k}={base64.b64encode(v.encode()).decode()}\n" for k, v in secrets.items())


def test_secrets_round_trip_over_stdin():
    """Quotes, dollars, spaces and newlines survive; nothing is exported to child processes."""
    tricky = "pa'ss \"word\" $HOME `id` \\ end\nsecond line"
    result = _prelude_then('ox_read_secrets\nprintf "%s" "$DB_PASSWORD"\nenv | grep -c DB_PASSWORD || true\n',
                           input=_stdin(DB_PASSWORD=tricky))
    assert result.returncode == 0, result.stderr
    assert result.stdout == tricky + "0\n"


def test_a_failing_command_names_host_and_step():
    result = _prelude_then("false\necho not reached\n")
    assert result.returncode == 1
    assert "not reached" not in result.stdout
    assert "ox-estate: step t1-step on t1: failed (exit 1) at line" in result.stderr
    assert ": false" in result.stderr


def test_failure_message_shows_variable_names_not_secret_values():
    result = _prelude_then('ox_read_secrets\ntest "$DB_PASSWORD" = other\n', input=_stdin(DB_PASSWORD="xyzzy-secret"))
    assert result.returncode == 1
    assert '"$DB_PASSWORD"' in result.stderr and "xyzzy-secret" not in result.stderr


def test_wait_for_is_bounded():
    result = _prelude_then("ox_wait_for 'the impossible' 3 0.01 false\n")
    assert result.returncode == 1
    assert "gave up waiting for the impossible after 3 tries" in result.stderr


def test_wait_for_returns_once_ready(tmp_path):
    marker = tmp_path / "ready"
    # The condition becomes true on the third try.
    result = _prelude_then(f"n=0\nox_wait_for marker 10 0.01 sh -c 'echo x >> {marker}; [ $(wc -l < {marker}) -ge 3 ]'\n"
                           "echo waited\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "waited\n" and marker.read_text().count("x") == 3


def test_write_file_is_atomic_and_says_whether_it_changed(tmp_path):
    target = tmp_path / "f.cnf"
    line = f"printf 'a=1\\n' | ox_write_file {target} 0600 root:root\n"
    first = _prelude_then(line)
    second = _prelude_then(line)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert f"wrote {target}" in first.stderr and f"unchanged {target}" in second.stderr
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


def test_facts_script_output_parses():
    """The real facts script on this (Debian) machine prints what parse_facts reads."""
    result = _run("facts.sh.j2", {"packages": ["bash", "no-such-package-ox"]}, step="t1-facts")
    assert result.returncode == 0, result.stderr
    facts = parse_facts("t1-facts", result.stdout)
    assert facts.memoryMb > 0 and facts.cpus >= 1
    assert facts.packages["bash"] and facts.missing_packages == ["no-such-package-ox"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="NEEDS ROOT: runs the hosts-file step in a private mount namespace (CI runs as root)")
def test_hosts_file_block_is_managed_and_idempotent(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# operator's own line\n192.0.2.9 legacy\n")
    values = {"block": render("files/hosts-block.j2", entries=[["10.0.0.11", ["db1", "db1.internal"]], ["10.0.0.21", ["mw1"]]])}
    # A private mount namespace whose /etc is an overlay: writes land in `etc` (the upper layer),
    # which starts with our scratch hosts file; the real /etc is untouched.
    etc, work = tmp_path / "etc", tmp_path / "work"
    etc.mkdir()
    work.mkdir()
    shutil.copy(hosts, etc / "hosts")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t overlay overlay -o lowerdir=/etc,upperdir={etc},workdir={work} /etc && exec "$@"', "wrap"]
    first = _run("hosts-file.sh.j2", values, step="db1-hosts-file", host="db1", wrap=wrap)
    assert first.returncode == 0, first.stderr
    text = (etc / "hosts").read_text()
    assert "# operator's own line\n192.0.2.9 legacy\n" in text
    assert "10.0.0.11 db1 db1.internal\n10.0.0.21 mw1\n# END ox-estate\n" in text
    second = _run("hosts-file.sh.j2", values, step="db1-hosts-file", host="db1", wrap=wrap)
    assert second.returncode == 0 and "hosts block unchanged" in second.stderr
    assert (etc / "hosts").read_text() == text
    changed = _run("hosts-file.sh.j2", {"block": render("files/hosts-block.j2", entries=[["10.0.0.11", ["db1"]]])},
                   step="db1-hosts-file", host="db1", wrap=wrap)
    assert changed.returncode == 0, changed.stderr
    assert (etc / "hosts").read_text().count("# BEGIN ox-estate") == 1
    assert "mw1" not in (etc / "hosts").read_text()


def test_install_touches_apt_only_for_missing_packages(tmp_path):
    """ox_install: nothing to do when all are installed; one update and one install otherwise."""
    calls = tmp_path / "apt-calls"
    fake = tmp_path / "apt-get"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    fake.chmod(0o755)
    path = {"PATH": f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin"}
    present = _prelude_then("ox_install bash coreutils\n", env=path)
    assert present.returncode == 0, present.stderr
    assert not calls.exists()
    missing = _prelude_then("ox_install bash no-such-package-ox\n", env=path)
    assert missing.returncode == 0, missing.stderr
    assert calls.read_text().splitlines() == ["update -q", "install -y -q --no-install-recommends no-such-package-ox"]

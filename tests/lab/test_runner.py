"""Tests for lab/runner.py against a throwaway sshd on 127.0.0.1.

Needs /usr/sbin/sshd (Debian: openssh-server) and ssh-keygen, and root (the
fixture program logs in as root). The sshd started here is stopped by its own
pid at the end of the module.

Every program run happens in a subprocess (``python -m lab.runner``), like the
language host runs one program per process: a program run changes
process-wide state (sys.modules caches the program's own modules, pulumi's
settings, config and root-stack context, the asyncio loop, executor threads),
and a subprocess also gives a hard timeout that kills a hung run instead of
hanging pytest. One test runs ``run_program`` in-process, because that is how
``python -m lab`` uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = Path(__file__).resolve().parent / "fixture_program"
PY = sys.executable
RUN_TIMEOUT = 120

sys.path.insert(0, str(ROOT))

from lab import runner, runner_state  # noqa: E402
from loopback import free_port  # noqa: E402

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh-keygen") and os.geteuid() == 0),
    reason="needs root, /usr/sbin/sshd and ssh-keygen (apt-get install -y openssh-server)",
)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True, timeout=30)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
# Like Debian's default (LANG LC_*), plus what pulumi-command sends on delete.
AcceptEnv LANG LC_* PULUMI_COMMAND_*
AllowTcpForwarding yes
LogLevel ERROR
""")
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config"), "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
    try:
        yield {"port": port, "key": (d / "client_key").read_text(), "dir": d}
    finally:
        proc.terminate()  # only the sshd we started, by its own pid
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def lab(sshd, tmp_path):
    """run(mode, scenario, **extra) -> CompletedProcess; plus paths."""
    wd = tmp_path / "remote"
    wd.mkdir()

    class Lab:
        workdir = wd
        state = tmp_path / "state" / "test.json"
        record = tmp_path / "record.json"

        def extra(self, scenario, **more):
            cfg = {"fixture:host": "127.0.0.1", "fixture:port": str(sshd["port"]),
                   "fixture:workdir": str(wd), "fixture:scenario": scenario,
                   "fixture:sshPrivateKey": sshd["key"]}
            cfg.update({f"fixture:{k}": str(v) for k, v in more.items()})
            p = tmp_path / f"extra-{scenario}.json"
            p.write_text(json.dumps({"config": cfg, "secretKeys": ["fixture:sshPrivateKey"]}))
            p.chmod(0o600)
            return p

        def run(self, mode, scenario="basic", verbose=True, record=None, **more):
            argv = [PY, "-m", "lab.runner", mode, "--program", str(PROGRAM), "--stack", "test",
                    "--state", str(self.state), "--record", str(record or self.record),
                    "--command-timeout", "60"]
            if mode in ("up", "preview"):
                argv += ["--extra-config", str(self.extra(scenario, **more))]
            if verbose:
                argv.append("-v")
            return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT)

        def load_state(self):
            return runner_state.load_state(self.state)

        def load_record(self, path=None):
            return json.loads(Path(path or self.record).read_text())

    return Lab()


def _steps(record):
    return {s["name"]: s for s in record["steps"]}


# ---------------------------------------------------------------- pure units


def test_load_stack_config_turns_structures_into_json():
    cfg = runner.load_stack_config(PROGRAM, "test")
    assert cfg["fixture:user"] == "root"
    assert json.loads(cfg["fixture:tags"]) == {"role": "test", "count": 2}
    assert cfg["fixture:enabled"] == "true"
    assert "fixture:sshPrivateKeyFromYaml" not in cfg  # {secure: ...} cannot be decrypted here


def test_random_value_honours_options():
    v = runner.random_value({"length": 40.0, "special": True, "overrideSpecial": "_-"})
    assert len(v) == 40 and set(v) <= set("_-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    v = runner.random_value({"length": 30.0, "special": False, "upper": False, "numeric": False})
    assert v.islower() and v.isalpha() and len(v) == 30
    v = runner.random_value({"length": 12.0, "special": False, "minNumeric": 12.0})
    assert v.isdigit()
    assert runner.random_value({"length": 32.0}) != runner.random_value({"length": 32.0})


def test_delete_plan_goes_through_components_and_parents():
    g = {
        "a": {"dependencies": []},
        "comp": {"dependencies": ["a"]},
        "child": {"parent": "comp", "dependencies": []},
        "b": {"dependencies": ["child"]},
        "x": {"dependencies": []},
    }
    plan = runner_state.delete_plan(g, ["a", "child", "b", "x"])
    assert plan == {"a": {"child", "b"}, "child": {"b"}, "b": set(), "x": set()}


def test_lab_cli_reads_hosts_and_middleware_nodes_tolerantly():
    from lab.__main__ import _hosts, _middleware_hosts

    cfg = {"ox-estate:hosts": [{"name": "db1", "address": "10.0.0.1", "role": "db"}, {"name": "x"}],
           "ox-estate:middleware": {"nodes": [{"host": "mw1", "jkroute": "OX1"}, "mw2", {"host": "mw1"}]}}
    assert _hosts(cfg) == [("db1", "10.0.0.1")]
    assert _middleware_hosts(cfg) == ["mw1", "mw2"]
    assert _middleware_hosts({"ox-estate:middleware": [{"nodes": [{"host": "a"}]}, {"nodes": []}]}) == ["a"]
    assert _middleware_hosts({}) == [] and _middleware_hosts({"ox-estate:middleware": {}}) == []


# ---------------------------------------------------------------- real runs


def test_up_chains_stdout_stdin_env_proxy_and_keeps_secrets_out_of_logs(lab, sshd):
    r = lab.run("up")
    assert r.returncode == 0, r.stderr
    st = lab.load_state()
    out = {k: runner_state.unwrap(v) for k, v in st["outputs"].items()}
    # one trailing newline trimmed, like pulumi-command
    assert out["registerStdout"] == "database 4 registered\n"
    # A's stdout chained into B's create through .apply, and ran for real
    assert out["useIdStdout"] == "got-4"
    assert (lab.workdir / "id.txt").read_text() == "id=4\n"
    # stdin reaches the remote
    assert (lab.workdir / "stdin.txt").read_text() == "hello stdin\n"
    assert out["stdinBytes"] == "12"
    # environment goes through the SSH env request: AcceptEnv decides
    assert out["envStdout"] == "lc=passed other=unset"
    assert out["proxyStdout"].startswith("proxied-127.0.0.1 ")
    # secret stdin arrives, but is never printed (verbose run!)
    assert (lab.workdir / "secret.txt").read_text() == "s3cr3t-Value-42"
    assert out["secretStdout"] == "s3cr3t-Value-42"
    password = out["password"]
    assert runner_state.is_secret(st["outputs"]["password"])
    assert (lab.workdir / "pw.txt").read_text() == password
    key_line = sshd["key"].splitlines()[1]
    for text in (r.stdout, r.stderr):
        assert "s3cr3t-Value-42" not in text
        assert password not in text
        assert key_line not in text
    assert "[secret]" in r.stdout  # the masked outputs printed by the CLI
    # non-secret output is shown in verbose mode
    assert "use-id out | got-4" in r.stderr
    assert "create use-id  (127.0.0.1)" in r.stderr
    # state: 0600, commands with their delete inputs and dependencies
    assert stat.S_IMODE(os.stat(lab.state).st_mode) == 0o600
    cmds = {c["name"]: c for c in st["commands"].values()}
    assert cmds["register"]["inputs"]["delete"].startswith("echo register >> ")
    assert cmds["use-id"]["stdout"] == "got-4"
    # record
    rec = _steps(lab.load_record())
    assert rec["use-id"]["dependencies"] == ["register"]
    assert rec["after-all"]["dependencies"] == ["use-id"]
    assert "grp-inner" in rec["after-group"]["dependencies"]
    assert rec["use-pw"]["dependencies"] == ["pw"]
    assert rec["register"]["exitCode"] == 0 and rec["register"]["host"] == "127.0.0.1"
    assert rec["use-id"]["start"] >= rec["register"]["end"]


def test_random_persists_and_destroy_runs_deletes_in_reverse_order(lab):
    r1 = lab.run("up", verbose=False)
    assert r1.returncode == 0, r1.stderr
    first = lab.load_state()
    (lab.workdir / "id.txt").unlink()
    r2 = lab.run("up", verbose=False)
    assert r2.returncode == 0, r2.stderr
    second = lab.load_state()
    assert first["random"] == second["random"] and len(first["random"]) == 2
    assert first["outputs"]["password"] == second["outputs"]["password"]
    assert first["outputs"]["randomString"] == second["outputs"]["randomString"]
    # ... and nothing ran again: inputs unchanged means no command, as under the engine
    assert not (lab.workdir / "id.txt").exists()
    assert lab.load_record()["executed"] == 0
    assert lab.load_record()["operations"]["create"] == 0

    r = lab.run("destroy", record=lab.record.with_name("destroy.json"))
    assert r.returncode == 0, r.stderr
    order = (lab.workdir / "deletes.log").read_text().split()
    assert sorted(order) == sorted(["register", "use-id", "after-all", "stdin-secret",
                                    "grp-inner", "after-group"])
    pos = {n: i for i, n in enumerate(order)}
    assert pos["after-all"] < pos["use-id"] < pos["register"]  # dependents first
    assert pos["after-group"] < pos["grp-inner"]  # depends_on a component
    # the old stdout reaches the delete as PULUMI_COMMAND_STDOUT (AcceptEnv allows it here)
    assert (lab.workdir / "register-prev-stdout.txt").read_text() == "database 4 registered\n"
    assert not lab.state.exists()
    drec = _steps(lab.load_record(lab.record.with_name("destroy.json")))
    assert drec["use-id"]["start"] >= drec["after-all"]["end"]
    assert drec["register"]["start"] >= drec["use-id"]["end"]


def test_failing_command_fails_the_run_with_name_host_and_exit_code(lab):
    t0 = time.monotonic()
    r = lab.run("up", "fail")
    assert time.monotonic() - t0 < 60  # no hang
    assert r.returncode != 0
    assert "'will-fail'" in r.stderr and "127.0.0.1" in r.stderr
    assert "exit code 3" in r.stderr
    assert "boom-on-stderr" in r.stderr  # logging allows stderr
    assert not (lab.workdir / "after-fail.txt").exists()  # the dependent never ran
    rec = _steps(lab.load_record())
    assert rec["will-fail"]["exitCode"] == 3
    assert "after-fail" not in rec
    assert rec["slow-independent"]["exitCode"] == 0  # in-flight work finished
    assert lab.load_record()["ok"] is False

    # logging='none': the failure names the step, but its stderr is not shown
    q = lab.run("up", "fail-quiet")
    assert q.returncode != 0
    assert "'quiet-fail'" in q.stderr and "exit code 4" in q.stderr
    assert "quiet-stderr-text" not in q.stderr + q.stdout


def test_program_exception_fails_the_run(lab):
    r = lab.run("up", "raise")
    assert r.returncode != 0
    assert "fixture exploded on purpose" in r.stderr
    assert "__main__.py" in r.stderr

    # an exception inside an apply (a stdout parser) fails the run too
    r = lab.run("up", "raise-in-apply")
    assert r.returncode != 0
    assert "cannot parse 'garbage'" in r.stderr
    assert "start  uses-parsed" not in r.stderr


def test_independent_commands_overlap_and_dependent_ones_do_not(lab):
    # 10 independent commands: more than the 6 workers the SDK's default
    # executor would have on a 2-core machine.
    r = lab.run("up", "concurrency", verbose=False, parallel=10)
    assert r.returncode == 0, r.stderr
    steps = _steps(lab.load_record())
    par = [steps[f"par-{i}"] for i in range(10)]
    # all ten were running at the same time: the last one started before the
    # first one ended (with the SDK's default 6-worker executor the 7th could
    # only start after one of the first six had finished)
    assert max(s["start"] for s in par) < min(s["end"] for s in par)
    a, b, c = steps["seq-a"], steps["seq-b"], steps["seq-c"]
    assert a["start"] < par[0]["end"] and par[0]["start"] < a["end"]  # independent: overlap
    assert b["start"] >= a["end"]  # property dependency: no overlap
    assert c["start"] >= a["end"]  # depends_on: no overlap
    assert b["dependencies"] == ["seq-a"] and c["dependencies"] == ["seq-a"]


def test_run_program_in_process(lab, sshd):
    """The API python -m lab uses, in this process, with a hard alarm."""
    cfg = runner.load_stack_config(PROGRAM, "test")
    extra = json.loads(lab.extra("concurrency", parallel=2).read_text())
    cfg.update(extra["config"])

    def on_alarm(*_):
        raise TimeoutError("run_program hung")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(RUN_TIMEOUT)
    try:
        import io

        buf = io.StringIO()
        res = runner.run_program(PROGRAM, "test", cfg, extra["secretKeys"], "up",
                                 lab.record, lab.state, host_names={"127.0.0.1": "local"},
                                 stream=buf)
        assert res.outputs["n"] == 2
        assert "done   seq-b  (local)" in buf.getvalue()
        # The overlap check in test_independent_commands_overlap... is
        # discriminating: with the SDK's default-sized executor (6 workers
        # here) ten independent commands do NOT all run at once.
        # A fresh state: with the first run's state, par-0 and par-1 would be unchanged and not run.
        runner.run_program(PROGRAM, "test", {**cfg, "fixture:parallel": "10"}, extra["secretKeys"],
                           "up", lab.record, lab.state.with_name("fresh.json"), stream=buf, max_workers=6)
        par = [s for s in lab.load_record()["steps"] if s["name"].startswith("par-")]
        assert len(par) == 10
        assert max(s["start"] for s in par) >= min(s["end"] for s in par)
        with pytest.raises(runner.LabRunError, match="will-fail"):
            runner.run_program(PROGRAM, "test", {**cfg, "fixture:scenario": "fail"},
                               extra["secretKeys"], "up", lab.record, lab.state, stream=buf)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_up_deletes_commands_no_longer_in_the_program(lab):
    assert lab.run("up", verbose=False).returncode == 0
    r = lab.run("up", "concurrency", verbose=False, parallel=1)
    assert r.returncode == 0, r.stderr
    order = (lab.workdir / "deletes.log").read_text().split()
    pos = {n: i for i, n in enumerate(order)}
    assert pos["after-all"] < pos["use-id"] < pos["register"]
    names = {c["name"] for c in lab.load_state()["commands"].values()}
    assert names == {"par-0", "seq-a", "seq-b", "seq-c"}
    assert lab.load_state()["random"] == {}


def test_stack_reference_aws_mocks_and_invokes(lab):
    other = lab.state.with_name("other.json")
    runner_state.save_state(other, {**runner_state.empty_state("fixture", "other"), "outputs": {
        "greeting": "hi from other", "token": runner_state.wrap_secret("tok-123456")}})
    r = lab.run("up", "misc")
    assert r.returncode == 0, r.stderr
    out = lab.load_state()["outputs"]
    assert out["fromOther"] == "hi from other"
    assert runner_state.is_secret(out["secretFromOther"])
    assert runner_state.unwrap(out["secretFromOther"]) == "tok-123456"
    assert out["amiId"].startswith("ami-")
    assert out["vmIp"].startswith("10.")
    cmds = {c["name"]: c for c in lab.load_state()["commands"].values()}
    assert cmds["after-vm"]["stdout"] == f"vm={out['vmIp']}"
    assert "tok-123456" not in r.stdout + r.stderr


# ---------------------------------------------------------------- the engine's lifecycle


def _ops(result_or_record) -> dict[str, str]:
    """name -> operation, for the fixture's commands and randoms."""
    return {r["name"]: r["op"] for r in result_or_record["plan"]}


def _ran(lab) -> list[str]:
    path = lab.workdir / "ops.log"
    lines = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def test_unchanged_up_runs_nothing_and_changes_update_replace_or_delete(lab):
    assert lab.run("up", "lifecycle", verbose=False).returncode == 0
    assert sorted(_ran(lab)) == sorted(["create-a-1", "create-b", "create-c-a=1", "create-r-1",
                                        "create-d-1", "create-gone", "create-ig"])
    pw = lab.load_state()["outputs"]["pw"]

    # Unchanged: nothing runs, outputs come from the state.
    r = lab.run("up", "lifecycle", verbose=False)
    assert r.returncode == 0, r.stderr
    rec = lab.load_record()
    assert rec["executed"] == 0 and _ran(lab) == []
    assert set(_ops(rec).values()) == {"same"}
    assert lab.load_state()["outputs"]["pw"] == pw

    # An input change updates: `update` runs with the previous stdout in the environment; b
    # depends on a but its inputs are unchanged, so it is the same; c's script is made from
    # a's stdout, so it is updated (it has no `update`, so its `create` runs).
    r = lab.run("up", "lifecycle", verbose=False, a=2)
    assert r.returncode == 0, r.stderr
    ops = _ops(lab.load_record())
    assert {n: o for n, o in ops.items() if o != "same"} == {"a": "update", "c": "update"}
    assert _ran(lab) == ["update-a-2-prev=a=1", "create-c-a=2"]

    # A trigger change replaces: create the new one, delete the old one at the end.
    assert lab.run("up", "lifecycle", verbose=False, a=2, r=2).returncode == 0
    assert {n: o for n, o in _ops(lab.load_record()).items() if o != "same"} == {"r": "replace"}
    assert _ran(lab) == ["create-r-2", "delete-r-1"]

    # With delete_before_replace the old delete runs first.
    assert lab.run("up", "lifecycle", verbose=False, a=2, r=2, d=2).returncode == 0
    assert _ran(lab) == ["delete-d-1", "create-d-2"]

    # A trigger under ignore_changes, changed or removed, is no change: nothing is replaced.
    for ig in ("2", "none"):
        assert lab.run("up", "lifecycle", verbose=False, a=2, r=2, d=2, ig=ig).returncode == 0
        assert _ops(lab.load_record())["ig"] == "same" and _ran(lab) == []

    # A resource no longer in the program is deleted; a random whose input changed is replaced.
    assert lab.run("up", "lifecycle", verbose=False, a=2, r=2, d=2, gone="false", pwLength=30).returncode == 0
    ops = _ops(lab.load_record())
    assert ops["gone"] == "delete" and ops["lpw"] == "replace"
    assert _ran(lab) == ["delete-gone"]
    new_pw = runner_state.unwrap(lab.load_state()["outputs"]["pw"])
    assert len(new_pw) == 30 and new_pw != runner_state.unwrap(pw)
    assert "gone" not in {c["name"] for c in lab.load_state()["commands"].values()}


def test_preview_opens_no_connection_and_up_does_what_it_planned(lab, sshd):
    assert lab.run("up", "lifecycle", verbose=False).returncode == 0
    _ran(lab)
    state_before = lab.state.read_text()
    knobs = {"a": 3, "r": 3, "d": 3, "gone": "false"}
    p = lab.run("preview", "lifecycle", verbose=False, record=lab.record.with_name("preview.json"), **knobs)
    assert p.returncode == 0, p.stderr
    prec = lab.load_record(lab.record.with_name("preview.json"))
    assert prec["sshConnections"] == 0 and prec["executed"] == 0
    assert _ran(lab) == [] and lab.state.read_text() == state_before
    planned = _ops(prec)
    # c's script is made from a's stdout, unknown until a has run: shown as an update.
    assert {n: o for n, o in planned.items() if o != "same"} == {
        "a": "update", "c": "update", "r": "replace", "d": "replace", "gone": "delete"}
    assert "+ 0 to create, ~ 2 to update, +- 2 to replace, - 1 to delete" in p.stdout

    u = lab.run("up", "lifecycle", verbose=False, **knobs)
    assert u.returncode == 0, u.stderr
    assert _ops(lab.load_record()) == planned


def test_preview_diff_shows_the_script_change_with_secrets_masked(lab):
    assert lab.run("up", "lifecycle", verbose=False).returncode == 0
    p = lab.run("preview", "lifecycle", verbose=False, a=5, record=lab.record.with_name("preview.json"))
    assert p.returncode == 0, p.stderr
    assert "~  update  a" in p.stdout
    # without --diff: no script text
    assert "echo create-a-5" not in p.stdout
    argv = [PY, "-m", "lab.runner", "preview", "--program", str(PROGRAM), "--stack", "test",
            "--state", str(lab.state), "--record", str(lab.record.with_name("preview.json")),
            "--extra-config", str(lab.extra("lifecycle", a=5)), "--diff"]
    d = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert d.returncode == 0, d.stderr
    assert "-echo create-a-1" in d.stdout.replace("    ", "") and "+echo create-a-5" in d.stdout.replace("    ", "")
    assert "known only once the steps before it have run" in d.stdout  # c's new script is unknown
    assert "BEGIN OPENSSH" not in d.stdout


def test_a_failed_update_is_retried_by_the_next_up(lab):
    assert lab.run("up", "lifecycle", verbose=False).returncode == 0
    _ran(lab)
    # a's update fails once (the marker file makes it fail)
    (lab.workdir / "fail-a").write_text("")
    r = lab.run("up", "lifecycle", verbose=False, a=7)
    assert r.returncode != 0
    (lab.workdir / "fail-a").unlink()
    # the state still holds the old inputs, so the same change is an update again
    r = lab.run("up", "lifecycle", verbose=False, a=7)
    assert r.returncode == 0, r.stderr
    assert _ops(lab.load_record())["a"] == "update"


def test_set_overrides_a_stack_value_by_path_as_pulumi_config_set_path_does():
    from lab import stackconfig

    c = {"ox-estate:hosts": [{"name": "a", "address": "10.0.0.1"}], "ox-estate:frontend": {"adminNetworks": ["x"]}}
    for assignment in ("frontend.adminNetworks=[10.0.0.0/29]", "ox-estate:hosts[1]={name: b, address: 10.0.0.2}",
                       "hosts[0].address=10.0.0.9", "database.tuning.maxConnections=77", "converge=abc"):
        stackconfig.set_path(c, assignment, "ox-estate")
    assert c == {"ox-estate:hosts": [{"name": "a", "address": "10.0.0.9"}, {"name": "b", "address": "10.0.0.2"}],
                 "ox-estate:frontend": {"adminNetworks": ["10.0.0.0/29"]},
                 "ox-estate:database": {"tuning": {"maxConnections": 77}}, "ox-estate:converge": "abc"}
    with pytest.raises(runner.LabRunError, match="KEY=VALUE"):
        stackconfig.set_path(c, "frontend.adminNetworks", "ox-estate")

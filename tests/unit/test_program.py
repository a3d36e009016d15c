"""Wiring under mocks: the resource graph, dependencies, secrets and outputs of the real program."""

import json

import pulumi
import pytest

from components.core.hosts import Host
from components.core.parse import StepOutputError
from components.core.remote import SecretInScriptError, run_script
from harness import UnitMocks, is_secret, run_program, unwrap

SECRET = {"sshPrivateKey", "mysqlRootPassword", "configdbPassword"}
ROOT_PW = "Root-pw-from-config-7f3a"
CONFIGDB_PW = "Configdb-pw-from-config-c41d"


@pytest.fixture
def recording(stack_config):
    return run_program(stack_config(mysqlRootPassword=ROOT_PW, configdbPassword=CONFIGDB_PW), SECRET)


def test_control_a_valid_config_registers_resources(recording):
    """Counterpart of the bad-config tests: with a valid config the same harness sees resources."""
    steps = [r.name for r in recording.of_type("command:remote:Command")]
    assert len([s for s in steps if s.endswith(("-facts", "-hosts-file"))]) == 18  # baseline on 9 hosts


def test_every_resource_has_a_parent_below_the_estate(recording):
    estate = recording.named("ox")
    assert estate.type == "ox-estate:index:Estate"
    for r in recording.non_stack:
        if r is not estate:
            assert r.parent, f"{r.name} has no parent"
            assert r.parent != estate.parent or r.type == "ox-estate:index:Estate", f"{r.name} sits at the stack root"


def test_hosts_file_waits_for_every_hosts_facts(recording):
    """The /etc/hosts block names every host by its own hostname, so it needs all facts first
    (through one waypoint: each hosts-file step has a few dependencies, not one per host)."""
    facts = {r.urn for r in recording.registrations if r.name.endswith("-facts")}
    assert len(facts) == 9
    for r in recording.registrations:
        if r.name.endswith("-hosts-file"):
            assert facts <= recording.waits_for(r.name), r.name
            assert len(r.dependencies) <= 3, r.name


def test_facts_stdout_chains_into_the_hosts_file_script(recording):
    """What the facts step printed (the machine's hostname) is rendered into the next step."""
    script = unwrap(recording.named("mw2-hosts-file").inputs["create"])
    assert "10.0.0.22 mw2 mw2.internal" in script
    assert "10.0.0.11 db1 db1.internal" in script


def test_connections_are_secret_and_carry_the_key(recording, ssh_key):
    for r in recording.of_type("command:remote:Command"):
        conn = r.inputs["connection"]
        assert is_secret(conn), r.name
        assert unwrap(conn)["privateKey"] == ssh_key
        assert unwrap(conn)["host"].startswith("10.0.0.")


def _plain_text(value) -> str:
    """Everything in an input that is NOT wrapped as a secret, as one string."""
    if is_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(f"{k} {_plain_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(_plain_text(v) for v in value)
    return str(value)


def test_no_secret_in_any_unsecret_input(recording, ssh_key):
    """Neither configured nor generated secrets appear anywhere a resource input is not secret."""
    generated = [f"generated-{r.name}-0123456789abcdef"
                 for r in recording.of_type("random:index/randomPassword:RandomPassword")]
    assert len(generated) == 5  # of seven passwords, root and configdb come from config
    key_line = ssh_key.strip().splitlines()[1]
    for r in recording.non_stack:
        text = _plain_text(r.inputs)
        for secret in [ROOT_PW, CONFIGDB_PW, key_line, *generated]:
            assert secret not in text, f"{r.name} carries a secret in clear"


def test_no_step_has_triggers_so_no_change_replaces_one_or_runs_an_undo(recording):
    """Under the engine only `triggers` replaces a remote.Command (pulumi-command's schema), and a
    replacement runs the undo: a rename would unregister. Without triggers every change is an
    update, which re-runs the (probing) create."""
    commands = recording.of_type("command:remote:Command")
    assert commands and not [r.name for r in commands if r.inputs.get("triggers")]
    # The host firewall's undo removes its nftables table (tests/unit/test_firewall.py).
    undoable = sorted(r.name for r in commands if "delete" in r.inputs and not r.name.startswith("ox-firewall-"))
    assert undoable == ["ox-registration-database-oxdb-galera", "ox-registration-database-oxdb-galera-read",
                        "ox-registration-database-oxdb-gtid", "ox-registration-database-oxdb-gtid-read",
                        "ox-registration-filestore", "ox-registration-server"]


def test_converge_changes_exactly_the_probe_and_repair_scripts(stack_config):
    from components.core.remote import CONVERGING

    def scripts(**overrides):
        rec = run_program(stack_config(**overrides), {"sshPrivateKey"})
        return {r.name: unwrap(r.inputs["create"]) for r in rec.of_type("command:remote:Command")}

    before, after = scripts(), scripts(converge="1733090000")
    changed = {n for n in before if before[n] != after[n]}
    assert set(after) == set(before)
    assert all("# converge 1733090000" in after[n] for n in changed)
    phases = {n.rsplit("-", 1)[-1] for n in changed}
    # services up, checks, mounts and the adopt-or-register registrations; never an install
    assert {"bootstrap", "join", "verify", "clustercheck", "haproxy", "configure", "server", "filestore",
            "start", "check"} <= phases
    assert not [n for n in changed if n.endswith(("-install", "-facts", "-hosts-file", "-initconfigdb", "-packages"))]
    assert len(CONVERGING) >= 15
    # a token that could break out of the script's comment is refused by config validation
    from components.core.config import ConfigError, parse

    with pytest.raises(ConfigError, match="converge"):
        parse({**stack_config(), "converge": "x\ntouch /tmp/pwned"}, {"sshPrivateKey"})


def test_scripts_run_with_bash_strict_mode(recording):
    for r in recording.of_type("command:remote:Command"):
        create = unwrap(r.inputs["create"])
        assert create.startswith("bash -c '# ox-estate step "), r.name
        assert "set -Eeuo pipefail" in create


def test_outputs(recording):
    assert recording.outputs["hostAddresses"]["web1"] == "10.0.0.41"
    assert recording.outputs["hostFacts"]["db1"]["packages"]["mariadb-server"] == "1.0"
    assert not any(recording.secret_outputs.values())


def test_each_program_run_gets_a_fresh_root_stack(stack_config):
    """The root stack is a context variable that `set_mocks` keeps once set: a second program would
    inherit the first one's exports (here galera's), and a pending one would await a closed loop."""
    run_program(stack_config(mysqlRootPassword=ROOT_PW, configdbPassword=CONFIGDB_PW), SECRET)
    gtid_only = stack_config(database={"gtid": {"master": {"host": "db4", "serverId": 1},
                                                "slave": {"host": "db5", "serverId": 2}}, "configdb": "gtid"},
                             mysqlRootPassword=ROOT_PW, configdbPassword=CONFIGDB_PW)
    outputs = run_program(gtid_only, SECRET).outputs
    assert "gtidReplication" in outputs and not [k for k in outputs if k.startswith("galera")]


def test_generated_passwords_are_letters_and_digits(recording):
    for r in recording.of_type("random:index/randomPassword:RandomPassword"):
        assert r.inputs["length"] == 32 and r.inputs["special"] is False


def test_facts_that_do_not_parse_fail_the_step(stack_config):
    """A host printing something unexpected fails the deploy naming the step, not later, elsewhere."""

    class GarbledFacts(UnitMocks):
        @staticmethod
        def stdout_of(name, inputs):
            return "Welcome to Ubuntu!" if name == "db2-facts" else UnitMocks.stdout_of(name, inputs)

    with pytest.raises(StepOutputError, match="step db2-facts: expected one JSON line of host facts, got: 'Welcome"):
        run_program(stack_config(), {"sshPrivateKey"}, mocks=GarbledFacts())


# --- the remote step layer on its own ---------------------------------------------------------


def _host() -> Host:
    from pulumi_command import remote

    return Host(name="h1", address="10.9.9.9", connection=remote.ConnectionArgs(host="10.9.9.9", user="root"),
                roles=frozenset())


def _run_steps(build):
    """Run `build(parent)` under mocks; return the recording."""
    from harness import run_built

    return run_built(lambda: build(pulumi.ComponentResource("ox-estate:test:Parent", "p")))


def test_step_secrets_go_over_stdin_wrapped_and_unlogged():
    """A password reaches the monitor only inside the secret stdin; the step streams no output."""
    password = "s3cret-Value-with 'quotes' and $dollars"

    def build(parent):
        run_script("h1-uses-secret", _host(), "facts.sh.j2", parent=parent, values={"packages": []},
                   secrets={"DB_PASSWORD": pulumi.Output.secret(password)})

    step = _run_steps(build).named("h1-uses-secret")
    assert is_secret(step.inputs["stdin"])
    stdin = unwrap(step.inputs["stdin"])
    assert stdin.startswith("DB_PASSWORD=") and password not in stdin  # base64 on the wire
    assert password not in json.dumps(unwrap({k: v for k, v in step.inputs.items() if k != "stdin"}))
    assert step.inputs["logging"] == "none"


def test_step_without_secrets_logs_and_has_no_stdin():
    def build(parent):
        run_script("h1-plain", _host(), "facts.sh.j2", parent=parent, values={"packages": ["apache2"]})

    step = _run_steps(build).named("h1-plain")
    assert "stdin" not in step.inputs
    assert step.inputs["logging"] == "stdoutAndStderr"


def test_a_secret_rendered_into_a_script_is_refused():
    """Rendering a secret into the script would put it on the command line (visible in ps)."""

    def build(parent):
        run_script("h1-leaky", _host(), "facts.sh.j2", parent=parent,
                   values={"packages": pulumi.Output.secret(["oops"])})

    with pytest.raises(SecretInScriptError, match="step h1-leaky: a secret value was rendered into the script"):
        _run_steps(build)


def test_step_ids_from_stdout_chain_into_the_next_step():
    """An id printed by one step is rendered into the next one's script, and the graph records it."""

    def build(parent):
        first = run_script("h1-first", _host(), "facts.sh.j2", parent=parent, values={"packages": []})
        run_script("h1-second", _host(), "facts.sh.j2", parent=parent,
                   values={"packages": first.stdout.apply(lambda out: [f"from-{out}"])})

    recording = _run_steps(build)
    second = recording.named("h1-second")
    assert "from-h1-first ok" in unwrap(second.inputs["create"])
    assert recording.named("h1-first").urn in second.property_dependencies["create"]


def test_a_step_with_an_undo_has_no_triggers_and_converge_reaches_only_converging_steps():
    """Editing such a step's script must update it in place: a replacement would run its undo."""
    from dataclasses import replace

    def build(parent):
        run_script("h1-undoable", _host(), "facts.sh.j2", parent=parent, values={"packages": []},
                   delete_template="facts.sh.j2")
        # a converge token on the host reaches only converging templates
        run_script("h1-facts", replace(_host(), converge="tok-1"), "facts.sh.j2", parent=parent,
                   values={"packages": []})
        run_script("h1-check", replace(_host(), converge="tok-1"), "fs/filestore-check.sh.j2", parent=parent,
                   values={"mount_path": "/m", "write": True, "writer": "h1"})

    recording = _run_steps(build)
    step = recording.named("h1-undoable")
    assert "triggers" not in step.inputs
    assert unwrap(step.inputs["delete"]).startswith("bash -c ")
    assert "converge" not in unwrap(recording.named("h1-facts").inputs["create"])
    assert "# converge tok-1" in unwrap(recording.named("h1-check").inputs["create"])


def test_secret_names_must_be_shell_names():
    with pytest.raises(ValueError, match="secret names must be shell variable names"):
        run_script("h1-x", _host(), "facts.sh.j2", parent=None, secrets={"db-pass": "x"})

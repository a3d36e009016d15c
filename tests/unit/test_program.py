"""Wiring under mocks: the resource graph, dependencies, secrets and outputs of the real program."""

import hashlib
import json

import pulumi
import pytest

from components.hosts import Host
from components.parse import StepOutputError
from components.remote import SecretInScriptError, run_script
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
    """The /etc/hosts block names every host by its own hostname, so it needs all facts first."""
    facts = {r.urn for r in recording.registrations if r.name.endswith("-facts")}
    assert len(facts) == 9
    for r in recording.registrations:
        if r.name.endswith("-hosts-file"):
            assert facts <= set(r.dependencies), r.name


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


def test_triggers_are_the_hash_of_the_script_or_of_what_an_undo_undoes(recording):
    """Steps with an undo (unregister) are keyed on their identity, so an edited script updates in
    place instead of replacing, which would unregister and register again under a new id."""
    for r in recording.of_type("command:remote:Command"):
        create = unwrap(r.inputs["create"])
        if "delete" in r.inputs:
            assert r.inputs["triggers"] != [hashlib.sha256(create.encode()).hexdigest()], r.name
        else:
            assert r.inputs["triggers"] == [hashlib.sha256(create.encode()).hexdigest()], r.name
    undoable = sorted(r.name for r in recording.of_type("command:remote:Command") if "delete" in r.inputs)
    assert undoable == ["ox-registration-database-oxdb-galera", "ox-registration-database-oxdb-galera-read",
                        "ox-registration-database-oxdb-gtid", "ox-registration-database-oxdb-gtid-read",
                        "ox-registration-filestore", "ox-registration-server"]


def test_scripts_run_with_bash_strict_mode(recording):
    for r in recording.of_type("command:remote:Command"):
        create = unwrap(r.inputs["create"])
        assert create.startswith("bash -c '# ox-estate step "), r.name
        assert "set -Eeuo pipefail" in create


def test_outputs(recording):
    assert recording.outputs["hostAddresses"]["web1"] == "10.0.0.41"
    assert recording.outputs["hostFacts"]["db1"]["packages"]["mariadb-server"] == "1.0"
    assert not any(recording.secret_outputs.values())


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
    from harness import Recording, RecordingMonitor

    recording = Recording()
    mocks = UnitMocks()
    pulumi.runtime.set_mocks(mocks, project="ox-estate", stack="unit", preview=False,
                             monitor=RecordingMonitor(mocks, recording))

    @pulumi.runtime.test
    def program():
        parent = pulumi.ComponentResource("ox-estate:test:Parent", "p")
        build(parent)

    program()
    return recording


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


def test_a_step_with_an_undo_is_keyed_on_its_identity():
    """Editing such a step's script must update it in place: a replacement would run its undo."""

    def build(parent):
        run_script("h1-undoable", _host(), "facts.sh.j2", parent=parent, values={"packages": []},
                   delete_template="facts.sh.j2", identity=["h1", "thing-1"])

    step = _run_steps(build).named("h1-undoable")
    assert step.inputs["triggers"] == [hashlib.sha256(b"h1\nthing-1").hexdigest()]
    assert unwrap(step.inputs["delete"]).startswith("bash -c ")


def test_secret_names_must_be_shell_names():
    with pytest.raises(ValueError, match="secret names must be shell variable names"):
        run_script("h1-x", _host(), "facts.sh.j2", parent=None, secrets={"db-pass": "x"})

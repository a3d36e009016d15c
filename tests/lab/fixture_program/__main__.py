"""Fixture program for tests/lab/test_runner.py.

`fixture:scenario` picks what to build: basic | concurrency | fail | fail-quiet | raise.
"""
import pulumi
import pulumi_random as random
from pulumi_command import remote

cfg = pulumi.Config()
scenario = cfg.get("scenario") or "basic"
wd = cfg.require("workdir")
tags = cfg.require_object("tags")
assert tags == {"role": "test", "count": 2}, tags
assert cfg.require_bool("enabled") is True
key = cfg.require_secret("sshPrivateKey")
conn = remote.ConnectionArgs(
    host=cfg.require("host"), port=cfg.require_int("port"), user=cfg.get("user") or "root",
    private_key=key,
)


def log_delete(name):
    return f"echo {name} >> {wd}/deletes.log"


def cmd(name, create, opts=None, **kw):
    return remote.Command(name, connection=conn, create=create, opts=opts, **kw)


if scenario == "basic":
    register = cmd("register", "printf 'database 4 registered\\n\\n'",
                   delete=log_delete("register")
                   + f"; printf '%s' \"$PULUMI_COMMAND_STDOUT\" > {wd}/register-prev-stdout.txt")

    def use(stdout):
        words = stdout.split()
        assert words[0] == "database" and words[2] == "registered", stdout
        return f"echo id={words[1]} > {wd}/id.txt; echo got-{words[1]}"

    use_id = cmd("use-id", register.stdout.apply(use), delete=log_delete("use-id"))
    after = cmd("after-all", "true", opts=pulumi.ResourceOptions(depends_on=[use_id]),
                delete=log_delete("after-all"))
    stdin_plain = cmd("stdin-plain", f"cat > {wd}/stdin.txt; wc -c < {wd}/stdin.txt",
                      stdin=cfg.require("greeting") + "\n")
    secret = pulumi.Output.secret("s3cr3t-Value-42")
    stdin_secret = cmd("stdin-secret", f"cat > {wd}/secret.txt; cat {wd}/secret.txt",
                       stdin=secret, delete=log_delete("stdin-secret"))
    env = cmd("env", 'echo "lc=${LC_FIXTURE:-unset} other=${OTHER_FIXTURE:-unset}"',
              environment={"LC_FIXTURE": "passed", "OTHER_FIXTURE": "not-accepted"})
    proxied = remote.Command(
        "via-proxy",
        connection=remote.ConnectionArgs(
            host="127.0.0.1", port=cfg.require_int("port"), user="root", private_key=key,
            proxy=remote.ProxyConnectionArgs(host=cfg.require("host"), port=cfg.require_int("port"),
                                             user="root", private_key=key)),
        create="echo proxied-$SSH_CONNECTION")

    class Group(pulumi.ComponentResource):
        def __init__(self, name, opts=None):
            super().__init__("fixture:test:Group", name, None, opts)
            self.inner = cmd(f"{name}-inner", "true", opts=pulumi.ResourceOptions(parent=self),
                             delete=log_delete(f"{name}-inner"))
            self.register_outputs({})

    grp = Group("grp")
    cmd("after-group", "true", opts=pulumi.ResourceOptions(depends_on=[grp]),
        delete=log_delete("after-group"))

    pw = random.RandomPassword("pw", length=24, override_special="_-")
    rstr = random.RandomString("rstr", length=12, special=False, upper=False)
    cmd("use-pw", f"cat > {wd}/pw.txt", stdin=pw.result, logging="none")

    pulumi.export("registerStdout", register.stdout)
    pulumi.export("useIdStdout", use_id.stdout)
    pulumi.export("stdinBytes", stdin_plain.stdout)
    pulumi.export("secretStdout", stdin_secret.stdout)
    pulumi.export("envStdout", env.stdout)
    pulumi.export("proxyStdout", proxied.stdout)
    pulumi.export("password", pw.result)
    pulumi.export("randomString", rstr.result)

elif scenario == "concurrency":
    n = cfg.get_int("parallel") or 10
    for i in range(n):
        cmd(f"par-{i}", "sleep 1.5")
    a = cmd("seq-a", "sleep 1")
    cmd("seq-b", a.stdout.apply(lambda _: "sleep 1"))
    cmd("seq-c", "sleep 0.5", opts=pulumi.ResourceOptions(depends_on=[a]))
    pulumi.export("n", n)

elif scenario == "fail":
    first = cmd("ok-first", "echo fine")
    bad = cmd("will-fail", first.stdout.apply(lambda _: "echo boom-on-stderr >&2; exit 3"))
    cmd("after-fail", bad.stdout.apply(lambda s: f"echo should-never-run {s} > {wd}/after-fail.txt"))
    cmd("slow-independent", "sleep 1; echo done")
    pulumi.export("never", bad.stdout)

elif scenario == "fail-quiet":
    cmd("quiet-fail", "echo quiet-stderr-text >&2; exit 4", logging="none")

elif scenario == "raise":
    cmd("before-raise", "echo ok")
    raise RuntimeError("fixture exploded on purpose")

elif scenario == "raise-in-apply":
    def parse(stdout):
        raise ValueError(f"cannot parse {stdout!r}: expected 'database N registered'")

    src = cmd("prints-garbage", "echo garbage")
    cmd("uses-parsed", src.stdout.apply(parse))

elif scenario == "misc":
    import pulumi_aws as aws

    other = pulumi.StackReference("organization/fixture/other")
    pulumi.export("fromOther", other.get_output("greeting"))
    pulumi.export("secretFromOther", other.get_output("token"))
    ami = aws.ec2.get_ami(most_recent=True, owners=["136693071363"])
    vm = aws.ec2.Instance("vm", ami=ami.id, instance_type="t3.small")
    pulumi.export("amiId", ami.id)
    pulumi.export("vmIp", vm.private_ip)
    cmd("after-vm", vm.private_ip.apply(lambda ip: f"echo vm={ip}"))

elif scenario == "lifecycle":
    # Knobs (fixture:a, fixture:r, fixture:d, fixture:gone, fixture:pwLength) change one
    # resource each; ops.log on the "host" says what ran, in order.
    log = f"{wd}/ops.log"
    knob_a, knob_r, knob_d = cfg.get("a") or "1", cfg.get("r") or "1", cfg.get("d") or "1"
    a = cmd("a", f"echo create-a-{knob_a} >> {log}; echo a={knob_a}",
            update=f"test ! -e {wd}/fail-a || exit 9; echo update-a-{knob_a}-prev=$PULUMI_COMMAND_STDOUT >> {log}; echo a={knob_a}",
            delete=f"echo delete-a >> {log}")
    # Depends on a, inputs never change: same even when a is updated.
    cmd("b", f"echo create-b >> {log}", opts=pulumi.ResourceOptions(depends_on=[a]),
        delete=f"echo delete-b >> {log}")
    # Its script is made from a's stdout: updated when a's stdout changes.
    cmd("c", a.stdout.apply(lambda out: f"echo create-c-{out} >> {log}"))
    # Keyed on a trigger: replaced, new create first, old delete at the end.
    cmd("r", f"echo create-r-{knob_r} >> {log}", triggers=[knob_r],
        delete=f"echo delete-r-{knob_r} >> {log}")
    # The same with delete_before_replace: old delete first.
    cmd("d", f"echo create-d-{knob_d} >> {log}", triggers=[knob_d],
        delete=f"echo delete-d-{knob_d} >> {log}", opts=pulumi.ResourceOptions(delete_before_replace=True))
    # triggers under ignore_changes: a changed (or removed) trigger is no change at all.
    cmd("ig", f"echo create-ig >> {log}", triggers=[cfg.get("ig") or "1"] if cfg.get("ig") != "none" else None,
        delete=f"echo delete-ig >> {log}", opts=pulumi.ResourceOptions(ignore_changes=["triggers"]))
    if cfg.get_bool("gone") is not False:
        cmd("gone", f"echo create-gone >> {log}", delete=f"echo delete-gone >> {log}")
    pw = random.RandomPassword("lpw", length=cfg.get_int("pwLength") or 20, special=False)
    pulumi.export("pw", pw.result)
    pulumi.export("a", a.stdout)

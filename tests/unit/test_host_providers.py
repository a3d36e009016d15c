"""Host providers under mocks: both yield the same hosts; AWS opens each port only to its peers."""

import pytest

from components.core.aws_hosts import SG_RULES
from components.core.ports import DB_CLIENTS
from components.core.sshkeys import public_key_of
from harness import is_secret, run_program, script_of, unwrap

AWS = {"provider": "aws", "ssh": {"user": "admin"}, "aws": {"adminCidr": "203.0.113.0/24"},
       "hosts": [{"name": n} for n in ["db1", "db2", "db3", "mw1", "mw2", "nfs1", "web1"]],
       "database": {"galera": {"nodes": ["db1", "db2", "db3"]}, "configdb": "galera"},
       "firewall": None}  # security groups are the firewall on AWS
# Ports that carry database, cluster or file traffic: never open to the world.
INTERNAL_PORTS = {3306, 4444, 4567, 4568, 9200, 5701, 2049, 8009, 8008}


@pytest.fixture
def aws_recording(stack_config):
    return run_program(stack_config(**AWS), {"sshPrivateKey"})


def _ingress(recording):
    return [unwrap(r.inputs) | {"name": r.name}
            for r in recording.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]


def test_no_internal_port_is_open_to_the_world(aws_recording):
    rules = _ingress(aws_recording)
    assert len(rules) == len([r for r in SG_RULES if r.source != DB_CLIENTS])  # no database.clients here
    for rule in rules:
        if rule.get("cidrIpv4") == "0.0.0.0/0":
            assert rule["fromPort"] in (80, 443), rule["name"]
        if rule.get("fromPort") in INTERNAL_PORTS or rule["ipProtocol"] == "112":  # 112: VRRP, peers only
            assert "referencedSecurityGroupId" in rule and "cidrIpv4" not in rule, rule["name"]


def test_ssh_only_from_the_admin_cidr(aws_recording):
    ssh = [r for r in _ingress(aws_recording) if "fromPort" not in r or r["fromPort"] <= 22 <= r["toPort"]]
    ssh = [r for r in ssh if r["ipProtocol"] in ("tcp", "-1")]  # VRRP (112) has no ports, and is no SSH
    assert [r["cidrIpv4"] for r in ssh] == ["203.0.113.0/24"]


def test_each_port_admits_exactly_its_peers(aws_recording):
    """The rules reference the peer group's id: db 3306 from mw and db, Galera ports from db only."""
    groups = {r.name.removeprefix("hosts-sg-"): f"{r.name}-id"
              for r in aws_recording.of_type("aws:ec2/securityGroup:SecurityGroup")}
    assert set(groups) == {"db", "mw", "web", "nfs", "dc", "admin"}
    admitted = {}
    for r in _ingress(aws_recording):
        to = next(g for g, gid in groups.items() if gid == r["securityGroupId"])
        source = next((g for g, gid in groups.items() if gid == r.get("referencedSecurityGroupId")), r.get("cidrIpv4"))
        admitted.setdefault((to, r.get("fromPort", r["ipProtocol"])), set()).add(source)
    assert admitted[("db", 3306)] == {"mw", "db"}
    for port in (4444, 4567, 4568):
        assert admitted[("db", port)] == {"db"}
    assert admitted[("db", 9200)] == {"mw", "db"}  # HAProxy, and the clustercheck peers' /status
    assert admitted[("mw", 5701)] == {"mw"}
    assert admitted[("mw", 8009)] == {"web"}
    assert admitted[("nfs", 2049)] == {"mw"}
    assert admitted[("dc", 8008)] == {"web"}  # the converters: only Apache's balancer://oxcluster_docs
    # VRRP (IP protocol 112, no ports) between the peers of a floating address.
    assert admitted[("db", "112")] == {"db"} and admitted[("web", "112")] == {"web"}


def test_database_clients_reach_mariadb_and_clustercheck_by_cidr(stack_config):
    """A database stack for other stacks' middleware (database.clients): one rule per network for
    3306 and 9200 on the db group, and for nothing else."""
    config = stack_config(**AWS)
    config["database"] = {**config["database"], "clients": ["10.30.0.0/24", "10.31.0.0/24"]}
    rules = [r for r in _ingress(run_program(config, {"sshPrivateKey"})) if r.get("cidrIpv4", "").startswith("10.3")]
    assert sorted((r["name"].removeprefix("hosts-sg-"), r["fromPort"], r["cidrIpv4"]) for r in rules) == [
        ("db-tcp3306-from-dbClients-0", 3306, "10.30.0.0/24"), ("db-tcp3306-from-dbClients-1", 3306, "10.31.0.0/24"),
        ("db-tcp9200-from-dbClients-0", 9200, "10.30.0.0/24"), ("db-tcp9200-from-dbClients-1", 9200, "10.31.0.0/24")]


def test_instances_get_the_groups_of_their_roles(aws_recording):
    instances = {r.name.removeprefix("hosts-"): unwrap(r.inputs) for r in aws_recording.of_type("aws:ec2/instance:Instance")}
    assert set(instances) == {"db1", "db2", "db3", "mw1", "mw2", "nfs1", "web1"}
    assert instances["db1"]["vpcSecurityGroupIds"] == ["hosts-sg-admin-id", "hosts-sg-db-id"]
    assert instances["mw1"]["vpcSecurityGroupIds"] == ["hosts-sg-admin-id", "hosts-sg-mw-id"]
    assert instances["db1"]["ami"] == "ami-0debian12"  # looked up, not hard-coded
    assert instances["db1"]["instanceType"] == "m6i.large"
    assert instances["mw1"]["instanceType"] == "m6i.xlarge"
    assert instances["web1"]["metadataOptions"]["httpTokens"] == "required"


def test_a_converter_node_gets_its_group_and_a_compute_type(stack_config):
    """A document converter host is in the dc group (8008 from the web hosts only) and, unless the
    config says otherwise, on the converter's default type; a configured map without dc still
    finds one."""
    hosts = AWS["hosts"] + [{"name": "dc1"}]
    converters = {"nodes": [{"host": "dc1", "route": "DC1"}]}
    for types, expected in (({}, "c6i.xlarge"), ({"instanceTypes": {"db": "m6i.large"}}, "c6i.xlarge"),
                            ({"instanceTypes": {"dc": "c7i.2xlarge"}}, "c7i.2xlarge")):
        recording = run_program(stack_config(**{**AWS, "hosts": hosts, "aws": {**AWS["aws"], **types}},
                                             middleware={"nodes": [{"host": "mw1", "jkroute": "OX1"}]},
                                             frontend={"nodes": ["web1"]}, filestore=None,
                                             documentConverter=converters), {"sshPrivateKey"})
        (dc1,) = [unwrap(r.inputs) for r in recording.of_type("aws:ec2/instance:Instance") if r.name == "hosts-dc1"]
        assert dc1["vpcSecurityGroupIds"] == ["hosts-sg-admin-id", "hosts-sg-dc-id"]
        assert dc1["instanceType"] == expected


def test_debian_ami_is_looked_up(aws_recording):
    assert "aws:ec2/getAmi:getAmi" in [tok for tok, _ in aws_recording.invokes]


def test_key_pair_is_derived_from_the_ssh_key(aws_recording, ssh_key):
    (key_pair,) = aws_recording.of_type("aws:ec2/keyPair:KeyPair")
    assert key_pair.inputs["publicKey"] == public_key_of(ssh_key)
    assert key_pair.inputs["publicKey"].startswith("ssh-ed25519 ")


def test_commands_reach_aws_hosts_on_their_public_address(aws_recording):
    """Without a bastion, SSH goes to the public IP; peers still use the private one."""
    facts = aws_recording.named("mw1-facts")
    assert unwrap(facts.inputs["connection"])["host"].startswith("198.51.100.")
    assert unwrap(facts.inputs["connection"])["user"] == "admin"
    instance = aws_recording.named("hosts-mw1")
    assert instance.urn in facts.dependencies  # steps wait for their instance
    assert aws_recording.outputs["hostAddresses"]["mw1"].startswith("10.20.1.")


def test_existing_vpc_is_used_as_given(stack_config):
    aws = dict(AWS, aws={"adminCidr": "203.0.113.0/24", "vpcId": "vpc-0a1b2c3d", "subnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"]})
    recording = run_program(stack_config(**aws), {"sshPrivateKey"})
    assert recording.of_type("aws:ec2/vpc:Vpc") == []
    subnets = {unwrap(r.inputs)["subnetId"] for r in recording.of_type("aws:ec2/instance:Instance")}
    assert subnets == {"subnet-0aaa1111", "subnet-0bbb2222"}


def test_static_hosts_through_a_bastion(stack_config, ssh_key):
    recording = run_program(stack_config(ssh={"user": "root", "bastion": {"address": "192.0.2.1", "user": "jump"}}),
                            {"sshPrivateKey"})
    conn = recording.named("db1-facts").inputs["connection"]
    assert is_secret(conn)
    proxy = unwrap(conn)["proxy"]
    assert proxy["host"] == "192.0.2.1" and proxy["user"] == "jump" and proxy["privateKey"] == ssh_key
    assert unwrap(conn)["host"] == "10.0.0.11"
    assert recording.of_type("aws:ec2/instance:Instance") == []


def test_steps_of_a_non_root_ssh_user_run_through_sudo(aws_recording, stack_config):
    """Debian's cloud images log in as "admin" (root login disabled): every step and every undo
    runs as `sudo -n -H -- bash -c …`, its secrets still on stdin; as root, plain `bash -c`."""
    steps = aws_recording.of_type("command:remote:Command")
    assert steps
    for step in steps:
        for field in ("create", "delete"):
            if unwrap(step.inputs.get(field)):
                assert unwrap(step.inputs[field]).startswith("sudo -n -H -- bash -c '# ox-estate step "), step.name
                assert script_of(step, field).startswith("# ox-estate step ")
    static = run_program(stack_config(provider="static", ssh={"user": "root"}), {"sshPrivateKey"})
    assert all(unwrap(s.inputs["create"]).startswith("bash -c ") for s in static.of_type("command:remote:Command"))

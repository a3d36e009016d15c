"""Named database topologies for real (stack lab-multi): the Galera cluster `cfgdb` (configdb and
a userdb) behind the middleware node's HAProxy on ports derived from its name, and the GTID pair
`users` (a userdb); each userdb registered with its own master id, its read instance with `-M`
that id.

Subnet 10.224.0.0/24 on the bridge oxlabm0.
"""

import zlib

import pytest

from components.core import config
from estate import estate_up, requires_lab

pytestmark = requires_lab

# What config.DatabaseSpec.proxy_ports derives for the name `cfgdb`, computed here on its own.
READ = config.DERIVED_PORT_BASE + 2 * (zlib.crc32(b"cfgdb") % config.DERIVED_PORT_PAIRS)
WRITE = READ + 1


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    with estate_up("lab-multi", "10.224.0.0/24", "oxlabm0", tmp_path_factory.mktemp("lab-multi")) as estate:
        yield estate


def test_up_verifies_every_topology_and_the_registration_chain(multi):
    out = multi.first_up.stdout
    assert "verify: " in out and "FAIL" not in out, out[-3000:]
    for check in ("galera mdb1", "galera mdb3", "galera row mdb1 -> mdb3", "gtid threads mdb5",
                  "gtid row mdb4 -> mdb5", f"writes through {WRITE} land on one node", f"reads through {READ} rotate",
                  "configdb: databases as registered", "registration chain: slave -M master id"):
        assert f"ok    {check}" in out, (check, out[-3000:])
    print("\n".join(line for line in out.splitlines() if line.startswith(("ok    ", "verify:"))))


def test_the_outputs_name_both_topologies(multi):
    outputs = multi.state["outputs"]
    dbs = outputs["databases"]
    assert {n: (d["kind"], d["configdb"], d["userdb"]) for n, d in dbs.items()} == {
        "cfgdb": ("galera", True, "oxdb_cfgdb"), "users": ("gtid", False, "oxdb_users")}
    assert dbs["cfgdb"]["writeEndpoint"] == f"127.0.0.1:{WRITE}" and dbs["users"]["writeEndpoint"] == "10.224.0.14:3306"
    # The single-key outputs describe the topologies named galera and gtid: none here.
    assert not {"galeraStatus", "galeraWriteEndpoint", "gtidMasterAddress", "gtidReplication"} & set(outputs)
    ids = outputs["registeredDatabaseIds"]
    assert set(ids) == {"oxdb_cfgdb", "oxdb_cfgdb_read", "oxdb_users", "oxdb_users_read"}
    assert len(set(ids.values())) == 4


def test_each_read_instance_names_its_own_master_in_the_configdb(multi):
    """The configdb's db_cluster rows: each read pool under its own write pool (as registered)."""
    ids = {k: int(v) for k, v in multi.state["outputs"]["registeredDatabaseIds"].items()}
    rows = multi.ssh.sql("mdb1", "SELECT write_db_pool_id, read_db_pool_id FROM configdb.db_cluster ORDER BY 1")
    pairs = {tuple(int(x) for x in line.split("\t")) for line in rows.splitlines()}
    assert pairs == {(ids["oxdb_cfgdb"], ids["oxdb_cfgdb_read"]), (ids["oxdb_users"], ids["oxdb_users_read"])}


def test_haproxy_serves_cfgdb_on_its_derived_ports_only(multi):
    """Through mmw1's HAProxy: the write port reaches one cfgdb node, the read port cfgdb nodes;
    3306 and 3307 are not HAProxy's here."""
    shell = multi.ssh
    from lab.verify import _password

    password = _password(multi.state, "configdb-password")
    name = shell.sql("mmw1", "SELECT @@wsrep_cluster_name", f"127.0.0.1:{WRITE}", password)
    assert name == "cfgdb"
    readers = {shell.sql("mmw1", "SELECT @@hostname", f"127.0.0.1:{READ}", password) for _ in range(6)}
    assert len(readers) >= 2
    code, out, _ = shell.run("mmw1", "echo 'show stat' | socat - unix-connect:/run/haproxy/admin.sock | cut -d, -f1 "
                                     "| sort -u")
    assert code == 0
    assert {"mysql-read-cfgdb", "mysql-write-cfgdb"} <= set(out.split()) and "mysql-write" not in out.split()

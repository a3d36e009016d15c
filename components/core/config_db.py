"""The stack config's `database` section: the named Galera clusters and GTID pairs, the standalone
server, which of them holds the configdb and which are userdbs, the server tuning, and what another
stack may use (`clients`, `fromStacks`). Part of the one config model (config.py re-exports it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .config_fields import (
    DbName, FloatingAddress, GaleraClusterName, GcacheSize, HostRef, Int, Model, Port, ServerId, SqlMode, StackName,
    TrustedCidr, VrrpRouterId,
)


class GaleraSpec(Model):
    cluster_name: GaleraClusterName = "ox-galera"
    nodes: list[HostRef] = Field(max_length=15)
    sst_method: Literal["mariabackup", "rsync"] = "mariabackup"
    # Recovery override: when no node is in a Primary component, bootstrap this one (one of `nodes`)
    # instead of the one the recovery decision would choose, or where it refuses (differing UUIDs,
    # an interrupted SST on another node, unknown positions). Ignored while a Primary component
    # runs; never bootstraps a node without a history (zero UUID, no grastate, interrupted SST).
    # Remove it once the cluster is back: a later recovery should decide again.
    force_bootstrap_node: HostRef | None = None
    # Galera's write-set cache (gcache.size): a node that was away for less than it holds rejoins
    # by IST instead of a full SST. Read at start only: a change restarts the nodes one at a time.
    gcache_size: GcacheSize = "128M"
    # HAProxy's loopback ports for this cluster on every middleware node (both or neither). Default:
    # 3306/3307 for the cluster named `galera`, otherwise derived from the name (DatabaseSpec.proxy_ports).
    read_port: Port | None = None
    write_port: Port | None = None

    @field_validator("nodes")
    @classmethod
    def _odd_quorum(cls, v: list[str]) -> list[str]:
        # An even or tiny cluster loses quorum on a split or a single failure.
        if len(v) < 3 or len(v) % 2 == 0:
            raise ValueError(f"a Galera cluster needs an odd number of nodes, at least 3 (got {len(v)})")
        return v


class NamedGaleraSpec(GaleraSpec):
    """A Galera cluster of database.galeraClusters; its wsrep cluster name defaults to its name."""
    name: DbName

    @model_validator(mode="before")
    @classmethod
    def _cluster_name_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "clusterName" not in data and "cluster_name" not in data and "name" in data:
            return {**data, "clusterName": data["name"]}
        return data


class GtidMember(Model):
    host: HostRef
    server_id: ServerId
    # Default: 1 for the master; in master-master mode 2 for the second master (GtidSpec.domain_of).
    gtid_domain_id: Int(0, 4294967295) | None = None


class GtidSpec(Model):
    mode: Literal["master-slave", "master-master"] = "master-slave"
    master: GtidMember
    slave: GtidMember  # in master-master mode the second master
    # master-master only: the write address OX registers and connects to, held by keepalived on
    # one master at a time (components/core/floating.py), with the prefix of the masters' network.
    floating_address: FloatingAddress | None = None
    vrrp_router_id: VrrpRouterId = 51

    def domain_of(self, member: GtidMember) -> int:
        """A member's gtid_domain_id. Master-master needs one per side (one domain with strict mode
        broke both directions in 1.6 s here); a slave shares its master's."""
        master = self.master.gtid_domain_id if self.master.gtid_domain_id is not None else 1
        if member is self.master:
            return master
        if member.gtid_domain_id is not None:
            return member.gtid_domain_id
        # The second master's default: 2, or the next free one when the master took 2.
        return (2 if master != 2 else 3) if self.mode == "master-master" else master


class NamedGtidSpec(GtidSpec):
    """A GTID pair of database.gtidPairs."""
    name: DbName


class StandaloneSpec(Model):
    host: HostRef
    server_id: ServerId = 1


# What the single-topology keys are named: database.galera, database.gtid, database.standalone.
GALERA, GTID, STANDALONE = "galera", "gtid", "standalone"
# HAProxy's ports for the cluster named `galera` (oxpedia "HAproxy": reads 3306, writes 3307). Other
# clusters get a pair derived from their name alone, so adding or removing a cluster moves no
# other cluster's ports; two names that land on one pair are refused (config_checks), never moved.
GALERA_PORTS = (3306, 3307)
DERIVED_PORT_BASE, DERIVED_PORT_PAIRS = 23306, 1000


@dataclass(frozen=True)
class DbTopology:
    """One database topology of the estate, whichever key configured it."""
    name: str
    kind: Literal["galera", "gtid", "standalone"]
    path: str  # its key path, for errors: database.galera, database.galeraClusters[1], ...
    spec: GaleraSpec | GtidSpec | StandaloneSpec

    @property
    def ox_name(self) -> str:
        """The name OX registers it under (registerdatabase -n): oxdb_galera, oxdb_users_a."""
        return "oxdb_" + self.name.replace("-", "_")


class DbTuning(Model):
    # "ox": innodb_flush_log_at_trx_commit=0 as OX recommends (a crash of every node at once loses
    # about the last second); "strict": 1, every commit durable.
    durability: Literal["ox", "strict"] = "ox"
    buffer_pool_percent: Int(10, 80) = 50
    max_connections: Int(50, 100000) = 505
    sql_mode: SqlMode | None = None  # default: the matrix for the DB and App Suite versions


class DatabaseSpec(Model):
    galera: GaleraSpec | None = None  # the Galera cluster named `galera`
    gtid: GtidSpec | None = None  # the GTID pair named `gtid`
    standalone: StandaloneSpec | None = None  # named `standalone`
    galera_clusters: list[NamedGaleraSpec] = Field(default_factory=list, max_length=32)
    gtid_pairs: list[NamedGtidSpec] = Field(default_factory=list, max_length=32)
    configdb: DbName  # the name of the topology that holds the configdb
    userdbs: list[DbName] = Field(default_factory=list, max_length=64)  # empty: the configdb's topology also holds userdbs
    tuning: DbTuning = DbTuning()
    # A database stack used by other stacks' middleware: the networks their OX nodes are in. The
    # `openexchange` grants and the firewall's 3306 and clustercheck admit exactly these (and this
    # stack's own middleware nodes, if any); the consumer refuses a node outside them.
    clients: list[TrustedCidr] = Field(default_factory=list, max_length=64)
    # The database stacks whose userdbs this stack's middleware registers (StackReference).
    from_stacks: list[StackName] = Field(default_factory=list, max_length=32)

    def topologies(self) -> list[DbTopology]:
        """Every database topology, the single-key ones under their fixed names, in config order."""
        found = [DbTopology(GALERA, "galera", "database.galera", self.galera)] if self.galera else []
        found += [DbTopology(g.name, "galera", f"database.galeraClusters[{i}]", g)
                  for i, g in enumerate(self.galera_clusters)]
        found += [DbTopology(GTID, "gtid", "database.gtid", self.gtid)] if self.gtid else []
        found += [DbTopology(p.name, "gtid", f"database.gtidPairs[{i}]", p) for i, p in enumerate(self.gtid_pairs)]
        found += [DbTopology(STANDALONE, "standalone", "database.standalone", self.standalone)] if self.standalone else []
        return found

    def of_kind(self, kind: str) -> list[DbTopology]:
        return [t for t in self.topologies() if t.kind == kind]

    def named(self, name: str) -> DbTopology | None:
        return next((t for t in self.topologies() if t.name == name), None)

    @property
    def used(self) -> list[str]:
        """The topologies OX uses: the configdb's, then the userdbs (the configdb's when none is named)."""
        return list(dict.fromkeys([self.configdb, *(self.userdbs or [self.configdb])]))

    @staticmethod
    def proxy_ports(topology: DbTopology) -> tuple[int, int]:
        """A Galera cluster's HAProxy (read, write) ports: configured, 3306/3307 for `galera`, or
        derived from its name alone (crc32: the same on every run and machine)."""
        spec = topology.spec
        if spec.read_port is not None and spec.write_port is not None:
            return spec.read_port, spec.write_port
        if topology.name == GALERA:
            return GALERA_PORTS
        read = DERIVED_PORT_BASE + 2 * (zlib.crc32(topology.name.encode()) % DERIVED_PORT_PAIRS)
        return read, read + 1

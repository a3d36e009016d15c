"""Estate: wires one stack's components together.

Today: the stack's secrets, the hosts from the configured provider, and each host's baseline.
The database, middleware, filestore and frontend tiers attach here as they land, each taking
the hosts and the outputs of the tiers it depends on.
"""

from __future__ import annotations

import pulumi

from .baseline import HostBaseline
from .config import EstateConfig
from .dbproxy import ReadWriteSplit
from .galera import GaleraCluster
from .gtid import GtidPair
from .hosts import provision_hosts
from .secrets import stack_secrets
from .standalone import StandaloneDb


class Estate(pulumi.ComponentResource):
    host_addresses: dict[str, pulumi.Input[str]]
    host_facts: pulumi.Output[dict]

    def __init__(self, name: str, cfg: EstateConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:index:Estate", name, None, opts)

        self.secrets = stack_secrets(cfg, parent=self)
        hosts = provision_hosts(cfg, self.secrets.ssh_private_key, parent=self)
        baseline = HostBaseline(f"{name}-baseline", cfg, hosts, pulumi.ResourceOptions(parent=self))
        self.hosts = baseline.hosts

        db = cfg.database
        ox_clients = [self.hosts[n.host].address for n in cfg.middleware.nodes] if cfg.middleware else []
        self.galera = None
        if db and db.galera:
            self.galera = GaleraCluster(f"{name}-galera", cfg, [self.hosts[n] for n in db.galera.nodes],
                                        baseline.facts, self.secrets, ox_clients, pulumi.ResourceOptions(parent=self))

        self.db_proxy = None
        if self.galera and cfg.middleware:
            self.db_proxy = ReadWriteSplit(
                f"{name}-dbproxy", self.galera, [self.hosts[n] for n in db.galera.nodes],
                [self.hosts[n.host] for n in cfg.middleware.nodes], pulumi.ResourceOptions(parent=self))

        self.gtid = None
        if db and db.gtid:
            self.gtid = GtidPair(f"{name}-gtid", cfg, self.hosts[db.gtid.master.host], self.hosts[db.gtid.slave.host],
                                 baseline.facts, self.secrets, ox_clients, pulumi.ResourceOptions(parent=self))

        self.standalone = None
        if db and db.standalone:
            self.standalone = StandaloneDb(f"{name}-standalone", cfg, self.hosts[db.standalone.host], baseline.facts,
                                           self.secrets, ox_clients, pulumi.ResourceOptions(parent=self))

        self.host_addresses = {n: h.address for n, h in self.hosts.items()}
        self.host_facts = baseline.facts
        self.register_outputs({"hostAddresses": self.host_addresses, "hostFacts": self.host_facts})

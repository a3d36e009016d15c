"""Estate: wires one stack's components together.

hosts -> firewall (static hosts) -> baseline -> databases (Galera, GTID pair, standalone) ->
read/write split (HAProxy on the middleware nodes, with the converter listener where there are
document converters) -> middleware -> filestore mounts -> registration -> frontends, which also
wait for the document converter nodes (configured in parallel with the rest). A floating address (keepalived) follows the tier it fronts: the GTID
pair's before anything uses the pair, the frontends' after them. Each tier takes the hosts and the outputs of the tiers it depends on,
and waits only for what it needs.
"""

from __future__ import annotations

import pulumi

from .baseline import HostBaseline
from .config import EstateConfig, ProviderKind
from .dbproxy import ConverterProxy, ReadWriteSplit
from .docconverter import ConverterNode, DocumentConverterArgs, DocumentConverterNodes
from .filestore import NfsFilestore
from .firewall import HostFirewall, HostFirewallArgs
from .floating import FloatingAddress, FloatingAddressArgs
from .frontend import ApacheFrontend, Backend, Converters
from .galera import GaleraCluster
from .gtid import GtidPair
from .hosts import provision_hosts
from .middleware import ConfigdbEndpoints, OXMiddlewareGroup
from .mwrestart import MiddlewareRestarts
from .registration import OXRegistration, UserDb
from .secrets import stack_secrets
from .standalone import StandaloneDb


class Estate(pulumi.ComponentResource):
    host_addresses: dict[str, pulumi.Input[str]]
    host_facts: pulumi.Output[dict]

    def __init__(self, name: str, cfg: EstateConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:index:Estate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.secrets = stack_secrets(cfg, parent=self)
        hosts = provision_hosts(cfg, self.secrets.ssh_private_key, parent=self)
        if cfg.provider == ProviderKind.STATIC and cfg.firewall.enabled:  # AWS: security groups
            hosts = HostFirewall(f"{name}-firewall", self._firewall_args(cfg, hosts), child).hosts
        baseline = HostBaseline(f"{name}-baseline", cfg, hosts, child)
        self.hosts = baseline.hosts

        db = cfg.database
        mw_hosts = [self.hosts[n.host] for n in cfg.middleware.nodes] if cfg.middleware else []
        ox_clients = [h.address for h in mw_hosts]
        self.galera = self.db_proxy = self.gtid = self.standalone = self.gtid_vip = self.web_vip = None
        self.converters = self.converter_proxy = None
        # OX's converter client reaches the converters through its node's HAProxy, round robin over
        # the frontends (components/middleware.py CONVERTER_URL): one HAProxy config per node.
        converter_frontends = self._web_hosts(cfg) if cfg.document_converter else []
        if db and db.galera:
            galera_hosts = [self.hosts[n] for n in db.galera.nodes]
            self.galera = GaleraCluster(f"{name}-galera", cfg, galera_hosts, baseline.host_facts, self.secrets,
                                        ox_clients, child)
            if mw_hosts:
                self.db_proxy = ReadWriteSplit(f"{name}-dbproxy", self.galera, galera_hosts, mw_hosts, child,
                                               converter_frontends=converter_frontends)
        elif converter_frontends and mw_hosts:
            self.converter_proxy = ConverterProxy(f"{name}-dcproxy", mw_hosts, converter_frontends, child)
        if cfg.document_converter:
            self.converters = DocumentConverterNodes(f"{name}-dc", self._converter_args(cfg), child)
        if db and db.gtid:
            self.gtid = GtidPair(f"{name}-gtid", cfg, self.hosts[db.gtid.master.host], self.hosts[db.gtid.slave.host],
                                 baseline.host_facts, self.secrets, ox_clients, child)
            if db.gtid.floating_address:  # OX registers and writes to this address, not a master's
                self.gtid_vip = FloatingAddress(f"{name}-gtid-vip", FloatingAddressArgs(
                    db.gtid.floating_address, db.gtid.vrrp_router_id,
                    [self.hosts[db.gtid.master.host], self.hosts[db.gtid.slave.host]], "gtid", self.gtid.ready), child)
        if db and db.standalone:
            self.standalone = StandaloneDb(f"{name}-standalone", cfg, self.hosts[db.standalone.host], baseline.host_facts,
                                           self.secrets, ox_clients, child)

        self.middleware = self.filestore = self.registration = self.frontend = None
        self.mw_restarts = None
        if cfg.middleware:
            databases_ready = [r for tier in (self.galera, self.db_proxy, self.gtid, self.gtid_vip, self.standalone)
                               if tier for r in tier.ready]
            self.middleware = OXMiddlewareGroup(f"{name}-mw", cfg, self.hosts, self._configdb(db.configdb, db.userdbs),
                                                self.secrets, databases_ready, child)
            filestore_ready: list[pulumi.Resource] = []
            if cfg.filestore and cfg.filestore.server:
                self.filestore = NfsFilestore(f"{name}-fs", cfg, self.hosts[cfg.filestore.server], mw_hosts,
                                              self.middleware.users, child)
                filestore_ready = self.filestore.ready
            if cfg.frontend:
                self.frontend = self._frontend(name, cfg, child)
            # A setting OX reads at start reaches one node at a time, drained at every Apache.
            self.mw_restarts = MiddlewareRestarts(f"{name}-mwroll", self.middleware, self.frontend, child)
            if cfg.filestore:  # registration needs a filestore to register
                # It talks to the admin host's admin daemon: not while the rolling restart restarts it.
                admin_restarted = self.mw_restarts.restarted[self.middleware.admin_host.name]
                self.registration = OXRegistration(
                    f"{name}-registration", cfg, self.middleware.admin_host,
                    [self._userdb(t) for t in (db.userdbs or [db.configdb])], cfg.filestore.uri,
                    # Only the admin node: its restart step waited for its own configure (and so for
                    # the databases); the other middleware nodes take no part in registering.
                    self.secrets, [*filestore_ready, admin_restarted], child)
            if cfg.frontend and cfg.frontend.floating_address:
                self.web_vip = FloatingAddress(f"{name}-web-vip", FloatingAddressArgs(
                    cfg.frontend.floating_address, cfg.frontend.vrrp_router_id, self._web_hosts(cfg), "apache",
                    self.frontend.ready), child)

        self.host_addresses = {n: h.address for n, h in self.hosts.items()}
        self.host_facts = baseline.facts
        self.stack_outputs = self._stack_outputs()
        self.register_outputs(self.stack_outputs)

    def _stack_outputs(self) -> dict[str, pulumi.Input]:
        """The stack's outputs. Other stacks read them by these names: keep them stable."""
        out: dict[str, pulumi.Input] = {"hostAddresses": self.host_addresses, "hostFacts": self.host_facts}
        if self.galera:
            out.update(galeraNodeAddresses=self.galera.node_addresses, galeraWriteEndpoint=self.galera.write_endpoint,
                       galeraReadEndpoint=self.galera.read_endpoint, galeraStatus=self.galera.status)
        if self.db_proxy:
            out.update(galeraProxies=self.db_proxy.proxies)
        if self.gtid:
            out.update(gtidMasterAddress=self.gtid.master_address, gtidSlaveAddress=self.gtid.slave_address,
                       gtidReplication=self.gtid.replication)
        if self.gtid_vip:
            out.update(gtidFloatingAddress=self.gtid_vip.address, gtidFloatingHolders=self.gtid_vip.holders)
        if self.middleware:
            out.update(configdbWriteHost=self.middleware.configdb_write_host,
                       middlewareBackends=self.middleware.backend_routes, middlewareDrained=self.middleware.drained)
        if self.filestore:
            out.update(filestoreServer=self.filestore.server_address, filestoreExport=self.filestore.export_path,
                       filestoreOwner=self.filestore.owner)
        if self.frontend:
            out.update(frontendUrls=self.frontend.urls,
                       frontendAdminNetworks=self.frontend.admin_networks)
        if self.converters:
            out.update(documentConverterRoutes=self.converters.routes,
                       documentConverterStatus=self.converters.status)
        if self.web_vip:
            out.update(frontendFloatingUrl=f"http://{self.web_vip.address}/appsuite/",
                       frontendFloatingHolders=self.web_vip.holders)
        if self.registration:
            out.update(serverId=self.registration.server_id, filestoreId=self.registration.filestore_id,
                       registeredDatabaseIds=self.registration.database_ids)
            if self.registration.context_id is not None:
                out.update(contextId=self.registration.context_id)
        return out

    @staticmethod
    def _firewall_args(cfg: EstateConfig, hosts: dict) -> HostFirewallArgs:
        bastion = cfg.ssh.bastion
        return HostFirewallArgs(
            hosts=hosts, ssh_port=cfg.ssh.port, ssh_from=[str(n) for n in cfg.firewall.ssh_from],
            bastion=bastion.address if bastion else None,
            admin_networks=[str(n) for n in cfg.frontend.admin_networks] if cfg.frontend else [])

    def _frontend(self, name: str, cfg: EstateConfig, child: pulumi.ResourceOptions) -> ApacheFrontend:
        """Apache in front of the middleware's backend nodes: on its own hosts, or on those nodes;
        and in front of the document converters, for the middleware nodes only."""
        backends = [Backend(h, address, route) for h, address, route in self.middleware.backends]
        converters, ready = None, self.middleware.ready
        if self.converters:
            converters = Converters(self.converters.members, [self.hosts[n.host].address for n in cfg.middleware.nodes])
            ready = [*ready, *self.converters.ready]
        return ApacheFrontend(f"{name}-web", cfg, self._web_hosts(cfg), backends, ready, child, converters=converters)

    def _web_hosts(self, cfg: EstateConfig) -> list:
        """The frontend hosts: their own, or in colocated mode the middleware's backend nodes."""
        if cfg.frontend.mode == "colocated":
            return [self.hosts[n.host] for n in cfg.middleware.nodes if n.role == "backend"]
        return [self.hosts[n] for n in cfg.frontend.nodes]

    def _converter_args(self, cfg: EstateConfig) -> DocumentConverterArgs:
        """The converter nodes, installed from the middleware's package source."""
        dc, mw = cfg.document_converter, cfg.middleware
        repository = mw.package_source == "repository"
        return DocumentConverterArgs(
            nodes=[ConverterNode(self.hosts[n.host], n.route) for n in dc.nodes],
            job_processor_count=dc.job_processor_count, package_source=mw.package_source,
            repository_url=mw.repository_url or "", repository_user=mw.repository_user or "",
            repository_password=self.secrets.ox_repository_password if repository else None)

    def _configdb(self, topology: str, userdbs: list[str]) -> ConfigdbEndpoints:
        """Where OX nodes find the configdb, by the topology that holds it. OX has one
        replicationMonitor switch (configdb.properties) for the configdb and every userdb: it is on
        when any of them is read from a replica that lags (a GTID slave), e.g. a GTID userdb behind
        a Galera configdb."""
        monitor = any(getattr(self, t).replication_monitor for t in {topology, *userdbs})
        if topology == "galera":  # through the HAProxy on each middleware node
            return ConfigdbEndpoints("127.0.0.1", 3306, "127.0.0.1", 3307, monitor)
        if topology == "gtid":
            return ConfigdbEndpoints(self.gtid.slave_address, 3306, self._gtid_write_host, 3306, monitor)
        return ConfigdbEndpoints(self.standalone.address, 3306, self.standalone.address, 3306, monitor)

    @property
    def _gtid_write_host(self) -> pulumi.Input[str]:
        """Where OX writes to the GTID pair: the floating address where one is configured."""
        return self.gtid_vip.address if self.gtid_vip else self.gtid.master_address

    def _userdb(self, topology: str) -> UserDb:
        """A userdb as OX registers it: the write instance, and the read instance if there is one."""
        if topology == "galera":
            return UserDb("oxdb_galera", "127.0.0.1:3307", "127.0.0.1:3306")
        if topology == "gtid":
            return UserDb("oxdb_gtid", self._gtid_write_host, self.gtid.slave_address)
        return UserDb("oxdb_standalone", self.standalone.address, None)

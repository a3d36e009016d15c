"""Estate: wires one stack's components together.

hosts -> firewall (static hosts) -> baseline -> databases (each named Galera cluster and GTID pair,
the standalone server; each from its own typed args) -> read/write split (one HAProxy per
middleware node, a read/write port pair per Galera cluster, with the converter listener where there are
document converters) -> middleware -> filestore mounts -> registration -> frontends, which also
wait for the document converter nodes (configured in parallel with the rest). A floating address (keepalived) follows the tier it fronts: the GTID
pair's before anything uses the pair, the frontends' after them. Each tier takes the hosts and the outputs of the tiers it depends on,
and waits only for what it needs.
"""

from __future__ import annotations

from dataclasses import replace

import pulumi

from .core.baseline import HostBaseline
from .core.config import GALERA, GTID, DbTopology, EstateConfig, FilestoreSpec, ProviderKind
from .core.firewall import HostFirewall, HostFirewallArgs
from .core.floating import FloatingAddress, FloatingAddressArgs
from .core.hosts import provision_hosts, remote_node
from .core.secrets import stack_secrets
from .core.stackref import RemoteDatabase, remote_databases
from .db import mycnf
from .db.dbproxy import ConverterProxy, ProxiedCluster, ReadWriteSplit, ReadWriteSplitArgs
from .db.grants import OX_DB_USER, client_hosts
from .db.galera import GaleraCluster, GaleraClusterArgs
from .db.gtid import GtidPair, GtidPairArgs, GtidServer
from .db.mariadb import DbPasswords
from .db.standalone import StandaloneDb, StandaloneDbArgs
from .fs.filestore import NfsFilestore, NfsFilestoreArgs
from .mw.docconverter import ConverterNode, DocumentConverterArgs, DocumentConverterNodes
from .mw.middleware import ConfigdbEndpoints, OXMiddlewareGroup, OXMiddlewareGroupArgs, OXNode
from .mw.mwrestart import MiddlewareRestarts
from .mw.registration import OXRegistration, OXRegistrationArgs, UserDb
from .web.frontend import ApacheFrontend, ApacheFrontendArgs, Backend, Converters


class Estate(pulumi.ComponentResource):
    host_addresses: dict[str, pulumi.Input[str]]
    host_facts: pulumi.Output[dict]

    def __init__(self, name: str, cfg: EstateConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:index:Estate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Other stacks' userdbs (database.fromStacks): read and checked before anything is created.
        self.remote_dbs: list[RemoteDatabase] = \
            remote_databases(cfg, parent=self) if cfg.database and cfg.database.from_stacks else []
        self.secrets = stack_secrets(cfg, parent=self)
        hosts = provision_hosts(cfg, self.secrets.ssh_private_key, parent=self)
        if cfg.provider == ProviderKind.STATIC and cfg.firewall.enabled:  # AWS: security groups
            hosts = HostFirewall(f"{name}-firewall", self._firewall_args(cfg, hosts), child).hosts
        baseline = HostBaseline(f"{name}-baseline", cfg, hosts, child)
        self.hosts = baseline.hosts

        db = cfg.database
        mw_hosts = [self.hosts[n.host] for n in cfg.middleware.nodes] if cfg.middleware else []
        self.db_proxy = self.standalone = self.web_vip = None
        self.galeras: dict[str, GaleraCluster] = {}
        self.gtids: dict[str, GtidPair] = {}
        self.gtid_vips: dict[str, FloatingAddress] = {}
        self.databases: dict[str, dict] = {}  # the `databases` stack output
        # database.clients: other stacks' middleware networks (grants, and the outputs they read)
        self.database_clients = [str(n) for n in db.clients] if db else []
        self.converters = self.converter_proxy = None
        if db:
            self._databases(name, cfg, baseline.host_facts, [h.address for h in mw_hosts], child)
        # The single-cluster keys' topologies, for the stack outputs that predate named ones.
        self.galera, self.gtid, self.gtid_vip = self.galeras.get(GALERA), self.gtids.get(GTID), self.gtid_vips.get(GTID)
        # OX's converter client reaches the converters through its node's HAProxy, round robin over
        # the frontends (components/mw/middleware.py CONVERTER_URL): one HAProxy config per node.
        converter_frontends = self._web_hosts(cfg) if cfg.document_converter else []
        clusters = [ProxiedCluster(t.name, [self.hosts[n] for n in t.spec.nodes], *db.proxy_ports(t),
                                   verified=self.galeras[t.name].verified) for t in db.of_kind("galera")] if db else []
        clusters += [ProxiedCluster(r.name, [remote_node(*n) for n in zip(r.node_names, r.node_addresses)],
                                    r.read_port, r.write_port, remote=True)
                     for r in self.remote_dbs if r.kind == "galera"]
        # Without middleware of its own, a database stack for other stacks still runs clustercheck.
        if clusters and (mw_hosts or db.clients):
            self.db_proxy = ReadWriteSplit(f"{name}-dbproxy", ReadWriteSplitArgs(clusters, mw_hosts, converter_frontends),
                                           child)
        elif converter_frontends and mw_hosts:
            self.converter_proxy = ConverterProxy(f"{name}-dcproxy", mw_hosts, converter_frontends, child)
        if cfg.document_converter:
            self.converters = DocumentConverterNodes(f"{name}-dc", self._converter_args(cfg), child)

        self.middleware = self.filestore = self.registration = self.frontend = None
        self.mw_restarts = None
        if cfg.middleware:
            tiers = [*self.galeras.values(), self.db_proxy, *self.gtids.values(), *self.gtid_vips.values(),
                     self.standalone]
            databases_ready = [r for tier in tiers if tier for r in tier.ready]
            self.middleware = OXMiddlewareGroup(f"{name}-mw", self._middleware_args(
                cfg, self._configdb(db), databases_ready), child)
            filestore_ready: list[pulumi.Resource] = []
            if cfg.filestore and cfg.filestore.server:
                self.filestore = NfsFilestore(f"{name}-fs", self._filestore_args(cfg, mw_hosts), child)
                filestore_ready = self.filestore.ready
            if cfg.frontend:
                self.frontend = self._frontend(name, cfg, child)
            # A setting OX reads at start reaches one node at a time, drained at every Apache.
            self.mw_restarts = MiddlewareRestarts(f"{name}-mwroll", self.middleware, self.frontend, child)
            if cfg.filestore:  # registration needs a filestore to register
                # It talks to the admin host's admin daemon: not while the rolling restart restarts it.
                admin_restarted = self.mw_restarts.restarted[self.middleware.admin_host.name]
                self.registration = OXRegistration(f"{name}-registration", OXRegistrationArgs(
                    admin_host=self.middleware.admin_host,
                    userdbs=[*(self._userdb(db.named(t)) for t in (db.userdbs or [db.configdb])),
                             *(UserDb(r.userdb, r.write_host, r.read_host, r.password) for r in self.remote_dbs)],
                    filestore_uri=cfg.filestore.uri, secrets=self.secrets,
                    # Only the admin node: its restart step waited for its own configure (and so for
                    # the databases); the other middleware nodes take no part in registering.
                    depends_on=[*filestore_ready, admin_restarted],
                    server_name=cfg.middleware.server_name, filestore_size_mb=cfg.filestore.size_mb,
                    filestore_max_contexts=cfg.filestore.max_contexts,
                    first_context=cfg.middleware.first_context), child)
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
        if self.databases:
            out.update(databases=self.databases)
        if self.database_clients:  # what other stacks read (components/core/stackref.py)
            out.update(databaseClients=self.database_clients, databaseCredentials=pulumi.Output.secret(
                {"user": OX_DB_USER, "password": self.secrets.configdb_password}))
        if self.remote_dbs:
            out.update(remoteDatabases={r.key: r.output() for r in self.remote_dbs})
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
            admin_networks=[str(n) for n in cfg.frontend.admin_networks] if cfg.frontend else [],
            db_clients=[str(n) for n in cfg.database.clients] if cfg.database else [])

    def _middleware_args(self, cfg: EstateConfig, configdb: ConfigdbEndpoints,
                         databases_ready: list[pulumi.Resource]) -> OXMiddlewareGroupArgs:
        mw = cfg.middleware
        fs = cfg.filestore or FilestoreSpec(server=mw.nodes[0].host)  # the ids, when there is no filestore
        return OXMiddlewareGroupArgs(
            nodes=[OXNode(self.hosts[n.host], n.jkroute, n.role, n.drained) for n in mw.nodes],
            configdb=configdb, secrets=self.secrets, depends_on=databases_ready, cluster_name=mw.cluster_name,
            server_name=mw.server_name, servermemory_mb=mw.servermemory_mb, appsuite_version=cfg.versions.appsuite,
            package_source=mw.package_source, repository_url=mw.repository_url or "",
            repository_user=mw.repository_user or "", uid=fs.uid, gid=fs.gid,
            document_converters=cfg.document_converter is not None)

    def _filestore_args(self, cfg: EstateConfig, mw_hosts: list) -> NfsFilestoreArgs:
        fs = cfg.filestore
        return NfsFilestoreArgs(
            server=self.hosts[fs.server], clients=mw_hosts, client_ready=self.middleware.users,
            export_path=fs.export_path, mount_path=fs.mount_path, uid=fs.uid, gid=fs.gid,
            implementation=fs.implementation, client_mount=fs.client_mount)

    def _frontend(self, name: str, cfg: EstateConfig, child: pulumi.ResourceOptions) -> ApacheFrontend:
        """Apache in front of the middleware's backend nodes: on its own hosts, or on those nodes;
        and in front of the document converters, for the middleware nodes only."""
        backends = [Backend(h, address, route) for h, address, route in self.middleware.backends]
        converters, ready = None, self.middleware.ready
        if self.converters:
            converters = Converters(self.converters.members, [self.hosts[n.host].address for n in cfg.middleware.nodes])
            ready = [*ready, *self.converters.ready]
        return ApacheFrontend(f"{name}-web", frontend_args(cfg, self._web_hosts(cfg), backends, ready, converters),
                              child)

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

    def _databases(self, name: str, cfg: EstateConfig, facts: dict, ox_clients: list, child: pulumi.ResourceOptions):
        """Each database topology as its own component `<estate>-<topology name>` (the single keys'
        keep `ox-galera`, `ox-gtid`, `ox-standalone`), with its typed args from the stack config."""
        db, server, s = cfg.database, mycnf.server_settings(cfg), self.secrets
        passwords = DbPasswords(s.mysql_root_password, s.sst_password, s.replication_password, s.configdb_password)
        # The `openexchange` grants: this stack's middleware, and other stacks' (database.clients).
        common = {"facts": facts, "passwords": passwords, "server": server,
                  "ox_clients": [*ox_clients, *client_hosts(self.database_clients)]}
        for t in db.topologies():
            spec = t.spec
            if t.kind == "galera":
                read, write = db.proxy_ports(t)
                self.galeras[t.name] = GaleraCluster(f"{name}-{t.name}", GaleraClusterArgs(
                    hosts=[self.hosts[n] for n in spec.nodes], **common, cluster_name=spec.cluster_name,
                    sst_method=spec.sst_method, gcache_size=spec.gcache_size,
                    force_bootstrap_node=spec.force_bootstrap_node, read_port=read, write_port=write), child)
            elif t.kind == "gtid":
                master, slave = (GtidServer(self.hosts[m.host], m.server_id, spec.domain_of(m))
                                 for m in (spec.master, spec.slave))
                pair = self.gtids[t.name] = GtidPair(f"{name}-{t.name}", GtidPairArgs(
                    master=master, slave=slave, **common, mode=spec.mode), child)
                if spec.floating_address:  # OX registers and writes to this address, not a master's
                    self.gtid_vips[t.name] = FloatingAddress(f"{name}-{t.name}-vip", FloatingAddressArgs(
                        spec.floating_address, spec.vrrp_router_id, [master.host, slave.host], "gtid", pair.ready),
                        child)
            else:
                self.standalone = StandaloneDb(f"{name}-{t.name}", StandaloneDbArgs(
                    host=self.hosts[spec.host], **common, server_id=spec.server_id), child)
        self.databases = {t.name: self._database_output(db, t) for t in db.topologies()}

    def _database_output(self, db, t: DbTopology) -> dict[str, pulumi.Input]:
        """One entry of the `databases` stack output: the same keys for every kind, plus the kind's own."""
        userdbs = db.userdbs or [db.configdb]
        out: dict[str, pulumi.Input] = {"kind": t.kind, "configdb": db.configdb == t.name,
                                        "userdb": t.ox_name if t.name in userdbs else None}
        if t.kind == "galera":
            cluster = self.galeras[t.name]
            read, write = db.proxy_ports(t)
            # Another stack's HAProxy listens on these ports too, and names the nodes the same way (stackref.py).
            return {**out, "writeEndpoint": cluster.write_endpoint, "readEndpoint": cluster.read_endpoint,
                    "nodeAddresses": cluster.node_addresses, "clusterName": cluster.cluster_name,
                    "readPort": read, "writePort": write, "nodeNames": list(t.spec.nodes)}
        if t.kind == "gtid":
            pair = self.gtids[t.name]
            vip = self.gtid_vips.get(t.name)
            return {**out, "writeEndpoint": pulumi.Output.concat(self._gtid_write_host(t.name), ":3306"),
                    "readEndpoint": pulumi.Output.concat(pair.slave_address, ":3306"),
                    "nodeAddresses": [pair.master_address, pair.slave_address], "mode": t.spec.mode,
                    "floatingAddress": vip.address if vip else None}
        address = self.standalone.address
        return {**out, "writeEndpoint": pulumi.Output.concat(address, ":3306"), "readEndpoint": None,
                "nodeAddresses": [address]}

    def _configdb(self, db) -> ConfigdbEndpoints:
        """Where OX nodes find the configdb, by the topology that holds it. OX has one
        replicationMonitor switch (configdb.properties) for the configdb and every userdb: it is on
        when any of them is read from a replica that lags (a GTID slave), e.g. a GTID userdb behind
        a Galera configdb."""
        monitor = any(self._component(db.named(t)).replication_monitor for t in db.used) \
            or any(r.kind == "gtid" for r in self.remote_dbs)
        t = db.named(db.configdb)
        if t.kind == "galera":  # through the HAProxy on each middleware node
            read, write = db.proxy_ports(t)
            return ConfigdbEndpoints("127.0.0.1", read, "127.0.0.1", write, monitor)
        if t.kind == "gtid":
            return ConfigdbEndpoints(self.gtids[t.name].slave_address, 3306, self._gtid_write_host(t.name), 3306,
                                     monitor)
        return ConfigdbEndpoints(self.standalone.address, 3306, self.standalone.address, 3306, monitor)

    def _component(self, t: DbTopology) -> pulumi.ComponentResource:
        return {"galera": self.galeras, "gtid": self.gtids}[t.kind][t.name] if t.kind != "standalone" \
            else self.standalone

    def _gtid_write_host(self, pair: str) -> pulumi.Input[str]:
        """Where OX writes to a GTID pair: its floating address where one is configured."""
        vip = self.gtid_vips.get(pair)
        return vip.address if vip else self.gtids[pair].master_address

    def _userdb(self, t: DbTopology) -> UserDb:
        """A userdb as OX registers it: the write instance, and the read instance if there is one."""
        if t.kind == "galera":
            write, read = self.galeras[t.name].write_endpoint, self.galeras[t.name].read_endpoint
            return UserDb(t.ox_name, write, read)
        if t.kind == "gtid":
            return UserDb(t.ox_name, self._gtid_write_host(t.name), self.gtids[t.name].slave_address)
        return UserDb(t.ox_name, self.standalone.address, None)


def frontend_args(cfg: EstateConfig, web_hosts: list, backends: list[Backend], depends_on: list[pulumi.Resource],
                  converters: Converters | None = None) -> ApacheFrontendArgs:
    """The frontend section, and each backend drained as middleware.nodes[].drained says."""
    fe = cfg.frontend
    drained = {n.host for n in cfg.middleware.nodes if n.drained} if cfg.middleware else set()
    return ApacheFrontendArgs(
        web_hosts=web_hosts, backends=[replace(b, drained=b.name in drained) for b in backends],
        depends_on=depends_on, colocated=fe.mode == "colocated", admin_networks=[str(n) for n in fe.admin_networks],
        max_connections=fe.max_connections, converters=converters)

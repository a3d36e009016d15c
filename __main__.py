"""ox-estate: an Open-Xchange App Suite estate as one Pulumi program.

Thin on purpose: read and validate the stack config (nothing is created if it is wrong),
build the estate, export the outputs other stacks reference.
"""

import pulumi

from components import config
from components.estate import Estate

cfg = config.load()
estate = Estate("ox", cfg)

pulumi.export("hostAddresses", estate.host_addresses)
pulumi.export("hostFacts", estate.host_facts)

if estate.galera:
    pulumi.export("galeraNodeAddresses", estate.galera.node_addresses)
    pulumi.export("galeraWriteEndpoint", estate.galera.write_endpoint)
    pulumi.export("galeraReadEndpoint", estate.galera.read_endpoint)
    pulumi.export("galeraStatus", estate.galera.status)
if estate.gtid:
    pulumi.export("gtidMasterAddress", estate.gtid.master_address)
    pulumi.export("gtidSlaveAddress", estate.gtid.slave_address)
    pulumi.export("gtidReplication", estate.gtid.replication)
if estate.db_proxy:
    pulumi.export("galeraProxies", estate.db_proxy.proxies)
if estate.middleware:
    pulumi.export("configdbWriteHost", estate.middleware.configdb_write_host)
    pulumi.export("middlewareBackends", estate.middleware.backend_routes)
if estate.registration:
    pulumi.export("serverId", estate.registration.server_id)
    pulumi.export("filestoreId", estate.registration.filestore_id)
    pulumi.export("registeredDatabaseIds", estate.registration.database_ids)
    if estate.registration.context_id is not None:
        pulumi.export("contextId", estate.registration.context_id)
if estate.filestore:
    pulumi.export("filestoreServer", estate.filestore.server_address)
    pulumi.export("filestoreExport", estate.filestore.export_path)
    pulumi.export("filestoreOwner", estate.filestore.owner)

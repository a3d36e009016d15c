"""Other stacks' databases, read through StackReference (`database.fromStacks`).

A database stack that serves other stacks sets `database.clients` (their middleware networks) and
exports `databases`, `databaseClients` and `databaseCredentials` (a secret: the `openexchange`
account). A middleware stack lists such stacks in `database.fromStacks`; `remote_databases`
reads each once, while the program is evaluated, and checks what it read before anything is
created: the stack exports databases for other stacks, each userdb's OX name and each Galera
cluster's HAProxy ports are free here, and every middleware node's address is one the database
stack admits. The password stays a secret: it reaches the registration over stdin only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
from pulumi.runtime.sync_await import _sync_await

from .config import ConfigError, EstateConfig, ProviderKind
from .config_checks import MW_LOCAL_PORTS

# The outputs a database stack exports for other stacks (components/estate.py _stack_outputs).
DATABASES, CLIENTS, CREDENTIALS = "databases", "databaseClients", "databaseCredentials"


@dataclass(frozen=True)
class RemoteDatabase:
    """One userdb of another stack, as this stack's OX registers and reaches it."""
    stack: str  # as database.fromStacks names it
    name: str  # the topology's name in its stack
    kind: str  # galera, gtid or standalone
    userdb: str  # OX's name for it (oxdb_<name>)
    write_host: str  # registerdatabase -H of the write instance
    read_host: str | None  # ... of the read instance, if there is one
    node_names: list[str]
    node_addresses: list[str]
    read_port: int | None  # a Galera cluster's HAProxy listeners on this stack's middleware nodes
    write_port: int | None
    cluster_name: str | None  # a Galera cluster's wsrep name
    password: pulumi.Output[str]  # the `openexchange` account's, secret

    @property
    def key(self) -> str:
        return f"{self.stack.split('/')[-1]}/{self.name}"

    def output(self) -> dict:
        """Its entry in the `remoteDatabases` stack output (no password)."""
        out = {"kind": self.kind, "userdb": self.userdb, "writeHost": self.write_host, "readHost": self.read_host,
               "nodeAddresses": self.node_addresses}
        if self.kind != "galera":
            return out
        return {**out, "readPort": self.read_port, "writePort": self.write_port, "clusterName": self.cluster_name}


def read_outputs(stack: str, parent: pulumi.Resource | None = None) -> dict[str, tuple[object, bool]]:
    """The outputs a database stack exports for other stacks, each as (value, secret); an output
    it does not export is absent. Read at evaluation time: what it holds decides which resources
    this stack has."""
    ref = pulumi.StackReference(stack, opts=pulumi.ResourceOptions(parent=parent))
    found = {}
    for name in (DATABASES, CLIENTS, CREDENTIALS):
        # get_output_details is a coroutine; the SDK's own synchronous invokes wait the same way
        # (the program runs inside the running event loop, which _sync_await drives).
        details = _sync_await(ref.get_output_details(name))
        if details.secret_value is not None:
            found[name] = (details.secret_value, True)
        elif details.value is not None:
            found[name] = (details.value, False)
    return found


def remote_databases(cfg: EstateConfig, parent: pulumi.Resource | None = None) -> list[RemoteDatabase]:
    """Every userdb of the stacks in database.fromStacks, checked. Raises ConfigError."""
    db = cfg.database
    problems: list[tuple[str, str]] = []
    found: list[RemoteDatabase] = []
    userdbs = {t.ox_name: f"database.{t.name}" for t in db.topologies()}
    ports = {port: f"this stack's Galera cluster '{t.name}'"
             for t in db.of_kind("galera") for port in db.proxy_ports(t)}
    ports.update(MW_LOCAL_PORTS)
    for i, stack in enumerate(db.from_stacks):
        path = f"database.fromStacks[{i}]"
        outputs = read_outputs(stack, parent)
        if DATABASES not in outputs or CREDENTIALS not in outputs:
            problems.append((path, f"stack '{stack}' exports no databases for other stacks: deploy it first, with "
                                   "database.clients naming this stack's middleware networks"))
            continue
        clients = [ipaddress.IPv4Network(n) for n in outputs.get(CLIENTS, ([], False))[0]]
        problems += _outside_clients(cfg, path, stack, clients)
        credentials, _ = outputs[CREDENTIALS]
        password = pulumi.Output.secret(credentials["password"])
        entries = {n: d for n, d in outputs[DATABASES][0].items() if d.get("userdb")}
        if not entries:
            problems.append((path, f"stack '{stack}' exports no userdb (its database.userdbs)"))
        for name, entry in entries.items():
            where = f"stack '{stack}' database '{name}'"
            try:
                remote = _remote(stack, name, entry, password)
            except (KeyError, TypeError, ValueError) as missing:
                problems.append((path, f"{where} does not say {missing} as this version reads it: run `pulumi up` "
                                       f"on stack '{stack}' with this version of ox-estate first"))
                continue
            if remote.userdb in userdbs:
                problems.append((path, f"{where} is the userdb {remote.userdb}, as {userdbs[remote.userdb]} is: OX "
                                       "registers each name once (rename one topology)"))
                continue
            userdbs[remote.userdb] = where
            for port in (remote.read_port, remote.write_port) if remote.kind == "galera" else ():
                if port in ports:
                    problems.append((path, f"{where}: its HAProxy port {port} is already {ports[port]} here: set "
                                           f"readPort and writePort on it in stack '{stack}'"))
                ports[port] = where
            found.append(remote)
    if problems:
        raise ConfigError(problems)
    return found


def _remote(stack: str, name: str, entry: dict, password: pulumi.Output[str]) -> RemoteDatabase:
    """A `databases` entry of another stack as OX here reaches it: a Galera cluster through this
    stack's HAProxy on the ports that stack chose, the others at their own addresses."""
    kind = entry["kind"]
    if kind == "galera":
        read, write = int(entry["readPort"]), int(entry["writePort"])
        return RemoteDatabase(stack, name, kind, entry["userdb"], f"127.0.0.1:{write}", f"127.0.0.1:{read}",
                              list(entry["nodeNames"]), list(entry["nodeAddresses"]), read, write,
                              entry["clusterName"], password)
    read = entry.get("readEndpoint")
    return RemoteDatabase(stack, name, kind, entry["userdb"], _host(entry["writeEndpoint"]),
                          _host(read) if read else None,
                          [], list(entry["nodeAddresses"]), None, None, None, password)


def _host(endpoint: str) -> str:
    """What OX registers for `address:3306`: the address (the port is MariaDB's default)."""
    address, _, port = endpoint.rpartition(":")
    return address if port == "3306" else endpoint


def _outside_clients(cfg: EstateConfig, path: str, stack: str, clients: list) -> list[tuple[str, str]]:
    """Each middleware node must be in the database stack's client networks: its grants and firewall
    admit nobody else. Static hosts' addresses are known now; AWS assigns them at create (name
    the VPC's subnets in the database stack's database.clients)."""
    if cfg.provider != ProviderKind.STATIC:
        return []
    problems = []
    for node in cfg.middleware.nodes:
        address = ipaddress.IPv4Address(cfg.host(node.host).address)
        if not any(address in network for network in clients):
            problems.append((path, f"middleware host '{node.host}' ({address}) is outside stack '{stack}''s "
                                   f"database.clients ({', '.join(map(str, clients)) or 'none'}): its grants and "
                                   "firewall would refuse it (add the network there)"))
    return problems

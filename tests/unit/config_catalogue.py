"""A catalogue of bad stack configs, as varied as operators (and attackers) are.

Each case edits the valid base config (tests/conftest.py BASE_CONFIG) at key paths, and names the
key path the error must carry and words its message must contain. test_config.py runs every case
through config.parse and through the whole program under mocks (nothing may be registered).
"""

from __future__ import annotations

import copy
import re
from typing import Any

DROP = object()  # an edit that removes the key
MB10 = "x" * 10_000_000
KB64 = "a" * 65_536


def edited(base: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """`base` with each `key.path[i].sub` set to its value (or removed, for DROP)."""
    cfg = copy.deepcopy(base)
    for path, value in edits.items():
        parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
        node = cfg
        for part in parts[:-1]:
            if isinstance(part, str) and part not in node:
                node[part] = {}
            node = node[part]
        if value is DROP:
            del node[parts[-1]]
        elif isinstance(node, list) and parts[-1] == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[parts[-1]] = copy.deepcopy(value)
    return cfg


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


AWS = {"provider": "aws", "aws": {"adminCidr": "203.0.113.0/24"}, "firewall": DROP,
       "hosts": [{"name": n} for n in ("db1", "db2", "db3", "db4", "db5", "mw1", "mw2", "nfs1", "web1")]}
NO_TIERS = {"database": DROP, "middleware": DROP, "filestore": DROP, "frontend": DROP}
REPOSITORY = {"middleware.packageSource": "repository",
              "middleware.repositoryUrl": "https://software.example.com/appsuite/DebianBookworm"}
MASTER_MASTER = {"database.gtid.mode": "master-master"}
GTID_VIP = {**MASTER_MASTER, "database.gtid.floatingAddress": "10.0.0.100/24"}
TWO_WEB = {"hosts[9]": {"name": "web2", "address": "10.0.0.42"}, "frontend.nodes": ["web1", "web2"]}
CONTEXT = {"middleware.firstContext": {"contextId": 1, "name": "ctx"}}
DC_HOSTS = {"hosts[9]": {"name": "dc1", "address": "10.0.0.51"}, "hosts[10]": {"name": "dc2", "address": "10.0.0.52"}}
CONVERTERS = {**DC_HOSTS, "documentConverter": {"nodes": [{"host": "dc1", "route": "DC1"},
                                                          {"host": "dc2", "route": "DC2"}]}}

# (case, edits, key path named in the error, words the message must contain)
CATALOGUE: list[tuple[str, dict[str, Any], str, str]] = [
    # --- injection: values that could break out of a script, a heredoc or a config line ---
    ("repositoryUrl with a newline and heredoc marker", {**REPOSITORY, "middleware.repositoryUrl":
        "https://x.example/\nOX_EOF\ntouch /tmp/pwned\n"}, "middleware.repositoryUrl", "control character"),
    ("repositoryUrl with command substitution", {**REPOSITORY, "middleware.repositoryUrl":
        "https://x.example/$(touch /tmp/pwned)"}, "middleware.repositoryUrl", "not an http(s) URL"),
    ("repositoryUrl with backticks", {**REPOSITORY, "middleware.repositoryUrl": "https://x.example/`id`"},
     "middleware.repositoryUrl", "not an http(s) URL"),
    ("repositoryUrl with credentials", {**REPOSITORY, "middleware.repositoryUrl": "https://u:p@x.example/deb"},
     "middleware.repositoryUrl", "never in the URL"),
    ("repositoryUrl with a space", {**REPOSITORY, "middleware.repositoryUrl": "https://x.example/a b"},
     "middleware.repositoryUrl", "not an http(s) URL"),
    ("repositoryUrl of ftp", {**REPOSITORY, "middleware.repositoryUrl": "ftp://x.example/deb"},
     "middleware.repositoryUrl", "not an http(s) URL"),
    ("repositoryUser with a newline", {**REPOSITORY, "middleware.repositoryUser": "ox\nmachine evil.example"},
     "middleware.repositoryUser", "control character"),
    ("repositoryUser with a space", {**REPOSITORY, "middleware.repositoryUser": "ox password x"},
     "middleware.repositoryUser", "not a repository login"),
    ("repositoryUser with a quote", {**REPOSITORY, "middleware.repositoryUser": "o'x"},
     "middleware.repositoryUser", "not a repository login"),
    ("context name with a quote", {**CONTEXT, "middleware.firstContext.name": "c'; rm -rf /; '"},
     "middleware.firstContext.name", "is not 1-64 letters"),
    ("context name with a dollar", {**CONTEXT, "middleware.firstContext.name": "$(id)"},
     "middleware.firstContext.name", "is not 1-64 letters"),
    ("admin user with a space", {**CONTEXT, "middleware.firstContext.adminUser": "ox admin"},
     "middleware.firstContext.adminUser", "is not 1-64 letters"),
    ("admin email with a backtick", {**CONTEXT, "middleware.firstContext.adminEmail": "a`id`@example.com"},
     "middleware.firstContext.adminEmail", "not an email address"),
    ("admin email without a domain", {**CONTEXT, "middleware.firstContext.adminEmail": "admin"},
     "middleware.firstContext.adminEmail", "not an email address"),
    ("mapping with a comma", {**CONTEXT, "middleware.firstContext.mappings": ["a.example,b.example"]},
     "middleware.firstContext.mappings[0]", "no ','"),
    ("mapping with a semicolon", {**CONTEXT, "middleware.firstContext.mappings": ["a.example;id"]},
     "middleware.firstContext.mappings[0]", "not a login mapping"),
    ("mapping with a newline", {**CONTEXT, "middleware.firstContext.mappings": ["a.example\nb"]},
     "middleware.firstContext.mappings[0]", "control character"),
    ("server name with a slash", {"middleware.serverName": "ox/1"}, "middleware.serverName", "is not 1-64"),
    ("server name with a newline", {"middleware.serverName": "ox\n1"}, "middleware.serverName", "control character"),
    ("hazelcast cluster name with a quote", {"middleware.clusterName": "ox'"}, "middleware.clusterName", "is not 1-64"),
    ("galera cluster name with a space", {"database.galera.clusterName": "ox galera"},
     "database.galera.clusterName", "is not 1-32"),
    ("galera cluster name of 33", {"database.galera.clusterName": "g" * 33}, "database.galera.clusterName", "is not 1-32"),
    ("gcache size with an option after it", {"database.galera.gcacheSize": "128M;pc.ignore_sb=true"},
     "database.galera.gcacheSize", "is not a size in M or G"),
    ("gcache size in bytes", {"database.galera.gcacheSize": "134217728"}, "database.galera.gcacheSize",
     "is not a size in M or G"),
    ("server name starting with '-'", {"middleware.serverName": "-n"}, "middleware.serverName", "not starting with '-'"),
    ("admin email starting with '-'", {**CONTEXT, "middleware.firstContext.adminEmail": "-x@example.com"},
     "middleware.firstContext.adminEmail", "not an email address"),
    ("sqlMode with a newline", {"database.tuning.sqlMode": "NO_ENGINE_SUBSTITUTION\ninit_file=/tmp/x"},
     "database.tuning.sqlMode", "control character"),
    ("sqlMode with an option", {"database.tuning.sqlMode": "NO_ENGINE_SUBSTITUTION init_file=/x"},
     "database.tuning.sqlMode", "not a comma-separated list"),
    ("s3Uri with a quote", {"filestore": {"s3Uri": "s3://a'b"}}, "filestore.s3Uri", "not an S3 filestore id"),
    ("s3Uri without a scheme", {"filestore": {"s3Uri": "bucket"}}, "filestore.s3Uri", "not an S3 filestore id"),
    ("converge with a newline", {"converge": "1\ntouch /tmp/x"}, "converge", "control character"),
    ("converge with a dollar", {"converge": "$(date)"}, "converge", "not a converge token"),
    ("ssh user with a semicolon", {"ssh.user": "root;id"}, "ssh.user", "not a Unix user name"),
    ("ssh user with an option", {"ssh.user": "-oProxyCommand=x"}, "ssh.user", "not a Unix user name"),
    ("ssh user empty", {"ssh.user": ""}, "ssh.user", "not a Unix user name"),
    ("bastion address with a command", {"ssh.bastion": {"address": "jump;id"}},
     "ssh.bastion.address", "neither an IPv4 address nor a DNS name"),
    ("bastion address with an option", {"ssh.bastion": {"address": "-oProxyCommand=id"}},
     "ssh.bastion.address", "neither an IPv4 address nor a DNS name"),
    ("bastion user with a space", {"ssh.bastion": {"address": "jump.example.com", "user": "a b"}},
     "ssh.bastion.user", "not a Unix user name"),
    ("bastion address 0.0.0.0", {"ssh.bastion": {"address": "0.0.0.0"}}, "ssh.bastion.address", "not a host's address"),
    ("a 64 KB host name", {"hosts[0].name": KB64}, "hosts[0].name", "longer than 1024 characters"),
    ("a 64 KB context name", {**CONTEXT, "middleware.firstContext.name": KB64},
     "middleware.firstContext.name", "longer than 1024"),
    ("a NUL in a jkroute", {"middleware.nodes[0].jkroute": "OX\x001"}, "middleware.nodes[0].jkroute",
     "control character"),
    ("a tab in a host reference", {"filestore.server": "nfs1\t"}, "filestore.server", "control character"),
    ("a percent in a route", {"middleware.nodes[0].jkroute": "OX%1"}, "middleware.nodes[0].jkroute", "route token"),
    ("a backslash in a cluster name", {"middleware.clusterName": "ox\\1"}, "middleware.clusterName", "is not 1-64"),
    # --- full-string matching: a trailing newline must not slip past a pattern ---
    ("host name with a trailing newline", {"hosts[0].name": "db1\n"}, "hosts[0].name", "control character"),
    ("jkroute with a trailing newline", {"middleware.nodes[0].jkroute": "OX1\n"}, "middleware.nodes[0].jkroute",
     "control character"),
    ("appsuite version with a trailing newline", {"versions.appsuite": "8\n"}, "versions.appsuite", "control character"),
    ("db version with a trailing newline", {"versions.database.version": "10.11\n"}, "versions.database.version",
     "control character"),
    ("appsuite version with text", {"versions.appsuite": "8; rm"}, "versions.appsuite", "not a version"),
    ("db version with a suffix", {"versions.database.version": "10.11-ubuntu"}, "versions.database.version",
     "not a version"),
    ("host name with capitals", {"hosts[0].name": "DB1", "database.galera.nodes[0]": "DB1"}, "hosts[0].name",
     "not a host name"),
    ("host name starting with a digit", {"hosts[0].name": "1db"}, "hosts[0].name", "not a host name"),
    ("host name with a dot", {"hosts[0].name": "db1.example"}, "hosts[0].name", "not a host name"),
    ("host name too long", {"hosts[0].name": "d" * 64}, "hosts[0].name", "not a host name"),
    ("jkroute too long", {"middleware.nodes[0].jkroute": "O" * 33}, "middleware.nodes[0].jkroute", "route token"),
    # --- no silent coercion ---
    ("serverId true", {"database.gtid.master.serverId": True}, "database.gtid.master.serverId",
     "a whole number is expected, not true"),
    ("serverId false", {"database.gtid.slave.serverId": False}, "database.gtid.slave.serverId", "not false"),
    ("serverId a fraction", {"database.gtid.master.serverId": 1.5}, "database.gtid.master.serverId",
     "a whole number is expected"),
    ("serverId a word", {"database.gtid.master.serverId": "one"}, "database.gtid.master.serverId",
     "a whole number is expected"),
    ("serverId zero", {"database.gtid.master.serverId": 0}, "database.gtid.master.serverId", "greater than or equal to 1"),
    ("serverId too large", {"database.gtid.master.serverId": 2**32}, "database.gtid.master.serverId", "less than or equal"),
    ("ssh port true", {"ssh.port": True}, "ssh.port", "not true"),
    ("ssh port 0", {"ssh.port": 0}, "ssh.port", "greater than or equal to 1"),
    ("ssh port 65536", {"ssh.port": 65536}, "ssh.port", "less than or equal to 65535"),
    ("uid true", {"filestore.uid": True}, "filestore.uid", "not true"),
    ("uid of root's range", {"filestore.uid": 0}, "filestore.uid", "greater than or equal to 100"),
    ("gid a list", {"filestore.gid": [2001]}, "filestore.gid", "a whole number is expected"),
    ("sizeMb a string with a unit", {"filestore.sizeMb": "10G"}, "filestore.sizeMb", "a whole number is expected"),
    ("maxContexts negative", {"filestore.maxContexts": -1}, "filestore.maxContexts", "greater than or equal to 1"),
    ("servermemoryMb true", {"middleware.servermemoryMb": True}, "middleware.servermemoryMb", "not true"),
    ("servermemoryMb too small", {"middleware.servermemoryMb": 100}, "middleware.servermemoryMb", "greater than or equal"),
    ("bufferPoolPercent 100", {"database.tuning.bufferPoolPercent": 100}, "database.tuning.bufferPoolPercent",
     "less than or equal to 80"),
    ("maxConnections a float", {"database.tuning.maxConnections": 500.0}, "database.tuning.maxConnections",
     "a whole number is expected"),
    ("frontend maxConnections too many", {"frontend.maxConnections": 10**9}, "frontend.maxConnections",
     "less than or equal"),
    ("gtidDomainId true", {"database.gtid.master.gtidDomainId": True}, "database.gtid.master.gtidDomainId", "not true"),
    ("quota 0", {**CONTEXT, "middleware.firstContext.quotaMb": 0}, "middleware.firstContext.quotaMb",
     "greater than or equal to 1"),
    ("contextId true", {**CONTEXT, "middleware.firstContext.contextId": True}, "middleware.firstContext.contextId",
     "not true"),
    ("firewall enabled 1", {"firewall.enabled": 1}, "firewall.enabled", "true or false is expected"),
    ("firewall enabled yes", {"firewall.enabled": "yes"}, "firewall.enabled", "true or false is expected"),
    ("host address a number", {"hosts[0].address": 167772171}, "hosts[0].address", "not an IPv4 address"),
    ("admin network a number", {"frontend.adminNetworks": [10]}, "frontend.adminNetworks[0]", "not an IPv4 CIDR"),
    ("host name a number", {"hosts[0].name": 1}, "hosts[0].name", "valid string"),
    ("rootVolumeGb true", {**AWS, "aws.rootVolumeGb": True}, "aws.rootVolumeGb", "not true"),
    # --- dangerous values ---
    ("exportPath /", {"filestore.exportPath": "/"}, "filestore.exportPath", "not an absolute path"),
    ("exportPath with ..", {"filestore.exportPath": "/var/opt/../../"}, "filestore.exportPath", "not an absolute path"),
    ("exportPath ending in ..", {"filestore.exportPath": "/var/opt/filestore/.."}, "filestore.exportPath",
     "no '.' or '..'"),
    ("exportPath with a . segment", {"filestore.exportPath": "/var/opt/./filestore"}, "filestore.exportPath",
     "no '.' or '..'"),
    ("exportPath /etc", {"filestore.exportPath": "/etc"}, "filestore.exportPath", "is a system directory"),
    ("exportPath under /etc", {"filestore.exportPath": "/etc/ssh"}, "filestore.exportPath", "is a system directory"),
    ("exportPath the datadir", {"filestore.exportPath": "/var/lib/mysql"}, "filestore.exportPath",
     "is a system directory"),
    ("exportPath /root", {"filestore.exportPath": "/root/files"}, "filestore.exportPath", "is a system directory"),
    ("exportPath /var", {"filestore.exportPath": "/var"}, "filestore.exportPath", "is a system directory"),
    ("exportPath OX's own tree", {"filestore.exportPath": "/opt/open-xchange/etc"}, "filestore.exportPath",
     "is a system directory"),
    ("exportPath relative", {"filestore.exportPath": "var/opt/filestore"}, "filestore.exportPath",
     "not an absolute path"),
    ("exportPath with //", {"filestore.exportPath": "/var//opt"}, "filestore.exportPath", "not an absolute path"),
    ("exportPath with a trailing slash", {"filestore.exportPath": "/var/opt/filestore/"}, "filestore.exportPath",
     "not an absolute path"),
    ("mountPath /", {"filestore.mountPath": "/"}, "filestore.mountPath", "not an absolute path"),
    ("mountPath /usr", {"filestore.mountPath": "/usr"}, "filestore.mountPath", "is a system directory"),
    ("mountPath /boot/x", {"filestore.mountPath": "/boot/x"}, "filestore.mountPath", "is a system directory"),
    ("mountPath with a space", {"filestore.mountPath": "/var/opt/file store"}, "filestore.mountPath",
     "not an absolute path"),
    ("adminNetworks everyone", {"frontend.adminNetworks": ["0.0.0.0/0"]}, "frontend.adminNetworks[0]",
     "admits everyone"),
    ("adminNetworks half the internet", {"frontend.adminNetworks": ["0.0.0.0/1"]}, "frontend.adminNetworks[0]",
     "far too many addresses"),
    ("aws adminCidr everyone", {**AWS, "aws.adminCidr": "0.0.0.0/0"}, "aws.adminCidr", "admits everyone"),
    ("firewall sshFrom everyone", {"firewall.sshFrom": ["0.0.0.0/0"]}, "firewall.sshFrom[0]", "admits everyone"),
    ("host address 0.0.0.0", {"hosts[0].address": "0.0.0.0"}, "hosts[0].address", "not a host's address"),
    ("host address broadcast", {"hosts[0].address": "255.255.255.255"}, "hosts[0].address", "not a host's address"),
    ("host address multicast", {"hosts[0].address": "224.0.0.1"}, "hosts[0].address", "not a host's address"),
    ("host address link-local (metadata)", {"hosts[0].address": "169.254.169.254"}, "hosts[0].address",
     "not a host's address"),
    ("host address reserved", {"hosts[0].address": "240.0.0.1"}, "hosts[0].address", "not a host's address"),
    ("host address loopback among many", {"hosts[0].address": "127.0.0.1"}, "hosts[0].address",
     "loopback address"),
    ("host address with a port", {"hosts[0].address": "10.0.0.11:22"}, "hosts[0].address", "not an IPv4 address"),
    ("host address with leading zeros", {"hosts[0].address": "010.0.0.11"}, "hosts[0].address", "not an IPv4 address"),
    ("password with a newline", {"mysqlRootPassword": "pw\nline"}, "mysqlRootPassword", "control character"),
    ("password with a NUL", {"configdbPassword": "pw\x00"}, "configdbPassword", "control character"),
    ("password empty", {"sstPassword": ""}, "sstPassword", "a password needs 1-256 characters"),
    ("password of 300 characters", {"replicationPassword": "p" * 300}, "replicationPassword", "1-256 characters"),
    ("repository password with a space", {**REPOSITORY, "oxRepositoryPassword": "a b"}, "oxRepositoryPassword",
     "cannot hold whitespace"),
    ("password with CR", {"oxAdminMasterPassword": "pw\r"}, "oxAdminMasterPassword", "control character"),
    # --- defaults that collide ---
    ("master-master with the master on domain 2", {**MASTER_MASTER, "database.gtid.master.gtidDomainId": 2,
                                                   "database.gtid.slave.gtidDomainId": 2},
     "database.gtid.slave.gtidDomainId", "both masters would use gtid_domain_id 2"),
    ("master-master with the second master on the default domain 1", {
        **MASTER_MASTER, "database.gtid.slave.gtidDomainId": 1}, "database.gtid.slave.gtidDomainId",
     "both masters would use gtid_domain_id 1"),
    # --- duplicates ---
    ("same userdb twice", {"database.userdbs": ["galera", "galera"]}, "database.userdbs[1]", "listed twice"),
    ("frontend node twice", {"frontend.nodes": ["web1", "web1"]}, "frontend.nodes[1]", "listed twice as a frontend"),
    ("middleware node twice", {"middleware.nodes[1].host": "mw1"}, "middleware.nodes[1].host", "listed twice"),
    ("galera node twice", {"database.galera.nodes": ["db1", "db1", "db2"]}, "database.galera.nodes[1]",
     "already holds a database server"),
    ("galera forceBootstrapNode not a galera node", {"database.galera.forceBootstrapNode": "db4"},
     "database.galera.forceBootstrapNode", "is not one of database.galera.nodes"),
    ("galera forceBootstrapNode not a host name", {"database.galera.forceBootstrapNode": "db1; rm"},
     "database.galera.forceBootstrapNode", "a host name"),
    ("gtid slave on the master's host", {"database.gtid.slave.host": "db4"}, "database.gtid.slave.host",
     "already holds a database server"),
    ("same jkroute on two nodes", {
        "middleware.nodes": [{"host": "mw1", "jkroute": "OX1"}, {"host": "mw2", "jkroute": "OX1"}]},
     "middleware.nodes[1].jkroute", "duplicate jkroute"),
    # --- sections silently ignored ---
    ("filestore with no middleware", {"middleware": DROP, "frontend": DROP}, "filestore",
     "no middleware would use this filestore"),
    ("firstContext with no filestore", {**CONTEXT, "filestore": DROP}, "middleware.firstContext",
     "needs a filestore"),
    ("repositoryUrl with preinstalled packages", {"middleware.repositoryUrl": "https://x.example/deb"},
     "middleware.repositoryUrl", "nothing would use it"),
    ("repositoryUser with preinstalled packages", {"middleware.repositoryUser": "ox"},
     "middleware.repositoryUser", "nothing would use it"),
    ("aws section on static hosts", {"aws": {"adminCidr": "203.0.113.0/24"}}, "aws",
     "static provider uses no aws settings"),
    ("instanceType on a static host", {"hosts[0].instanceType": "m6i.large"}, "hosts[0].instanceType",
     "only the aws provider creates instances"),
    ("firewall section on aws", {**AWS, "firewall": {"sshFrom": ["203.0.113.0/24"]}}, "firewall",
     "security groups are the firewall there"),
    ("subnetCidrs with an existing VPC", {**AWS, "aws.vpcId": "vpc-0a1b2c3d", "aws.subnetIds": ["subnet-0a1b2c3d"],
                                          "aws.subnetCidrs": ["10.20.1.0/24"]}, "aws.vpcId", "not used"),
    # --- placements that clash ---
    ("middleware on a galera node", {"middleware.nodes[0].host": "db1"}, "middleware.nodes[0].host",
     "HAProxy"),
    ("middleware on the gtid master", {"middleware.nodes[1].host": "db4"}, "middleware.nodes[1].host",
     "HAProxy"),
    # --- crashes that must be errors ---
    ("vpcId without subnetIds", {**AWS, "aws.vpcId": "vpc-0a1b2c3d"}, "aws.subnetIds",
     "needs the ids of its subnets"),
    ("subnetIds without vpcId", {**AWS, "aws.subnetIds": ["subnet-0a1b2c3d"]}, "aws.vpcId",
     "need the VPC they belong to"),
    ("vpcId that is not an id", {**AWS, "aws.vpcId": "my-vpc", "aws.subnetIds": ["subnet-0a1b2c3d"]}, "aws.vpcId",
     "not a VPC id"),
    ("subnet outside the VPC", {**AWS, "aws.subnetCidrs": ["192.168.1.0/24"]}, "aws.subnetCidrs[0]",
     "not inside vpcCidr"),
    ("instance type with a space", {**AWS, "aws.instanceTypes": {"db": "m6i large"}}, "aws.instanceTypes.db",
     "not an EC2 instance type"),
    ("instance type for an unknown role", {**AWS, "aws.instanceTypes": {"cache": "m6i.large"}},
     "aws.instanceTypes.cache", "'db', 'mw', 'web', 'nfs' or 'dc'"),
    ("deeply nested JSON", {"database.tuning": _nested(50)}, "database.tuning" + ".x" * 8, "nested deeper"),
    ("10,000 middleware nodes", {"middleware.nodes": [{"host": "mw1", "jkroute": f"OX{i}"} for i in range(10_000)]},
     "middleware.nodes", "lists 10000 items; at most 1000"),
    ("1,001 hosts", {**NO_TIERS, "hosts": [{"name": f"h{i}", "address": f"10.{i // 250}.{i % 250}.1"}
                                           for i in range(1001)]}, "hosts", "at most 1000"),
    ("a 10 MB value", {"middleware.serverName": MB10}, "middleware.serverName", "longer than 1024 characters"),
    ("a 10 MB key", {"middleware": {MB10: 1, "nodes": [{"host": "mw1", "jkroute": "OX1"}]}},
     "middleware.'xxxxxxxx", "not a config key"),
    ("16 galera nodes", {"database.galera.nodes": [f"db{i}" for i in range(16)]}, "database.galera.nodes",
     "at most 15 items"),
    ("1,000 admin networks", {"frontend.adminNetworks": [f"10.{i // 256}.{i % 256}.0/24" for i in range(1000)]},
     "frontend.adminNetworks", "at most 64 items"),
    # --- secrets: plain text through any spelling ---
    ("plaintext secret through the secrets key", {"secrets": {"mysqlRootPassword": "hunter2hunter2"}}, "secrets",
     "unknown key"),
    ("plaintext secret through snake_case in secrets", {"secrets": {"mysql_root_password": "hunter2"}}, "secrets",
     "unknown key"),
    ("plaintext secret as a snake_case key", {"mysql_root_password": "hunter2"}, "mysql_root_password", "unknown key"),
    ("plaintext secret in another case", {"MysqlRootPassword": "hunter2"}, "MysqlRootPassword", "unknown key"),
    ("plaintext secret inside a section", {"middleware.repositoryPassword": "hunter2"},
     "middleware.repositoryPassword", "Extra inputs are not permitted"),
    ("plaintext repository password", {**REPOSITORY, "oxRepositoryPassword": "hunter2"}, "oxRepositoryPassword",
     "stored in plain text"),
    ("plaintext ssh key set a second time in snake_case", {"ssh_private_key": "x"}, "ssh_private_key", "unknown key"),
    # --- one spelling per key ---
    ("snake_case key beside camelCase", {"middleware.server_name": "other"}, "middleware.'server_name'",
     "not a config key"),
    ("snake_case top-level section key", {"database.tuning": {"buffer_pool_percent": 20}},
     "database.tuning.'buffer_pool_percent'", "not a config key"),
    # --- floating addresses (keepalived) ---
    ("gtid floating address without a prefix", {**GTID_VIP, "database.gtid.floatingAddress": "10.0.0.100"},
     "database.gtid.floatingAddress", "with its network's prefix"),
    ("gtid floating address with a /32", {**GTID_VIP, "database.gtid.floatingAddress": "10.0.0.100/32"},
     "database.gtid.floatingAddress", "prefix must be 8-30"),
    ("gtid floating address with shell in it", {**GTID_VIP, "database.gtid.floatingAddress": "10.0.0.100/24;id"},
     "database.gtid.floatingAddress", "prefix must be 8-30"),
    ("gtid floating address not an address", {**GTID_VIP, "database.gtid.floatingAddress": "db-vip/24"},
     "database.gtid.floatingAddress", "not an IPv4 address"),
    ("gtid floating address is the broadcast", {**GTID_VIP, "database.gtid.floatingAddress": "10.0.0.255/24"},
     "database.gtid.floatingAddress", "broadcast"),
    ("gtid floating address is a master's own", {**GTID_VIP, "database.gtid.floatingAddress": "10.0.0.14/24"},
     "database.gtid.floatingAddress", "host 'db4's own address"),
    ("gtid floating address is another host's", {**GTID_VIP, "database.gtid.floatingAddress": "10.0.0.21/24"},
     "database.gtid.floatingAddress", "host 'mw1's own address"),
    ("gtid floating address outside the masters' network", {
        **GTID_VIP, "database.gtid.floatingAddress": "10.0.1.100/24"}, "database.gtid.floatingAddress",
     "is not in 10.0.1.0/24"),
    ("gtid floating address for a master-slave pair", {"database.gtid.floatingAddress": "10.0.0.100/24"},
     "database.gtid.floatingAddress", "needs mode master-master"),
    ("gtid VRRP router id 0", {**GTID_VIP, "database.gtid.vrrpRouterId": 0}, "database.gtid.vrrpRouterId",
     "greater than or equal to 1"),
    ("gtid VRRP router id 256", {**GTID_VIP, "database.gtid.vrrpRouterId": 256}, "database.gtid.vrrpRouterId",
     "less than or equal to 255"),
    ("frontend floating address with one frontend", {"frontend.floatingAddress": "10.0.0.200/24"},
     "frontend.floatingAddress", "two or more hosts; frontend has 1"),
    ("frontend floating address equal to the gtid one", {**GTID_VIP, **TWO_WEB,
                                                         "frontend.floatingAddress": "10.0.0.100/24"},
     "frontend.floatingAddress", "is already database.gtid.floatingAddress"),
    ("frontend VRRP router id equal to the gtid one", {**GTID_VIP, **TWO_WEB, "frontend.floatingAddress": "10.0.0.200/24",
                                                       "frontend.vrrpRouterId": 51},
     "frontend.vrrpRouterId", "already database.gtid's"),
    ("frontend floating address on aws", {**AWS, "hosts": AWS["hosts"] + [{"name": "web2"}],
                                          "frontend.nodes": ["web1", "web2"],
                                          "frontend.floatingAddress": "10.20.1.200/24"},
     "frontend.floatingAddress", "an AWS VPC does not honour"),
    # --- document converters ---
    ("converter route used twice", {**CONVERTERS, "documentConverter.nodes[1].route": "DC1"},
     "documentConverter.nodes[1].route", "duplicate route 'DC1'"),
    ("converter route that is a jkroute", {**CONVERTERS, "documentConverter.nodes[0].route": "OX2"},
     "documentConverter.nodes[0].route", "already middleware.nodes[1].jkroute"),
    ("converter route with a dot", {**CONVERTERS, "documentConverter.nodes[0].route": "DC.1"},
     "documentConverter.nodes[0].route", "route token"),
    ("converter route with a newline", {**CONVERTERS, "documentConverter.nodes[0].route": "DC1\nRequire all granted"},
     "documentConverter.nodes[0].route", "control character"),
    ("converter on a middleware host", {**CONVERTERS, "documentConverter.nodes[1].host": "mw2"},
     "documentConverter.nodes[1].host", "a converter is a node of its own"),
    ("converter host listed twice", {**CONVERTERS, "documentConverter.nodes[1].host": "dc1"},
     "documentConverter.nodes[1].host", "listed twice as a document converter"),
    ("converter on an unknown host", {**CONVERTERS, "documentConverter.nodes[1].host": "dc9"},
     "documentConverter.nodes[1].host", "unknown host 'dc9'"),
    ("converters without middleware", {**CONVERTERS, "middleware": DROP, "filestore": DROP, "frontend": DROP},
     "documentConverter", "converter nodes serve the middleware"),
    ("converters without a frontend", {**CONVERTERS, "frontend": DROP}, "documentConverter",
     "add a frontend section"),
    ("converters without nodes", {"documentConverter": {"nodes": []}}, "documentConverter.nodes", "at least 1 item"),
    ("jobProcessorCount of zero", {**CONVERTERS, "documentConverter.jobProcessorCount": 0},
     "documentConverter.jobProcessorCount", "greater than or equal to 1"),
    ("jobProcessorCount as a boolean", {**CONVERTERS, "documentConverter.jobProcessorCount": True},
     "documentConverter.jobProcessorCount", "whole number"),
    ("converter with an unknown key", {**CONVERTERS, "documentConverter.nodes[0].port": 8080},
     "documentConverter.nodes[0].port", "Extra inputs"),

]

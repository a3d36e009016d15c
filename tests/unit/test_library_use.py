"""The components as a library: a Pulumi user's own program, built from three components and their
typed args, with no stack config and no Estate.

The program below is what such a user writes: hosts they already have (over SSH), their own
secrets, and OXMiddlewareGroup, NfsFilestore and ApacheFrontend wired by hand. The test checks
that it builds, that the components order their steps across each other as the estate does
(mounts after the open-xchange user, Apache after the middleware), and that nothing read the
stack config on the way.
"""

from __future__ import annotations

import pulumi
import pytest
from pulumi_command import remote

from components.core import config as stack_config_module
from components.core.config import Role
from components.fs.filestore import NfsFilestore, NfsFilestoreArgs
from components.web.frontend import ApacheFrontend, ApacheFrontendArgs, Backend
from components.core.hosts import Host
from components.mw.middleware import ConfigdbEndpoints, OXMiddlewareGroup, OXMiddlewareGroupArgs, OXNode
from components.core.secrets import StackSecrets
from tests.harness import is_secret, run_built, script_of


def _host(name: str, address: str, *roles: Role) -> Host:
    key = pulumi.Output.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nmy own key\n-----END OPENSSH PRIVATE KEY-----\n")
    return Host(name, address, remote.ConnectionArgs(host=address, user="root", private_key=key), frozenset(roles))


def _secrets() -> StackSecrets:
    mine = {f: pulumi.Output.secret(f"my-{f.replace('_', '-')}-0123456789") for f in StackSecrets.__dataclass_fields__}
    return StackSecrets(**{**mine, "ox_repository_password": None})


def my_program() -> dict:
    """A user's program: two OX nodes on an existing database, their NFS server, one Apache."""
    mw1, mw2 = _host("mw1", "192.0.2.11", Role.MW), _host("mw2", "192.0.2.12", Role.MW)
    nfs, web = _host("nfs1", "192.0.2.20", Role.NFS), _host("web1", "192.0.2.30", Role.WEB)
    configdb = ConfigdbEndpoints("192.0.2.5", 3306, "192.0.2.5", 3306, replication_monitor=False)
    middleware = OXMiddlewareGroup("shop-mw", OXMiddlewareGroupArgs(
        nodes=[OXNode(mw1, "APP1"), OXNode(mw2, "APP2")], configdb=configdb, secrets=_secrets(),
        cluster_name="shop", server_name="shop-server"))
    filestore = NfsFilestore("shop-fs", NfsFilestoreArgs(
        server=nfs, clients=[mw1, mw2], client_ready=middleware.users, export_path="/srv/ox", mount_path="/srv/ox"))
    frontend = ApacheFrontend("shop-web", ApacheFrontendArgs(
        web_hosts=[web], backends=[Backend(n, a, r) for n, a, r in middleware.backends],
        depends_on=[*middleware.ready, *filestore.ready], admin_networks=["198.51.100.0/28"], max_connections=512))
    return {"urls": frontend.urls}


@pytest.fixture
def built(monkeypatch):
    def no_stack_config(*_a, **_k):
        raise AssertionError("a library user's program read the stack config")

    monkeypatch.setattr(stack_config_module, "load", no_stack_config)
    return run_built(my_program)


def test_a_program_of_its_own_builds_from_three_components(built):
    components = {r.name: r.type for r in built.non_stack if not r.custom}
    assert components == {"shop-mw": "ox-estate:mw:OXMiddlewareGroup", "shop-fs": "ox-estate:fs:NfsFilestore",
                          "shop-web": "ox-estate:web:ApacheFrontend"}
    steps = {r.name for r in built.of_type("command:remote:Command")}
    assert {"shop-mw-mw1-configure", "shop-mw-mw2-configure", "shop-fs-nfs1-export", "shop-fs-mw1-mount",
            "shop-fs-mw2-mount", "shop-web-web1-configure", "shop-web-web1-start"} <= steps
    assert not any(s.startswith(("ox-", "lab-")) for s in steps)  # nothing of an Estate's own


def test_its_args_reach_the_scripts(built):
    configure = script_of(built.named("shop-mw-mw2-configure"))
    assert "APP2" in configure and "shop-server" in configure and "192.0.2.5" in configure
    assert "/srv/ox" in script_of(built.named("shop-fs-mw1-mount"))
    site = script_of(built.named("shop-web-web1-configure"))
    assert "route=APP1" in site and "route=APP2" in site and "198.51.100.0/28" in site


def test_the_components_order_their_steps_across_each_other(built):
    def waits_for(step: str, other: str) -> bool:
        return built.named(other).urn in built.waits_for(step)

    assert waits_for("shop-fs-mw1-mount", "shop-mw-mw1-ox-user")  # the files' owner exists first
    assert waits_for("shop-web-web1-start", "shop-mw-mw1-configure")
    assert waits_for("shop-web-web1-start", "shop-fs-mw2-read-check")
    assert not waits_for("shop-fs-nfs1-export", "shop-mw-mw1-configure")  # independent: in parallel


def test_its_secrets_stay_secret(built):
    configure = built.named("shop-mw-mw1-configure")
    assert is_secret(configure.inputs["stdin"])
    assert "my-configdb-password" not in script_of(configure)

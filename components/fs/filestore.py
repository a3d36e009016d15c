"""NfsFilestore: the OX filestore on NFS, mounted at the same path on every middleware node.

Creates:
- `<fs>-<server>-ox-user`, `<fs>-<server>-export`: the open-xchange user (same uid/gid as the
  middleware) and the export of the filestore to the middleware hosts only (nfs-kernel-server,
  or nfs-ganesha), all access squashed to open-xchange as oxpedia does;
- `<fs>-<node>-mount` on every middleware node: an fstab entry and the mount (or, with
  `clientMount: preprovisioned`, a check that the platform provides the path);
- `<fs>-<a>-write-check`, `<fs>-<b>-read-check`: a file written by one node as open-xchange is
  read by another.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from ..core.hosts import Host
from ..core.remote import phase_steps
from ..core.render import render


@dataclass(frozen=True)
class NfsFilestoreArgs:
    server: Host  # exports the filestore
    clients: list[Host]  # the middleware nodes: each mounts it
    client_ready: dict[str, pulumi.Resource]  # client -> its open-xchange user step (owner of the files)
    export_path: str = "/var/opt/filestore"
    mount_path: str = "/var/opt/filestore"
    uid: int = 2001  # open-xchange's, the same on every host
    gid: int = 2001
    implementation: str = "kernel"  # nfs-kernel-server, or "ganesha"
    client_mount: str = "nfs"  # or "preprovisioned": the platform mounts it; the step checks


class NfsFilestore(pulumi.ComponentResource):
    path: str
    server_address: pulumi.Input[str]
    export_path: str
    owner: str  # uid:gid every file on the export belongs to
    ready: list[pulumi.Resource]

    def __init__(self, name: str, fs: NfsFilestoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ox-estate:fs:NfsFilestore", name, None, opts)
        server, clients = fs.server, fs.clients
        self.path, self.export_path = fs.mount_path, fs.export_path
        self.server_address, self.owner = server.address, f"{fs.uid}:{fs.gid}"
        ids = {"uid": fs.uid, "gid": fs.gid}

        step = phase_steps(name, self)

        config_template = "files/ganesha.conf.j2" if fs.implementation == "ganesha" else "files/exports.j2"
        config = pulumi.Output.all(*[c.address for c in clients]).apply(
            lambda addrs: render(config_template, export_path=fs.export_path, clients=addrs, **ids))
        user = step(server, "ox-user", "ox-user.sh.j2", values=ids)
        exported = step(server, "export", "fs/nfs-server.sh.j2", depends_on=[user],
                        values={"export_path": fs.export_path, "implementation": fs.implementation, "config": config,
                                "init_script": render("files/nfs-ganesha.init.j2"), **ids})

        mounted = [step(c, "mount", "fs/nfs-client.sh.j2", depends_on=[exported, fs.client_ready[c.name]],
                        values={"client_mount": fs.client_mount, "server": server.address,
                                "export_path": fs.export_path, "mount_path": fs.mount_path}) for c in clients]
        writer, reader = clients[0], clients[-1]
        check = {"mount_path": fs.mount_path, "writer": writer.name}
        wrote = step(writer, "write-check", "fs/filestore-check.sh.j2", values={**check, "write": True},
                     depends_on=mounted)
        read = step(reader, "read-check", "fs/filestore-check.sh.j2", values={**check, "write": False},
                    depends_on=[wrote])
        self.ready = [read]
        self.register_outputs({"server": server.address, "exportPath": fs.export_path, "mountPath": fs.mount_path})

"""Measure the lab hosts: time to create N hosts, and SSH round trips.

    .venv/bin/python -m lab.bench_hosts [--hosts 8] [--rounds 20]

Uses its own state dir, bridge and subnet (default /ox-lab-bench, oxlabb0,
10.215.0.0/24) so it never touches a lab in use, and destroys its lab (and state dir) at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import time

import paramiko

from lab import hosts as lab


def _fmt(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"median {statistics.median(ms):7.1f} ms   p90 {p90:7.1f} ms   min {ms[0]:7.1f} ms   (n={len(ms)})"


def _timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _connect(host: lab.LabHost) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.load_host_keys(str(lab.known_hosts_path()))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(host.address, username=host.ssh_user, key_filename=str(lab.client_key_path()),
              look_for_keys=False, allow_agent=False, timeout=10)
    return c


def _exec(c: paramiko.SSHClient, cmd: str = "true") -> None:
    _, out, _ = c.exec_command(cmd, timeout=10)
    out.read()
    if out.channel.recv_exit_status() != 0:
        raise RuntimeError(f"{cmd} failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--state", default="/ox-lab-bench")
    ap.add_argument("--bridge", default="oxlabb0")
    ap.add_argument("--subnet", default="10.215.0.0/24")
    args = ap.parse_args()
    os.environ["OX_LAB_STATE"] = args.state
    base = args.subnet.rsplit(".", 1)[0]
    spec = [(f"bench{i}", f"{base}.{10 + i}") for i in range(1, args.hosts + 1)]

    lab.destroy()
    try:
        t0 = time.perf_counter()
        created = lab.create(spec, subnet=args.subnet, bridge=args.bridge)
        t_create = time.perf_counter() - t0
        t0 = time.perf_counter()
        lab.create(spec, subnet=args.subnet, bridge=args.bridge)
        t_again = time.perf_counter() - t0
        print(f"create {args.hosts} hosts (ready for SSH login): {t_create:6.2f} s")
        print(f"create again (idempotent, all healthy):   {t_again:6.2f} s")

        h = created[0]

        def fresh_paramiko():
            c = _connect(h)
            try:
                _exec(c)
            finally:
                c.close()

        ssh_cli = ["ssh", "-i", str(lab.client_key_path()), "-o", "BatchMode=yes",
                   "-o", f"UserKnownHostsFile={lab.known_hosts_path()}",
                   "-o", "StrictHostKeyChecking=yes", f"root@{h.address}", "true"]
        kept = _connect(h)
        try:
            print("SSH round trip, `true` on one host:")
            print(f"  fresh paramiko connection   {_fmt(_timed(fresh_paramiko, args.rounds))}")
            print(f"  fresh `ssh` (OpenSSH CLI)   "
                  f"{_fmt(_timed(lambda: subprocess.run(ssh_cli, check=True), args.rounds))}")
            print(f"  kept-open paramiko client   {_fmt(_timed(lambda: _exec(kept), args.rounds * 5))}")
            # paramiko leaves Nagle on; with the server's delayed ACK every
            # command then costs ~40 ms extra. Go's SSH (pulumi-command) sets
            # TCP_NODELAY by default, so this is the figure to compare with.
            kept.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            print(f"    ... with TCP_NODELAY      {_fmt(_timed(lambda: _exec(kept), args.rounds * 5))}")
        finally:
            kept.close()
        print(f"  run_on (nsenter, no SSH)    "
              f"{_fmt(_timed(lambda: lab.run_on(h.name, ['true']), args.rounds * 5))}")
    finally:
        t0 = time.perf_counter()
        lab.destroy()
        print(f"destroy {args.hosts} hosts: {time.perf_counter() - t0:6.2f} s")
        shutil.rmtree(args.state, ignore_errors=True)   # the bench's own state dir


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# PID 1 of one lab host.
#
# lab/hosts.py starts this as
#   ip netns exec NAME unshare --mount --uts --pid --fork --mount-proc \
#       --propagation private bash host_init.sh NAME ADDRESS HOST_DIR FILESTORE PUBKEY ROOT_LOWER
# so it already runs in the host's own network, mount, UTS and PID
# namespaces. It builds the host's private view of the filesystem, then
# supervises sshd in the foreground. Every SSH session (and every
# `hosts.run_on`, which nsenters this process's namespaces) lands in that view.
#
#   NAME       host name (UTS hostname, /etc/hostname)
#   ADDRESS    the host's lab IPv4 address (sshd listens there)
#   HOST_DIR   per-host state dir: overlay upper/work dirs, ssh host keys
#   FILESTORE  shared dir bind-mounted at /var/opt/filestore on every host
#   PUBKEY     the lab client public key, authorised for root
#   ROOT_LOWER lower layer for /root: a pristine Debian root home (see below)
#
# Nothing here touches the root namespace: the mount namespace is private, so
# all mounts below vanish with the last process of this host.
set -euo pipefail

if [[ $# -ne 6 ]]; then
    echo "usage: $0 NAME ADDRESS HOST_DIR FILESTORE PUBKEY ROOT_LOWER" >&2
    exit 2
fi
name=$1 address=$2 host_dir=$3 filestore=$4 pubkey_file=$5 root_lower=$6

if [[ $$ -ne 1 ]]; then
    echo "host_init.sh: must be PID 1 of a new PID namespace (got $$)" >&2
    exit 2
fi
log() { echo "[$(date +%T.%3N)] $name init: $*"; }
cd /
# A real init's umask, not the caller's: everything below, sshd, every session
# and every daemon started in the host inherit it. Under a caller's umask 077
# the hosts' /etc and /var came out 0700 and MariaDB failed with "Permission
# denied".
umask 022

# --- Per-host overlays ------------------------------------------------------
# lowerdir is the real directory (so packages' default files are all there),
# upper/work live in HOST_DIR. Overlay refuses an upper/work dir inside its
# own lowerdir, which is why HOST_DIR must not be under any of these trees.
# Mounts that sit *below* these dirs in the root namespace are not part of the
# overlay's lower layer; this machine has none there.
# /root is the exception: its lower layer is a pristine Debian root home, not
# this machine's /root, whose .bashrc puts pyenv/cargo first in PATH (so
# `python3` over SSH would not be Debian's, with python3-pymysql) and which
# holds the machine owner's tool configs.
for dir in /etc /var /opt /srv /root /home; do
    layer=${dir#/}
    lower=$dir
    [[ $dir == /root ]] && lower=$root_lower
    mkdir -p "$host_dir/upper/$layer" "$host_dir/work/$layer"
    # The root of an overlay shows its upper dir's mode and owner, so they must
    # be the lower dir's (also repairs upper dirs made under an older umask).
    chmod --reference="$lower" "$host_dir/upper/$layer"
    chown --reference="$lower" "$host_dir/upper/$layer"
    mount -t overlay "ox-lab-$name-$layer" \
        -o "lowerdir=$lower,upperdir=$host_dir/upper/$layer,workdir=$host_dir/work/$layer" "$dir"
done

# --- Shared filestore ---------------------------------------------------------
# Stand-in for the NFS-mounted OX filestore: this kernel has no NFS client
# (nothing nfs in /proc/filesystems), so a plain directory shared by bind
# mount gives every host the same /var/opt/filestore.
install -d -m 0755 /var/opt/filestore
mount --bind "$filestore" /var/opt/filestore

# --- SSH material (read from HOST_DIR before /tmp may be hidden below) -------
# Host keys are generated per host by hosts.py and kept in HOST_DIR, so they
# survive a restart of the host. They go into the host's own /etc/ssh.
install -d -m 0755 /etc/ssh
for type in ed25519 ecdsa; do
    install -m 0600 "$host_dir/ssh/ssh_host_${type}_key" "/etc/ssh/ssh_host_${type}_key"
    install -m 0644 "$host_dir/ssh/ssh_host_${type}_key.pub" "/etc/ssh/ssh_host_${type}_key.pub"
done
install -d -m 0700 /root/.ssh
pubkey=$(cat "$pubkey_file")
touch /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
# Append rather than overwrite: the program under test may add keys of its own.
grep -qxF "$pubkey" /root/.ssh/authorized_keys || echo "$pubkey" >>/root/.ssh/authorized_keys

# A complete config of our own (no Include of the machine's sshd_config.d, so
# settings of the machine's sshd cannot leak into the lab).
cat >/etc/ssh/sshd_config <<EOF
# Written by ox-estate lab/host_init.sh for lab host $name.
ListenAddress $address:22
# Loopback too, as a real host would answer 'ssh localhost'.
ListenAddress 127.0.0.1:22
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM stack in the lab: it would only slow logins and needs a systemd-ish
# session setup that is not here.
UsePAM no
# Key files may live in odd places (a temp state dir); do not insist on
# Debian-perfect ownership and modes.
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
# Debian's default: only the locale survives the trip. Anything else a client
# sends (e.g. pulumi-command 'environment') is dropped, as on a real host.
AcceptEnv LANG LC_*
# Pulumi opens many sessions at once; Debian's 10:30:100 would randomly
# refuse some of them while they are still unauthenticated.
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
chmod 0644 /etc/ssh/sshd_config   # kept its mode if an older run wrote it 0600

# --- Identity -----------------------------------------------------------------
echo "$name" >/proc/sys/kernel/hostname      # UTS namespace: this host only
echo "$name" >/etc/hostname

# --- Private /run, /tmp, /dev/shm ---------------------------------------------
# The new mount namespace started as a copy of the root one, including the
# nsfs bind mounts under /run/netns of every host that existed then. Those
# would keep other hosts' network namespaces (and their veths) alive after
# they are destroyed, so drop every mount under /run and /tmp first.
findmnt -rn -o TARGET | grep -E '^/(run|tmp)/' | sort -r | while read -r target; do
    umount -l "$target" 2>/dev/null || true
done
mount -t tmpfs -o mode=0755,nosuid,nodev ox-lab-run /run
mount -t tmpfs -o mode=1777,nosuid,nodev ox-lab-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev ox-lab-shm /dev/shm
install -d -m 0755 /run/sshd     # sshd's privilege separation directory
install -d -m 1777 /run/lock     # /var/lock points here (apache2, init scripts)

# --- Supervise sshd -----------------------------------------------------------
# As PID 1 this shell also reaps every orphan of the host (daemons that
# double-fork end up as our children), and on SIGTERM takes the whole host
# down: kill -1 from PID 1 reaches every process of this PID namespace and
# nothing outside it. When this shell exits the kernel SIGKILLs the rest.
sshd_pid=
shutdown() {
    log "stopping"
    kill -TERM -1 2>/dev/null || true
    for _ in $(seq 30); do              # up to ~3 s for daemons to stop cleanly
        kill -0 -1 2>/dev/null || break
        sleep 0.1
    done
    exit 0
}
trap shutdown TERM INT

/usr/sbin/sshd -t -f /etc/ssh/sshd_config   # fail loudly on a bad config
log "up (pid namespace init), sshd on $address:22"
fast_failures=0
while :; do
    started=$SECONDS
    /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config &
    sshd_pid=$!
    rc=0
    wait "$sshd_pid" || rc=$?
    # sshd went away (crashed, or someone restarted ssh inside the host).
    # Restart it, backing off if it keeps dying at once (e.g. the port is
    # taken by an sshd the host started itself).
    if ((SECONDS - started < 5)); then
        fast_failures=$((fast_failures + 1))
    else
        fast_failures=0
    fi
    delay=$((fast_failures < 5 ? 1 : 10))
    log "sshd exited (rc=$rc); restarting in ${delay}s"
    sleep "$delay" &
    wait $! || true
done

#!/usr/bin/env bash
# Install the Debian packages the lab needs (lab/packages.txt) on this machine.
#
# Idempotent: packages already installed are skipped, and `apt-get update`
# runs only when something is missing (and then exactly once).
# Run as root on Debian 12. Lab hosts share /usr with this machine, so this
# is the only place software gets installed for them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="${1:-$here/packages.txt}"

if [[ $(id -u) -ne 0 ]]; then
    echo "install-packages.sh: must run as root" >&2
    exit 1
fi

# Package maintainer scripts start their service (mariadb, apache2, haproxy,
# ssh, nfs-ganesha) in the *root* namespace unless invoke-rc.d is told not
# to. Those daemons belong inside the lab hosts only, so install a
# policy-rc.d that denies every start (exit 101 = "action forbidden").
# If the machine already has one (container images usually do) we leave it
# alone: it was put there on purpose, and the usual one already exits 101.
policy=/usr/sbin/policy-rc.d
if [[ -e $policy ]]; then
    echo "policy-rc.d already present, leaving it: $(grep -m1 -E '^exit' "$policy" || echo '(no plain exit line)')"
else
    echo "installing $policy (exit 101) so package installs start no services"
    printf '#!/bin/sh\n# Installed by ox-estate lab/install-packages.sh: services run only\n# inside lab hosts, never in the root namespace.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
fi

# Read the list, dropping comments and blank lines.
mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')

missing=()
for pkg in "${wanted[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    if [[ $status != installed ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all ${#wanted[@]} lab packages already installed"
    exit 0
fi

echo "installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

# Belt and braces for systemd hosts, where the units the packages just
# enabled would start at the next boot in the root namespace. Disable only
# services of packages this run installed, and never ssh (that may be how
# the operator reaches the machine). Where PID 1 is not systemd (this lab
# machine) there is nothing to do.
if [[ "$(ps -p 1 -o comm= 2>/dev/null)" == systemd ]]; then
    for pkg in "${missing[@]}"; do
        case $pkg in
            mariadb-server) unit=mariadb ;;
            apache2 | haproxy | nfs-ganesha) unit=$pkg ;;
            *) continue ;;
        esac
        echo "disabling $unit in the root namespace (lab hosts run their own)"
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi
echo "lab packages installed"

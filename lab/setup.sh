#!/usr/bin/env bash
# Set up this checkout on a Debian 12 machine, as root: the Debian packages the lab and the
# tests need (lab/packages.txt), and the Python venv (.venv) from requirements.txt.
# Idempotent: a second run installs nothing that is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash lab/install-packages.sh

# A venv needs Debian's python3-venv where python3 is Debian's own.
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
echo "setup done: .venv ready, lab packages installed"

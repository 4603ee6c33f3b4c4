#!/usr/bin/env bash
# Installs what Ambit's build and tests need, idempotently, and says what it
# did. Safe to run again and again: it only installs what is missing.
#
#   - Rust (cargo) and Go must already be there: Debian's Go is too old for
#     Kubernetes 1.36, so we do not try to install it.
#   - Debian packages listed in scripts/setup-deps.txt (apt, as root).
#   - Python packages listed in scripts/setup-pip.txt (pip), and
#     python-dbusmock (scripts/setup-dbusmock.txt) in a virtualenv of Debian's
#     python3, for the Bluetooth handler's tests.
#   - The control plane's binaries (etcd, Kubernetes, KWOK) and Helm, built
#     from their Go modules into ~/.cache/ambit, once per version.
#   - The demo's (and the mqtt and mdns tests') device peers: Eclipse Tahu's
#     Sparkplug client (npm) and python-zeroconf (a venv), into ~/.cache/ambit.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
need() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required: $2" >&2; exit 1; }
}

need cargo "install Rust from https://rustup.rs"
need go "install Go 1.26 or newer from https://go.dev/dl (Debian's is too old for Kubernetes 1.36)"
need python3 "install Python 3.11 or newer"
need npm "install Node.js 18 or newer with npm (the mqtt tests' and the demo's Sparkplug edge node)"

# Debian packages.
missing=()
if [ -s scripts/setup-deps.txt ]; then
  while read -r pkg _; do
    [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < scripts/setup-deps.txt
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages (pip only installs what is missing).
if [ -s scripts/setup-pip.txt ]; then
  say "Python packages from scripts/setup-pip.txt"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/setup-pip.txt
fi

# python-dbusmock, for the Bluetooth handler's tests and the mocked BLE sensor
# (examples/bluetooth). It needs PyGObject and dbus-python; PyPI's would have to
# compile against libgirepository and libdbus, so it runs on Debian's python3
# with Debian's python3-gi and python3-dbus, in a virtualenv that sees them.
# The tests find it here, or at $AMBIT_DBUSMOCK_PYTHON.
dbusmock_venv="${XDG_CACHE_HOME:-$HOME/.cache}/ambit/dbusmock-venv"
if [ ! -x "$dbusmock_venv/bin/python3" ]; then
  say "virtualenv for python-dbusmock: $dbusmock_venv"
  /usr/bin/python3 -m venv --system-site-packages --without-pip "$dbusmock_venv"
fi
say "Python packages from scripts/setup-dbusmock.txt (into $dbusmock_venv)"
"$dbusmock_venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r scripts/setup-dbusmock.txt

# The control plane: built once per version, then reused from the cache.
say "control plane binaries (built from Go modules on first use, then cached)"
cargo run --quiet --locked -p ambit-tests --bin controlplane-bench -- 0

# Helm, for the chart's tests (deploy/helm/ambit): built from its Go module
# once per version into ~/.cache/ambit/helm, then reused.
say "Helm (built from its Go module on first use, then cached)"
cargo run --quiet --locked -p ambit-tests --bin ambit-helm -- version --short

# The Sparkplug B edge node's client (npm sparkplug-client) and the mDNS
# responder's python-zeroconf (a venv), pinned in tests/src/peers, installed
# once into ~/.cache/ambit/{npm,venv}; the demo and the tests use them there.
say "the demo's Sparkplug edge node and mDNS responder (npm and pip, cached)"
cargo run --quiet --locked -p ambit-tests --bin ambit-demo -- --prepare

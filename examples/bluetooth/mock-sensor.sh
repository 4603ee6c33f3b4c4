#!/usr/bin/env bash
# Starts a mocked BLE sensor (python-dbusmock's bluez5 template on a private
# D-Bus bus) and prints the bus address to use as DBUS_SYSTEM_BUS_ADDRESS.
# Runs until Ctrl-C or SIGTERM. Arguments go to mock-sensor.py (--help).
# Needs `make setup` (dbus-daemon, and python-dbusmock in its virtualenv).
set -euo pipefail
python="${AMBIT_DBUSMOCK_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/ambit/dbusmock-venv/bin/python3}"
if ! "$python" -c 'import dbusmock, dbus' 2>/dev/null; then
  echo "error: $python cannot import dbusmock: run \`make setup\` (scripts/setup.sh)" >&2
  exit 1
fi
exec "$python" "$(dirname "$0")/mock-sensor.py" "$@"

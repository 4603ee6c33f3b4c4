#!/usr/bin/env bash
# Runs the scale benches' sweeps behind the charts in docs/benchmarks.md,
# into one JSON Lines file, then draws the charts (scripts/plot-benchmarks.py).
#
#   scripts/bench-sweep.sh              # the sweeps (an hour or more), then the charts
#   scripts/bench-sweep.sh --plot-only  # only the charts, from the file a sweep left
#
# The sweeps, one bench run each (release builds, a fresh control plane each):
#   - agent, scenario A: AMBIT_BENCH_DEVICES = each of $AMBIT_SWEEP_DEVICES
#   - agent, scenario B: AMBIT_BENCH_NODES = each of $AMBIT_SWEEP_NODES, with
#     $AMBIT_SWEEP_B_DEVICES shared devices
#   - controller: AMBIT_BENCH_NODES = each of $AMBIT_SWEEP_CONTROLLER_NODES, with
#     $AMBIT_SWEEP_DEVICES_PER_NODE Devices per node
#
# Environment (default):
#   AMBIT_SWEEP_OUT                the JSON Lines file, started anew (target/bench-sweep.jsonl)
#   AMBIT_SWEEP_PLOTS              where the PNGs go (docs/plots)
#   AMBIT_SWEEP_DEVICES            scenario A's device counts ("100 300 1000")
#   AMBIT_SWEEP_NODES              scenario B's node counts ("2 5 10")
#   AMBIT_SWEEP_B_DEVICES          scenario B's devices (1000)
#   AMBIT_SWEEP_CONTROLLER_NODES   the controller's node counts ("5 10 20")
#   AMBIT_SWEEP_DEVICES_PER_NODE   the controller's Devices per node (100)
#   AMBIT_BENCH_RUNS               runs per agent scenario (1)
#   AMBIT_BENCH_QUIET_SECS         the quiet windows (20: short; the benches' own defaults
#                                  are 300 and 60, for the steady-state figures)
#   AMBIT_PLOT_VENV                the virtualenv with scripts/plot-requirements.txt
#                                  (~/.cache/ambit/plot-venv; made when missing)
# Other AMBIT_BENCH_* variables (AMBIT_BENCH_IDLE_SECS, AMBIT_AGENT_BIN, ...) pass
# through to the benches.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

plot_only=false
case "${1:-}" in
  "") ;;
  --plot-only) plot_only=true ;;
  *) echo "usage: $0 [--plot-only]" >&2; exit 2 ;;
esac

out="${AMBIT_SWEEP_OUT:-target/bench-sweep.jsonl}"
plots="${AMBIT_SWEEP_PLOTS:-docs/plots}"
venv="${AMBIT_PLOT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ambit/plot-venv}"
export AMBIT_BENCH_RUNS="${AMBIT_BENCH_RUNS:-1}"
export AMBIT_BENCH_QUIET_SECS="${AMBIT_BENCH_QUIET_SECS:-20}"

if ! $plot_only; then
  mkdir -p "$(dirname "$out")"
  # cargo runs a bench in its package's folder: the benches get an absolute path.
  out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
  : > "$out"
  export AMBIT_BENCH_JSON="$out"

  say "building the benches (release)"
  cargo bench -p ambit-agent --bench scale --no-run
  cargo bench -p ambit-controller --bench scale --no-run
  # Scenario B's controller (it folds the agents' reports into the Devices).
  cargo build --release -p ambit-controller

  for devices in ${AMBIT_SWEEP_DEVICES:-100 300 1000}; do
    say "agent, scenario A: $devices devices"
    AMBIT_BENCH_SCENARIOS=a AMBIT_BENCH_DEVICES="$devices" \
      cargo bench -p ambit-agent --bench scale
  done
  for nodes in ${AMBIT_SWEEP_NODES:-2 5 10}; do
    say "agent, scenario B: $nodes nodes, ${AMBIT_SWEEP_B_DEVICES:-1000} shared devices"
    AMBIT_BENCH_SCENARIOS=b AMBIT_BENCH_NODES="$nodes" AMBIT_BENCH_DEVICES="${AMBIT_SWEEP_B_DEVICES:-1000}" \
      cargo bench -p ambit-agent --bench scale
  done
  for nodes in ${AMBIT_SWEEP_CONTROLLER_NODES:-5 10 20}; do
    say "controller: $nodes nodes × ${AMBIT_SWEEP_DEVICES_PER_NODE:-100} Devices"
    AMBIT_BENCH_NODES="$nodes" AMBIT_BENCH_DEVICES_PER_NODE="${AMBIT_SWEEP_DEVICES_PER_NODE:-100}" \
      cargo bench -p ambit-controller --bench scale
  done
  say "figures in $out ($(wc -l < "$out") lines)"
fi

if [ ! -x "$venv/bin/python3" ]; then
  say "virtualenv for the charts: $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r scripts/plot-requirements.txt
say "charts into $plots"
"$venv/bin/python3" scripts/plot-benchmarks.py --out "$plots" "$out"

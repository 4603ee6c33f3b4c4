#!/usr/bin/env bash
# Prints the path of a pinned cargo tool's binary, installing it once per
# version into $AMBIT_CACHE_DIR/tools (default ~/.cache/ambit/tools):
#
#   scripts/cargo-tool.sh CRATE VERSION   # e.g. cargo-deny 0.20.2
#
# The install goes into a fresh folder renamed into place only when it is
# complete, under a lock, so two runs at once install it once and a broken
# install is never taken for a good one. Progress goes to stderr.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 CRATE VERSION" >&2; exit 2; }
crate=$1 version=$2
cache=${AMBIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ambit}
tools=$cache/tools/$crate-$version
binary=$tools/bin/$crate
if [ ! -x "$binary" ]; then
  mkdir -p "$cache/tools"
  exec 9>"$cache/tools/.install.lock"
  flock 9
  if [ ! -x "$binary" ]; then
    echo "==> installing $crate $version into $tools (once)" >&2
    started=$SECONDS
    staging=$(mktemp -d "$cache/tools/.installing-XXXXXX")
    cargo install --quiet --locked --root "$staging" --version "$version" "$crate" >&2 ||
      { rm -rf "$staging"; echo "cargo-tool.sh: cargo install $crate $version failed" >&2; exit 1; }
    rm -rf "$tools"
    mv "$staging" "$tools"
    echo "==> installed $crate in $((SECONDS - started)) s" >&2
  fi
  exec 9>&-
fi
echo "$binary"

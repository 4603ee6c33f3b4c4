#!/usr/bin/env bash
# Builds what a user downloads for one version of Ambit, into one folder
# (`make release`; docs/release.md):
#
#   ambit-<chart version>.tgz   the Helm chart, packaged (the tests' Helm)
#   images/<name>.oci.tar       the images, as `make images` builds them
#   sbom/<name>.cdx.json        an SBOM per image, CycloneDX 1.5 JSON
#                               (scripts/sbom.py: crates by cargo-cyclonedx,
#                               Debian packages by dpkg)
#   LICENSE, CHANGELOG.md
#   SHA256SUMS                  every other file's, sorted, `sha256sum -c` reads it
#
#   scripts/release.sh [--profile release|debug] [--out DIR]
#
# --profile debug packs the debug binaries already built (what the tests
# do); the default builds release binaries. DIR (default
# target/release-artifacts) must be empty or a folder this script made;
# it is emptied first. cargo-cyclonedx, pinned, is installed once into
# $AMBIT_CACHE_DIR/tools (default ~/.cache/ambit/tools) and reused: the
# first run spends about 4 minutes on 2 cores building it.
set -euo pipefail
cd "$(dirname "$0")/.."

CYCLONEDX_VERSION=0.5.9

say() { printf '==> %s\n' "$*"; }
fail() { echo "release.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 [--profile release|debug] [--out DIR]" >&2; exit 2; }

profile=release
out=target/release-artifacts
while [ $# -gt 0 ]; do
  case $1 in
    --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    *) usage ;;
  esac
done
case $profile in release | debug) ;; *) usage ;; esac

for tool in cargo python3 dpkg-query sha256sum flock; do
  command -v "$tool" >/dev/null || fail "$tool not found (\`make setup\` installs what Ambit needs)"
done

# One date for the images, the chart and the SBOMs: the commit's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "release.sh: warning: the work tree has uncommitted changes: this is not exactly $revision" >&2
fi

# The chart deploys the images of its appVersion: it must be the workspace's.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
chart_version=$(sed -n 's/^version: *//p' deploy/helm/ambit/Chart.yaml)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' deploy/helm/ambit/Chart.yaml)
[ -n "$version" ] || fail "no [workspace.package] version in Cargo.toml"
[ "$app_version" = "$version" ] ||
  fail "deploy/helm/ambit/Chart.yaml: appVersion $app_version, but the workspace (and so the images) is $version"

mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -n "$(ls -A "$out")" ]; then
  [ -f "$out/SHA256SUMS" ] || fail "$out is not empty and not a release folder (no SHA256SUMS): refusing to empty it"
  find "$out" -mindepth 1 -delete
fi
say "Ambit $version ($revision, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, $profile binaries) into $out"
started=$SECONDS

# cargo-cyclonedx, installed once per version into the cache.
cyclonedx=$(scripts/cargo-tool.sh cargo-cyclonedx "$CYCLONEDX_VERSION") ||
  fail "cannot install cargo-cyclonedx $CYCLONEDX_VERSION"

say "chart: helm package deploy/helm/ambit"
cargo run --quiet --locked -p ambit-tests --bin ambit-helm -- \
  package deploy/helm/ambit --destination "$out" >/dev/null
chart=$out/ambit-$chart_version.tgz
[ -f "$chart" ] || fail "helm package did not write $chart"

say "images: make images PROFILE=$profile"
step=$SECONDS
"${MAKE:-make}" --no-print-directory images PROFILE="$profile" IMAGES_OUT="$out/images"
say "images built in $((SECONDS - step)) s"

say "SBOMs: scripts/sbom.py"
step=$SECONDS
python3 scripts/sbom.py --cargo-cyclonedx "$cyclonedx" --out "$out/sbom" "$out"/images/*.oci.tar
say "SBOMs written in $((SECONDS - step)) s"

cp LICENSE CHANGELOG.md "$out/"

# Checksums last, over every file but itself, by path relative to $out.
sums=$(cd "$out" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
  xargs -d '\n' sha256sum --)
printf '%s\n' "$sums" >"$out/SHA256SUMS"

say "release $version in $((SECONDS - started)) s: $out"
(cd "$out" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' du -h --apparent-size --)
echo "verify: (cd $out && sha256sum -c SHA256SUMS)"

#!/usr/bin/env bash
# Collects the root filesystem of one of Ambit's images into OUT: the given
# binaries in /usr/local/bin (their DWARF debug info stripped, symbols kept:
# a fifth of the size, backtraces still name functions), every shared
# library `ldd` says they load (at
# the path ldd names, so the dynamic loader finds it without ld.so.cache),
# the CA bundle, /etc/passwd and /etc/group with the non-root user `ambit`
# (65532:65532), and /tmp (1777).
#
#   deploy/images/rootfs.sh OUT BINARY...
#   deploy/images/rootfs.sh OUT --busybox BUSYBOX     (the testbox image)
#
# --busybox installs a static busybox at /bin/busybox with a symlink per
# applet the tests use, instead of /usr/local/bin.
#
# Both ways of building an image run this script: a Containerfile's build
# stage, and `make images` (deploy/images/build.py) on the host, so both
# give the same files. Modes are set explicitly (the umask does not leak in);
# ownership and timestamps are left to the image builder, which makes
# every entry root's and dates it SOURCE_DATE_EPOCH.
set -euo pipefail

usage() {
  echo "usage: $0 OUT BINARY... | $0 OUT --busybox BUSYBOX" >&2
  exit 2
}
[ $# -ge 2 ] || usage
out=$1
shift
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "rootfs.sh: $out is not empty" >&2
  exit 1
fi

# The applets the testbox offers (trap is a builtin of its shell).
applets=(sh env ls cat sleep test head od dd grep wc id stat printf echo wget nc true false)

dir() { install -d -m "${2:-0755}" "$out/$1"; }
dir .
dir etc
dir etc/ssl
dir etc/ssl/certs
dir tmp 1777

# Installs file $1 at $2 in the image, creating its parents.
put() {
  local parent
  parent=$(dirname "$2")
  install -d -m 0755 "$out$parent"
  install -m "$3" "$1" "$out$2"
}

# The libraries `ldd` lists for $1, one absolute path a line: "name => path
# (address)" lines and the loader's own "path (address)" line; the vDSO is
# the kernel's. A static binary lists none.
libraries() {
  local listing
  if ! listing=$(ldd "$1" 2>&1); then
    case $listing in
      *"not a dynamic executable"*) return 0 ;;
      *) echo "rootfs.sh: ldd $1: $listing" >&2; return 1 ;;
    esac
  fi
  if grep -q 'not found' <<<"$listing"; then
    echo "rootfs.sh: $1 needs libraries this machine lacks:" >&2
    grep 'not found' <<<"$listing" >&2
    return 1
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$listing"
}

binaries=()
if [ "$1" = --busybox ]; then
  [ $# -eq 2 ] || usage
  put "$2" /bin/busybox 0755
  for applet in "${applets[@]}"; do
    ln -s busybox "$out/bin/$applet"
  done
  binaries+=("$2")
else
  for bin in "$@"; do
    put "$bin" "/usr/local/bin/$(basename "$bin")" 0755
    strip --strip-debug "$out/usr/local/bin/$(basename "$bin")"
    binaries+=("$bin")
  done
fi

for bin in "${binaries[@]}"; do
  libs=$(libraries "$bin")
  for lib in $libs; do
    case $lib in
      */ld-linux*) mode=0755 ;;  # the loader can be run as a program
      *) mode=0644 ;;
    esac
    [ -e "$out$lib" ] || put "$lib" "$lib" "$mode"
  done
  names=$(for lib in $libs; do basename "$lib"; done | xargs)
  echo "rootfs.sh: $(basename "$bin") loads ${names:-nothing (static)}" >&2
done

install -m 0644 /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' \
  'root:x:0:0:root:/root:/sbin/nologin' \
  'ambit:x:65532:65532:ambit:/nonexistent:/sbin/nologin' >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'ambit:x:65532:' >"$out/etc/group"
chmod 0644 "$out/etc/passwd" "$out/etc/group"

#!/usr/bin/env bash
# standalone.sh MINOR ARCH: CPython MINOR (3.12, 3.13) for ARCH (amd64, arm64), the
# python-build-standalone distribution the Go module github.com/kluctl/go-embed-python embeds
# (from the Go module proxy: python.org and PyPI are out of reach here), unpacked by
# hack/pythondist with its shared library's debug sections stripped (204 MB -> 39 MB) and its
# standard library compiled to bytecode, and prints the folder, the tree the Python images put at /var/lang:
#   $KLAMBDA_CACHE/python-standalone/<module version>-linux-ARCH/{bin/python3.X,lib/...}
# Kept once complete. Stripping arm64 needs binutils-aarch64-linux-gnu (Debian).
set -euo pipefail
self=$(readlink -f "$0")
MINOR=${1:?usage: standalone.sh MINOR ARCH}
ARCH=${2:?usage: standalone.sh MINOR ARCH}
case $MINOR in
3.12) version=v0.0.0-3.12.3-20240415-1 ;;
3.13) version=v0.0.0-3.13.1-20241219-1 ;;
*) echo "standalone.sh: MINOR $MINOR: want 3.12 or 3.13" >&2; exit 1 ;;
esac
case $ARCH in
amd64) strip=strip ;;
arm64) strip=aarch64-linux-gnu-strip ;;
*) echo "standalone.sh: ARCH $ARCH: want amd64 or arm64" >&2; exit 1 ;;
esac
command -v "$strip" >/dev/null || { echo "standalone.sh: $strip is missing (apt-get install binutils$([ "$ARCH" = arm64 ] && echo -aarch64-linux-gnu))" >&2; exit 1; }
CACHE=${KLAMBDA_CACHE:-$HOME/.cache/klambda}/python-standalone
dir=$CACHE/${version#v0.0.0-}-linux-$ARCH
if [ ! -f "$dir/.complete" ]; then
	cd "$(dirname "$0")/../../.."
	module=github.com/kluctl/go-embed-python@$version
	# Outside klambda's module: the download is no dependency of klambda's.
	moddir=$(cd / && GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$moddir/python/internal/data/linux-$ARCH" ] || { echo "standalone.sh: $module has no linux-$ARCH distribution" >&2; exit 1; }
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	go build -o "$tmp/pythondist" ./hack/pythondist
	rm -rf "$dir"
	mkdir -p "$CACHE"
	"$tmp/pythondist" -from "$moddir/python/internal/data/linux-$ARCH" -to "$dir"
	"$strip" --strip-debug "$dir/lib/libpython$MINOR.so.1.0"
	# go-embed-python leaves out the standard library's bytecode: without it every cold start
	# compiles what it imports (urllib.request: 5 s of CPU under qemu-user, 1 s with it).
	# Bytecode is the same on every architecture: this machine's interpreter of MINOR writes
	# it, checked by nothing but its own hash (image layers do not keep the sources' mtimes).
	hostarch=$([ "$(uname -m)" = aarch64 ] && echo arm64 || echo amd64)
	if [ "$ARCH" = "$hostarch" ]; then
		python=$dir/bin/python$MINOR
	else
		python=$("$self" "$MINOR" "$hostarch")/bin/python$MINOR
	fi
	"$python" -m compileall -q -j0 --invalidation-mode unchecked-hash "$dir/lib/python$MINOR" >/dev/null
	if [ "$ARCH" = "$hostarch" ]; then
		"$python" -c 'import json, ssl, urllib.request' ||
			{ echo "standalone.sh: $python does not run" >&2; exit 1; }
	fi
	touch "$dir/.complete"
fi
echo "$dir"

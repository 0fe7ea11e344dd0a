#!/usr/bin/env bash
# Builds CoreDNS, the local cluster's DNS add-on, from the Go module proxy once per version,
# into $KLAMBDA_CACHE/coredns-<version>/ (Debian has no coredns package). hack/cluster/coredns
# is a module of its own requiring github.com/coredns/coredns at the pinned version, with
# only the plugins the cluster's Corefile uses (see its main.go). Prints the binary's path on
# its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$here/coredns/go.mod")
[ -n "$version" ] || { echo "no CoreDNS version in $here/coredns/go.mod" >&2; exit 1; }
cache=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
bin="$cache/coredns-$version"
mkdir -p "$bin"

exec 9>"$bin/.lock"
flock 9
if [ ! -x "$bin/coredns" ]; then
	echo "building CoreDNS $version (first time only; ~7-10 min)" >&2
	(cd "$here/coredns" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin/coredns.tmp" .)
	mv "$bin/coredns.tmp" "$bin/coredns"
fi
echo "$bin/coredns"

#!/usr/bin/env bash
# Builds CoreDNS, the local cluster's DNS add-on, from the Go module proxy once per version,
# into $KLAMBDA_CACHE/coredns-<version>/ (Debian has no coredns package). hack/kube/coredns is
# its main, with only the plugins the cluster's Corefile uses; hack/kube/go.mod pins the
# version, beside the Kubernetes components and kube-router, whose libraries it shares. Prints the binary's path on
# its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mod=$here/../kube # CoreDNS's module: the Kubernetes components' (hack/kube/go.mod)
version=$(awk '$1 == "github.com/coredns/coredns" {print $2; exit}' "$mod/go.mod")
[ -n "$version" ] || { echo "no CoreDNS version in $mod/go.mod" >&2; exit 1; }
cache=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
bin="$cache/coredns-$version"
mkdir -p "$bin"

exec 9>"$bin/.lock"
flock 9
# Built again when the module's versions change.
stamp=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/coredns/main.go" | sha256sum | cut -c1-16)
if [ ! -x "$bin/coredns" ] || [ "$(cat "$bin/.stamp" 2>/dev/null)" != "$stamp" ]; then
	echo "building CoreDNS $version (first time only; seconds after the Kubernetes components, minutes without)" >&2
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin/coredns.tmp" ./coredns)
	mv "$bin/coredns.tmp" "$bin/coredns"
	echo "$stamp" >"$bin/.stamp"
fi
echo "$bin/coredns"

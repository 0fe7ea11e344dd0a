#!/usr/bin/env bash
# Builds kube-router (only its network policy controller runs here) from the Go module proxy
# once per version, into $KLAMBDA_CACHE/kube-router-<version>/. The local cluster's bridge
# CNI does not enforce NetworkPolicy; kube-router's controller does, with iptables and ipset
# on the node, next to any CNI. (sigs.k8s.io/kube-network-policies, the first choice, needs
# the kernel's nft "queue" expression, CONFIG_NFT_QUEUE, which this VM's kernel lacks; see
# README.md.) Prints the binary's path on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mod=$here/../kube # kube-router's module: the Kubernetes components' (hack/kube/go.mod)
version=$(awk '$1 == "github.com/cloudnativelabs/kube-router/v2" {print $2; exit}' "$mod/go.mod")
[ -n "$version" ] || { echo "no kube-router version in $mod/go.mod" >&2; exit 1; }
cache=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
bin="$cache/kube-router-$version"
mkdir -p "$bin"

exec 9>"$bin/.lock"
flock 9
# Built again when the module's versions change.
stamp=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/kuberouter.go" | sha256sum | cut -c1-16)
if [ ! -x "$bin/kube-router" ] || [ "$(cat "$bin/.stamp" 2>/dev/null)" != "$stamp" ]; then
	echo "building kube-router $version (first time only; about a minute after the Kubernetes components)" >&2
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath -o "$bin/kube-router.tmp" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
	mv "$bin/kube-router.tmp" "$bin/kube-router"
	echo "$stamp" >"$bin/.stamp"
fi
echo "$bin/kube-router"

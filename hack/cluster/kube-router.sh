#!/usr/bin/env bash
# Builds kube-router (only its network policy controller runs here) from the Go module proxy
# once per version, into $KLAMBDA_CACHE/kube-router-<version>/. The local cluster's bridge
# CNI does not enforce NetworkPolicy; kube-router's controller does, with iptables and ipset
# on the node, next to any CNI. (sigs.k8s.io/kube-network-policies, the first choice, needs
# the kernel's nft "queue" expression, CONFIG_NFT_QUEUE, which this VM's kernel lacks; see
# README.md.) Prints the binary's path on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/cloudnativelabs/kube-router/v2" {print $3}' "$here/kube-router/go.mod")
[ -n "$version" ] || { echo "no kube-router version in $here/kube-router/go.mod" >&2; exit 1; }
cache=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
bin="$cache/kube-router-$version"
mkdir -p "$bin"

exec 9>"$bin/.lock"
flock 9
if [ ! -x "$bin/kube-router" ]; then
	echo "building kube-router $version (first time only; a few minutes)" >&2
	(cd "$here/kube-router" && CGO_ENABLED=0 go build -trimpath -o "$bin/kube-router.tmp" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
	mv "$bin/kube-router.tmp" "$bin/kube-router"
fi
echo "$bin/kube-router"

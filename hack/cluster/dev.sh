#!/usr/bin/env bash
# `make dev`: a local Kubernetes with klambda installed by its Helm chart and an example
# function invoked. Every step is idempotent; a second run reuses what is there.
#   CLUSTER=local (default)  start or reuse the cluster of up.sh
#   CLUSTER=existing         install into the cluster KUBECONFIG points at. Its nodes pull
#                            the images: REGISTRY=host[:port][/path] builds them here and
#                            pushes them there (REGISTRY_PLAIN_HTTP=true without TLS; the
#                            nodes must be able to pull from it), and the install names them
#                            by digest; IMAGE_VALUES names a values file of your own (applied
#                            after those); with neither, the chart's published images are used.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_time=$(date +%s)

CLUSTER=${CLUSTER:-local}
case $CLUSTER in local | existing) ;; *) die "CLUSTER must be local or existing, not $CLUSTER" ;; esac

# What the printed commands and the Node.js runtime images need: the AWS CLI, and the tools
# aws-lambda-ric's native addon builds with. The Node.js runtimes (hack/runtimes/node/node.sh:
# npm's Node.js 20 and 22 and the addon built against each, ~3 min once, mostly configure
# scripts) build in the background while the cluster's components compile; images.sh waits.
missing=()
[ -x /usr/bin/aws ] || missing+=(awscli) # the printed commands' /usr/bin/aws: Debian's AWS CLI v2
for tool in cmake autoconf automake make g++; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v libtoolize >/dev/null || missing+=(libtool)
command -v npm >/dev/null || missing+=(npm)
[ "$(id -u)" -ne 0 ] || debian_install "$LOGS/apt-dev.log" "${missing[@]}"
mkdir -p "$LOGS"
node_runtimes() {
	local major
	for major in 20 22; do
		"$REPO_ROOT/hack/runtimes/node/node.sh" "$major" amd64 >/dev/null || return 1
	done
}
node_log=$LOGS/node-runtimes.log
node_pid=
if ! { "$REPO_ROOT/hack/runtimes/node/node.sh" --installed 20 amd64 && "$REPO_ROOT/hack/runtimes/node/node.sh" --installed 22 amd64; } >/dev/null 2>&1; then
	log "building the Node.js 20 and 22 runtimes in the background (once; log: $node_log)"
	node_runtimes >"$node_log" 2>&1 &
	node_pid=$!
fi
wait_node_runtimes() {
	[ -n "$node_pid" ] || return 0
	if wait "$node_pid"; then
		log "Node.js runtimes built"
	else
		log "the Node.js runtimes did not build (see $node_log): no nodejs20.x/22.x images"
	fi
	node_pid=
}

case $CLUSTER in
local)
	[ -z "${REGISTRY:-}${REGISTRY_PLAIN_HTTP:-}" ] || die "REGISTRY and REGISTRY_PLAIN_HTTP are for CLUSTER=existing (the local cluster imports its images)"
	"$here/up.sh"
	export KUBECONFIG=$KUBECONFIG_FILE
	wait_node_runtimes
	"$here/images.sh"
	;;
existing)
	case ${REGISTRY_PLAIN_HTTP:-false} in
	true | false) ;;
	*) die "REGISTRY_PLAIN_HTTP must be true or false, not '$REGISTRY_PLAIN_HTTP'" ;;
	esac
	[ -n "${REGISTRY:-}" ] || [ "${REGISTRY_PLAIN_HTTP:-false}" = false ] || die "REGISTRY_PLAIN_HTTP is for REGISTRY (the registry the images are pushed to)"
	[ -n "${KUBECONFIG:-}" ] || die "CLUSTER=existing needs KUBECONFIG to point at the cluster"
	"$REPO_ROOT/hack/kube-binaries.sh" kubectl >/dev/null
	"$KUBE_BIN/kubectl" version >/dev/null 2>&1 || die "the cluster in KUBECONFIG=$KUBECONFIG is not reachable"
	if [ -n "${REGISTRY:-}" ]; then
		rm -rf "$D/images/pushed"
		wait_node_runtimes
		PUSH_TO=$REGISTRY "$here/images.sh"
		export REGISTRY_VALUES=$D/images/registry-values.yaml
		"$here/registry-values.sh" >"$REGISTRY_VALUES"
		log "images pushed to $REGISTRY; their values: $REGISTRY_VALUES"
	fi
	;;
esac
wait_node_runtimes

"$here/install.sh"
"$here/example.sh"
log "make dev took $(($(date +%s) - start_time))s"

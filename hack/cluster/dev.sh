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
case $CLUSTER in
local)
	[ -z "${REGISTRY:-}${REGISTRY_PLAIN_HTTP:-}" ] || die "REGISTRY and REGISTRY_PLAIN_HTTP are for CLUSTER=existing (the local cluster imports its images)"
	"$here/up.sh"
	export KUBECONFIG=$KUBECONFIG_FILE
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
		PUSH_TO=$REGISTRY "$here/images.sh"
		export REGISTRY_VALUES=$D/images/registry-values.yaml
		"$here/registry-values.sh" >"$REGISTRY_VALUES"
		log "images pushed to $REGISTRY; their values: $REGISTRY_VALUES"
	fi
	;;
*) die "CLUSTER must be local or existing, not $CLUSTER" ;;
esac

"$here/install.sh"
"$here/example.sh"
log "make dev took $(($(date +%s) - start_time))s"

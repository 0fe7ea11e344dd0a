#!/usr/bin/env bash
# `make dev`: a local Kubernetes with klambda installed by its Helm chart and an example
# function invoked. Every step is idempotent; a second run reuses what is there.
#   CLUSTER=local (default)  start or reuse the cluster of up.sh
#   CLUSTER=existing         install into the cluster KUBECONFIG points at (images must be
#                            pullable there: set IMAGE_VALUES to a values file naming them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_time=$(date +%s)

CLUSTER=${CLUSTER:-local}
case $CLUSTER in
local)
	"$here/up.sh"
	export KUBECONFIG=$KUBECONFIG_FILE
	"$here/images.sh"
	;;
existing)
	[ -n "${KUBECONFIG:-}" ] || die "CLUSTER=existing needs KUBECONFIG to point at the cluster"
	"$REPO_ROOT/hack/kube-binaries.sh" kubectl >/dev/null
	"$KUBE_BIN/kubectl" version >/dev/null 2>&1 || die "the cluster in KUBECONFIG=$KUBECONFIG is not reachable"
	;;
*) die "CLUSTER must be local or existing, not $CLUSTER" ;;
esac

"$here/install.sh"
"$here/example.sh"
log "make dev took $(($(date +%s) - start_time))s"

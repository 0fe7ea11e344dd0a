#!/usr/bin/env bash
# Installs (or upgrades) klambda with charts/klambda into namespace klambda-system, with the
# local images (hack/cluster/values-local.yaml) unless CLUSTER=existing, and waits for the
# manager (and activator, event source pollers) to be available.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_FILE}
NAMESPACE=${NAMESPACE:-klambda-system}
kubectl() { "$KUBE_BIN/kubectl" "$@"; }

[ -x "$HELM" ] || die "helm is missing at $HELM (make dev builds it)"
args=(upgrade --install klambda "$REPO_ROOT/charts/klambda" --namespace "$NAMESPACE" --create-namespace)
if [ "${CLUSTER:-local}" = local ]; then
	args+=(-f "$REPO_ROOT/hack/cluster/values-local.yaml")
	# The tags stay :dev, so roll the pods when an image's content changed.
	for c in manager activator eventsources; do
		if [ -f "$D/images/$c.digest" ]; then
			args+=(--set-string "$c.podAnnotations.klambda\.dev/image=$(cut -c8-19 "$D/images/$c.digest")")
		fi
	done
	# The node's code server (code.url in test/e2e and example.sh) is allowed explicitly:
	# values-local.yaml's egress policy denies the cluster's ranges.
	args+=(--set-json "config.egress.allowCIDRs=[\"$(node_ip)/32\"]")
	# The node's registry (up.sh) speaks plain HTTP: the manager resolves Image functions'
	# tags there over HTTP, as containerd pulls them (its hosts.toml).
	args+=(--set-json "config.plainHTTPRegistries=[\"$(node_ip):$REGISTRY_PORT\"]")
	# Image functions run in one container: the manager adds the runtime-shim its image
	# carries (images.sh) to their images and writes them to the node's registry, which
	# containerd pulls from (controllers/README.md, "The pod").
	arch=$(uname -m | sed 's/^aarch64$/arm64/')
	args+=(--set-json "config.imageFunctions={\"repository\":\"$(node_ip):$REGISTRY_PORT/klambda/derived\",\"shims\":{\"$arch\":\"/klambda/shims/$arch/runtime-shim\"}}")
fi
# CLUSTER=existing REGISTRY=...: the images dev.sh pushed, by digest (registry-values.sh).
[ -z "${REGISTRY_VALUES:-}" ] || args+=(-f "$REGISTRY_VALUES")
[ -z "${IMAGE_VALUES:-}" ] || args+=(-f "$IMAGE_VALUES")
if [ ! -f "$D/images/manager.digest" ] && [ "${CLUSTER:-local}" = local ]; then
	die "no manager image (cmd/manager does not build?); see the messages above"
fi

# Helm installs a chart's crds/ once and never upgrades them: apply the current ones, so
# a cluster made before a CRD change serves the new fields and enum values.
if [ "${CLUSTER:-local}" = local ]; then
	kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/charts/klambda/crds/" >/dev/null
fi
log "installing klambda with Helm (charts/klambda) into namespace $NAMESPACE"
"$HELM" "${args[@]}" >/dev/null

for d in manager activator eventsources code-store; do
	kubectl -n "$NAMESPACE" get deployment "klambda-$d" >/dev/null 2>&1 || continue
	if ! kubectl -n "$NAMESPACE" rollout status "deployment/klambda-$d" --timeout "${READY_TIMEOUT}s" >/dev/null; then
		kubectl -n "$NAMESPACE" get pods -l "app.kubernetes.io/component=$d" -o wide >&2 || true
		kubectl -n "$NAMESPACE" logs "deployment/klambda-$d" --tail 30 >&2 || true
		die "klambda-$d did not become available in ${READY_TIMEOUT}s (its pods and log are above)"
	fi
done
# The manager writes code to the store through its Service as soon as a Function exists: on
# the local cluster, wait until the Service answers as the registry (its endpoints in
# kube-proxy's rules), not only until the pod is Ready. A write before then left through the
# machine's egress, which answered for the store, and the first Function went Failed
# (InternalError, retried) - seen once in CI.
if [ "${CLUSTER:-local}" = local ] && kubectl -n "$NAMESPACE" get service klambda-code-store >/dev/null 2>&1; then
	store_ip=$(kubectl -n "$NAMESPACE" get service klambda-code-store -o jsonpath='{.spec.clusterIP}')
	store_answers() {
		curl -sS --max-time 2 -o /dev/null -D - "http://$store_ip:5000/v2/" | grep -qi '^docker-distribution-api-version: registry/2.0'
	}
	wait_for "the code store's Service" "$READY_TIMEOUT" store_answers ||
		die "the code store's Service (http://$store_ip:5000) did not answer as a registry in ${READY_TIMEOUT}s"
fi
# The chart's NATS cluster (nats.enabled, in an IMAGE_VALUES file here): all servers Ready.
if kubectl -n "$NAMESPACE" get statefulset klambda-nats >/dev/null 2>&1; then
	if ! kubectl -n "$NAMESPACE" rollout status statefulset/klambda-nats --timeout "${READY_TIMEOUT}s" >/dev/null; then
		kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/component=nats -o wide >&2 || true
		kubectl -n "$NAMESPACE" logs statefulset/klambda-nats --tail 30 >&2 || true
		die "klambda-nats did not become ready in ${READY_TIMEOUT}s (its pods and log are above)"
	fi
fi
log "klambda installed: $(kubectl -n "$NAMESPACE" get deployments -o name | tr '\n' ' ')"

#!/usr/bin/env bash
# Applies an example function, waits for it, invokes it through the activator and prints the
# response and how to go on. On the local cluster: hello-go (examples/hello-go: aws-lambda-go
# on provided.al2023; its 2.6 MB package is served from this node). On another cluster
# (CLUSTER=existing), whose pods cannot reach this machine: hello-shell (provided.al2023, its
# code a ConfigMap), invoked through a port-forward to the activator's Service, over its TLS
# when it has its self-signed certificate (the chart's default), as NOTES.txt does.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_FILE}
NS=${EXAMPLE_NAMESPACE:-default}
FN=hello-go
PAYLOAD=${PAYLOAD:-'{"name":"klambda"}'}
INVOKER=klambda-invoker # the ServiceAccount whose token may invoke in $NS
kubectl() { "$KUBE_BIN/kubectl" "$@"; }

local_cluster=true
tls=() # curl's options for the activator's TLS (CLUSTER=existing)
[ "${CLUSTER:-local}" = local ] || local_cluster=false
mkdir -p "$D"
if $local_cluster; then
	# The package is 2.6 MB, more than a ConfigMap holds (1 MiB): it is served from the node.
	mkdir -p "$D/www"
	"$REPO_ROOT/examples/hello-go/build.sh" "$D/www/$FN.zip"
	sha=$(sha256sum "$D/www/$FN.zip" | cut -d' ' -f1)
	url="http://$(node_ip):$CODE_PORT/$FN.zip"
	log "applying examples/hello-go (code $url)"
	sed -e "s|\${CODE_URL}|$url|" -e "s|\${CODE_SHA256}|$sha|" "$REPO_ROOT/examples/hello-go/function.yaml" >"$D/$FN.yaml"
	kubectl -n "$NS" apply -f "$D/$FN.yaml" >/dev/null
else
	FN=hello-shell
	log "applying examples/hello-shell (its code is a ConfigMap) in namespace $NS"
	kubectl -n "$NS" apply -f "$REPO_ROOT/examples/hello-shell/function.yaml" >/dev/null
fi

state() { kubectl -n "$NS" get function "$FN" -o jsonpath='{.status.state}'; }
if ! wait_for "function Active" "$READY_TIMEOUT" sh -c "[ \"\$($KUBE_BIN/kubectl -n $NS get function $FN -o jsonpath='{.status.state}')\" = Active ]"; then
	kubectl -n "$NS" get function "$FN" -o yaml | sed -n '/^status:/,$p' >&2
	die "function $FN is not Active after ${READY_TIMEOUT}s (state '$(state)'); is the Function controller running? kubectl -n klambda-system logs deploy/klambda-manager"
fi

sel="lambda.klambda.dev/function=$FN,lambda.klambda.dev/version=latest"
deploy=$(kubectl -n "$NS" get deployments -l "$sel" -o name | head -1)
[ -n "$deploy" ] || die "no Deployment labelled $sel for Active function $FN"

if kubectl -n klambda-system get deployment klambda-activator >/dev/null 2>&1; then
	log "the activator runs: invoking through it"
	activator=true
else
	# Stand-in until the activator lands: it owns the replicas of function Deployments (the
	# manager never sets them), so scale $LATEST to one environment here and call the shim's
	# invoke endpoint in the pod directly.
	activator=false
	[ "$(kubectl -n "$NS" get "$deploy" -o jsonpath='{.spec.replicas}')" -ge 1 ] 2>/dev/null ||
		kubectl -n "$NS" scale "$deploy" --replicas 1 >/dev/null
	log "waiting for a Ready pod of $deploy"
	pod_ready() { kubectl -n "$NS" get pods -l "$sel" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -x True >/dev/null; }
	if ! wait_for pod "$READY_TIMEOUT" pod_ready; then
		kubectl -n "$NS" get pods -l "$sel" -o wide >&2
		kubectl -n "$NS" describe pods -l "$sel" | tail -25 >&2
		die "no pod of $FN became Ready in ${READY_TIMEOUT}s"
	fi
fi

if $activator; then
	# The activator wants a Kubernetes token made for it (audience klambda) and allowed to
	# invoke (verb invoke on functions.lambda.klambda.dev): a ServiceAccount with that Role
	# in the namespace.
	kubectl -n "$NS" apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: ServiceAccount
		metadata: {name: $INVOKER}
		---
		apiVersion: rbac.authorization.k8s.io/v1
		kind: Role
		metadata: {name: klambda-invoke}
		rules: [{apiGroups: [lambda.klambda.dev], resources: [functions], verbs: [invoke]}]
		---
		apiVersion: rbac.authorization.k8s.io/v1
		kind: RoleBinding
		metadata: {name: $INVOKER}
		roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: klambda-invoke}
		subjects: [{kind: ServiceAccount, name: $INVOKER, namespace: $NS}]
	EOF
	token=$(kubectl -n "$NS" create token "$INVOKER" --audience klambda --duration 24h)
	if $local_cluster; then
		# The activator's Service: its ClusterIP routes from this node (kube-proxy), as from pods.
		svc=$(kubectl -n klambda-system get service klambda-activator -o jsonpath='{.spec.clusterIP}:{.spec.ports[?(@.name=="http")].port}')
		[[ $svc =~ ^[0-9.]+:[0-9]+$ ]] || die "Service klambda-system/klambda-activator has no ClusterIP and http port (got '$svc')"
		endpoint="http://$svc/namespaces/$NS"
	else
		# From outside the cluster: a port-forward to the activator's Service (NOTES.txt).
		port=$(kubectl -n klambda-system get service klambda-activator -o jsonpath='{.spec.ports[?(@.name=="http")].port}')
		[[ $port =~ ^[0-9]+$ ]] || die "Service klambda-system/klambda-activator has no port named http (got '$port')"
		lport=${FORWARD_PORT:-18443}
		kubectl -n klambda-system port-forward service/klambda-activator "$lport:$port" >"$D/port-forward.log" 2>&1 &
		forward=$!
		trap 'kill "$forward" 2>/dev/null || true' EXIT
		scheme=http
		# The activator's self-signed certificate (the chart's default TLS): trust its CA.
		ca=$(kubectl -n klambda-system get secret klambda-activator-tls -o jsonpath='{.data.ca\.crt}' 2>/dev/null || true)
		if [ -n "$ca" ]; then
			echo "$ca" | base64 -d >"$D/klambda-ca.crt"
			scheme=https tls=(--cacert "$D/klambda-ca.crt")
		fi
		endpoint="$scheme://localhost:$lport/namespaces/$NS"
		wait_for port-forward 30 curl -s "${tls[@]}" -o /dev/null "$scheme://localhost:$lport/" ||
			die "the port-forward to the activator did not answer in 30s: $(cat "$D/port-forward.log")"
	fi
	invoke_url="$endpoint/2015-03-31/functions/$FN/invocations"
	headers=(-H "Authorization: Bearer $token")
else
	pod=$(kubectl -n "$NS" get pods -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | awk '$2 == "True" {print $1; exit}')
	ip=$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
	# The invoke endpoint wants the per-function secret the shim got as KLAMBDA_INVOKE_SECRET.
	ref=$(kubectl -n "$NS" get pod "$pod" -o json | jq -r '[.spec.initContainers[]?, .spec.containers[]] | map(.env[]?) |
		map(select(.name == "KLAMBDA_INVOKE_SECRET")) | first | if .valueFrom.secretKeyRef then "ref \(.valueFrom.secretKeyRef.name) \(.valueFrom.secretKeyRef.key)" elif .value then "value \(.value)" else "none" end')
	case $ref in
	ref\ *) read -r _ sname skey <<<"$ref"
		secret=$(kubectl -n "$NS" get secret "$sname" -o jsonpath="{.data.$skey}" | base64 -d) ;;
	value\ *) secret=${ref#value } ;;
	*) secret= ;;
	esac
	invoke_url="http://$ip:9000/2015-03-31/functions/function/invocations"
	headers=(-H "X-Klambda-Invoke-Secret: $secret")
fi

log "invoking $FN: POST $invoke_url"
out=$(mktemp)
code=$(curl -sS "${tls[@]}" -o "$out" -w '%{http_code}' -X POST "${headers[@]}" -H 'Content-Type: application/json' --data "$PAYLOAD" "$invoke_url") ||
	die "could not reach $invoke_url"
[ "$code" = 200 ] || die "invoke answered HTTP $code: $(cat "$out")"
echo
echo "Response of $FN ($PAYLOAD):"
echo "  $(cat "$out")"
rm -f "$out"
echo
# Each line below works as printed, in this order, in a new shell (test/e2e
# TestDevPrintsCommandsThatWorkAsPrinted runs them): kubectl is this cluster's build, /usr/bin/aws
# Debian's AWS CLI v2, which dev.sh installs when it is missing.
echo "kubectl:        export KUBECONFIG=$KUBECONFIG PATH=\"$KUBE_BIN:\$PATH\""
echo "                kubectl get functions -A; kubectl get pods -A"
if $activator; then
	echo "token:          kubectl -n $NS create token $INVOKER --audience klambda   # ServiceAccount $INVOKER may invoke functions in $NS"
	if ! $local_cluster; then
		echo "port-forward:   kubectl -n klambda-system port-forward service/klambda-activator $lport:$port &"
		[ ${#tls[@]} -eq 0 ] || echo "                export AWS_CA_BUNDLE=$D/klambda-ca.crt"
	fi
	echo "invoke again:   AWS_ACCESS_KEY_ID=klambda AWS_SECRET_ACCESS_KEY=unused AWS_DEFAULT_REGION=us-east-1 \\"
	echo "                AWS_SESSION_TOKEN=\"\$(kubectl -n $NS create token $INVOKER --audience klambda)\" /usr/bin/aws lambda invoke \\"
	echo "                  --endpoint-url $endpoint --function-name $FN --cli-binary-format raw-in-base64-out --payload '$PAYLOAD' out.json && cat out.json"
else
	echo "invoke again:   curl -X POST -H 'X-Klambda-Invoke-Secret: $secret' --data '$PAYLOAD' $invoke_url"
	echo "                # the shim in the pod, until the activator lands; then aws lambda invoke through Service klambda-system/klambda-activator"
fi
echo "stop:           make dev-stop (keep state) | make dev-down (remove everything)"

#!/usr/bin/env bash
# Starts a single-node Kubernetes on this machine: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, a kubelet, kube-proxy and kube-router
# (NetworkPolicy), each a background process with its data under $KLAMBDA_CLUSTER_DIR
# (default ~/.cache/klambda/cluster), and CoreDNS as the cluster's DNS add-on (a Deployment).
# Idempotent: daemons already running are kept; after a stop or a reboot it starts them
# again on the same data. Writes $KLAMBDA_CLUSTER_DIR/kubeconfig.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need_root
mkdir -p "$D" "$PKI" "$RUN" "$LOGS"

# --- packages and binaries --------------------------------------------------------------

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static) # /bin/sh of the local provided.al2023 image
command -v iptables >/dev/null || missing+=(iptables)
command -v openssl >/dev/null || missing+=(openssl)
command -v ss >/dev/null || missing+=(iproute2)
command -v zip >/dev/null || missing+=(zip)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
command -v ipset >/dev/null || missing+=(ipset) # kube-router's NetworkPolicy sets
debian_install "$LOGS/apt.log" "${missing[@]}"

log "Kubernetes $KUBE_VERSION binaries (built once from the Go module proxy, cached in $KUBE_BIN)"
"$REPO_ROOT/hack/kube-binaries.sh" kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy >/dev/null

# crictl lets down.sh remove pod sandboxes through CRI (so CNI and mounts are cleaned up).
if [ ! -x "$CRICTL" ]; then
	log "building crictl $CRICTL_VERSION (once)"
	mkdir -p "$TOOLS"
	(cd "$REPO_ROOT" && GOBIN=$TOOLS go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION") || die "could not build crictl"
fi

# --- ports ---------------------------------------------------------------------------------

check_port() { # NAME PORT
	running "$1" && return 0
	port_free "$2" || die "port $2 (for $1) is already in use by another process: $(ss -Hltnp "sport = :$2" | awk '{print $NF}' | head -1); stop it or set ${3}=<free port>"
}
check_port etcd "$ETCD_PORT" ETCD_PORT
check_port etcd "$ETCD_PEER_PORT" ETCD_PEER_PORT
check_port kube-apiserver "$APISERVER_PORT" APISERVER_PORT
check_port kube-controller-manager "$KCM_PORT" KCM_PORT
check_port kube-scheduler "$SCHEDULER_PORT" SCHEDULER_PORT
check_port kubelet "$KUBELET_PORT" KUBELET_PORT
check_port kubelet "$KUBELET_HEALTHZ_PORT" KUBELET_HEALTHZ_PORT
check_port code-server "$CODE_PORT" CODE_PORT
check_port registry "$REGISTRY_PORT" REGISTRY_PORT
check_port registry "$((REGISTRY_PORT + 1))" REGISTRY_PORT
check_port kube-router "$KUBE_ROUTER_HEALTH_PORT" KUBE_ROUTER_HEALTH_PORT
check_port kube-proxy "$KUBE_PROXY_HEALTH_PORT" KUBE_PROXY_HEALTH_PORT
check_port kube-proxy "$KUBE_PROXY_METRICS_PORT" KUBE_PROXY_METRICS_PORT

# --- certificates, tokens, kubeconfig --------------------------------------------------------

NODE_IP=$(node_ip)
[ -n "$NODE_IP" ] || die "cannot find this machine's IPv4 address (ip route get 1.1.1.1)"

if [ ! -f "$PKI/ca.crt" ]; then
	log "creating the cluster CA and keys in $PKI"
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=klambda-dev-ca" \
		-keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PKI/admin.token"
fi
sign() { # NAME SUBJECT [SANS]
	local ext
	ext=$(mktemp)
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
	[ -z "${3:-}" ] || echo "subjectAltName=$3" >>"$ext"
	openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
		-extfile "$ext" -out "$PKI/$1.crt" 2>/dev/null
	rm -f "$ext" "$PKI/$1.csr"
}
# The serving certificate names the node IP, which can change across reboots: re-sign then.
if ! openssl x509 -in "$PKI/apiserver.crt" -noout -text 2>/dev/null | grep "IP Address:$NODE_IP," >/dev/null; then
	sign apiserver "/CN=kube-apiserver" \
		"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP"
fi
[ -f "$PKI/apiserver-kubelet-client.crt" ] || sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"

# One static admin token for every component and for the user: this is a throwaway,
# single-user cluster. The kubelet's own API is guarded by the apiserver's client cert.
echo "$(cat "$PKI/admin.token"),admin,admin,system:masters" >"$PKI/tokens.csv"
cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: klambda-dev
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: admin
  user:
    token: $(cat "$PKI/admin.token")
contexts:
- name: klambda-dev
  context: {cluster: klambda-dev, user: admin}
current-context: klambda-dev
EOF
chmod 600 "$KUBECONFIG_FILE"

# --- etcd and the control plane -------------------------------------------------------------

if ! running etcd; then
	log "starting etcd on 127.0.0.1:$ETCD_PORT"
	start etcd "$(command -v etcd)" --name "$NODE_NAME" --data-dir "$D/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "$NODE_NAME=http://127.0.0.1:$ETCD_PEER_PORT"
	wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health" || die "etcd did not become healthy in 30s; see $LOGS/etcd.log"
fi

if ! running kube-apiserver; then
	log "starting kube-apiserver on :$APISERVER_PORT (advertised at $NODE_IP)"
	start kube-apiserver "$KUBE_BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
		--authorization-mode Node,RBAC --allow-privileged=true \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--cert-dir "$PKI/apiserver-generated" --profiling=false --v=1
fi
wait_for kube-apiserver "$READY_TIMEOUT" api /readyz ||
	die "kube-apiserver did not become ready in ${READY_TIMEOUT}s; see $LOGS/kube-apiserver.log"

if ! running kube-controller-manager; then
	log "starting kube-controller-manager"
	start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
		--kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--leader-elect=false --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR" \
		--cert-dir "$PKI/kcm-generated" --profiling=false --v=1
fi
if ! running kube-scheduler; then
	log "starting kube-scheduler"
	start kube-scheduler "$KUBE_BIN/kube-scheduler" \
		--kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
		--cert-dir "$PKI/scheduler-generated" --profiling=false --v=1
fi

# --- node: containerd, CNI, kubelet ---------------------------------------------------------

mkdir -p "$D/bin" "$D/cni/net.d" "$D/cni/ipam" "$D/containerd" "$D/kubelet" "$D/kube-proxy" "$D/pod-logs"

# This VM forbids a negative oom_score_adj, which the kubelet asks for (the pause container
# gets -998), and runc then fails to start the container. The wrapper clamps it to 0 in the
# bundle's config.json (and an exec's process.json), then runs the real runc.
cat >"$D/bin/runc-wrapper" <<'EOF'
#!/bin/sh
prev=
for a in "$@"; do
	case $prev in --bundle | -b) f=$a/config.json ;; --process | -p) f=$a ;; esac
	case $a in --bundle=*) f=${a#--bundle=}/config.json ;; --process=*) f=${a#--process=} ;; esac
	prev=$a
done
if [ -n "${f:-}" ] && [ -f "$f" ]; then sed -i -E 's/"oomScoreAdj": ?-[0-9]+/"oomScoreAdj":0/' "$f"; fi
exec runc "$@"
EOF
chmod +x "$D/bin/runc-wrapper"

containerd_config "$D/containerd" "$CONTAINERD_SOCK" "$D/cni/net.d" >"$D/containerd/config.toml"

# The node's registry ($NODE_IP:$REGISTRY_PORT, below) speaks plain HTTP: containerd pulls
# from it as from any registry, only without TLS (containerd reads hosts.toml per pull).
rm -rf "$D/containerd/certs.d"
mkdir -p "$D/containerd/certs.d/$NODE_IP:$REGISTRY_PORT"
cat >"$D/containerd/certs.d/$NODE_IP:$REGISTRY_PORT/hosts.toml" <<EOF
server = "http://$NODE_IP:$REGISTRY_PORT"
[host."http://$NODE_IP:$REGISTRY_PORT"]
  capabilities = ["pull", "resolve"]
EOF

cat >"$D/cni/net.d/10-klambda.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$D/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

sysctl -qw net.ipv4.ip_forward=1
# A pod calling a Service whose endpoint is on the same bridge gets the answer bridged,
# not routed: kube-proxy's DNAT is undone only if bridged traffic passes iptables.
sysctl -qw net.bridge.bridge-nf-call-iptables=1 ||
	die "cannot set net.bridge.bridge-nf-call-iptables=1 (kube-proxy needs the kernel's br_netfilter)"

if ! running containerd; then
	log "starting containerd (socket $CONTAINERD_SOCK)"
	start containerd "$(command -v containerd)" --config "$D/containerd/config.toml"
	wait_for containerd 30 ctr_ version || die "containerd did not answer in 30s; see $LOGS/containerd.log"
fi

# The pod sandbox image: there is no registry to pull registry.k8s.io/pause from.
if ! ctr_ -n k8s.io images ls -q | grep -x "$SANDBOX_IMAGE" >/dev/null; then
	log "building the pod sandbox image $SANDBOX_IMAGE"
	(cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$D/bin/pause" ./hack/cluster/pause &&
		go run ./hack/imagebuild -tag "$SANDBOX_IMAGE" -o "$D/pause.tar" -add "$D/bin/pause=/pause" -entrypoint /pause >/dev/null)
	ctr_ -n k8s.io images import "$D/pause.tar" >/dev/null
	ctr_ -n k8s.io images label "$SANDBOX_IMAGE" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
fi

write_config "$D/kubelet/config.yaml" kubelet <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This VM has a cgroup v1/v2 hybrid and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
# Pod and QoS cgroups (cgroupfs, /kubepods): the activator's in-place resize of a started
# environment needs them (kubelet 1.37.2 panics in doPodResizeAction without them).
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
port: $KUBELET_PORT
healthzPort: $KUBELET_HEALTHZ_PORT
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: $D/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP] # Service kube-dns (CoreDNS, below)
serializeImagePulls: false
# klambda's images are imported into containerd here, not pulled; the same image pulled once
# from the node's registry (test/e2e TestDevOnAnExistingCluster) would otherwise make the
# kubelet insist on pulling the imported name, which no registry serves (its
# pulled-credentials check: KubeletEnsureSecretPulledImages).
imagePullCredentialsVerificationPolicy: NeverVerify
# A dev machine's disk is often fuller than the defaults allow; never evict for it.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF

if ! running kubelet; then
	log "starting kubelet (node $NODE_NAME)"
	start kubelet "$KUBE_BIN/kubelet" --config "$D/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_FILE" \
		--root-dir "$D/kubelet" --cert-dir "$D/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
fi

# Function packages too big for a ConfigMap (1 MiB) are served to pods from here (code.url).
mkdir -p "$D/www"
if ! running code-server; then
	log "starting the code server on :$CODE_PORT (serves $D/www)"
	start code-server /bin/busybox httpd -f -p "$CODE_PORT" -h "$D/www"
fi

# An OCI registry on the node, plain HTTP (containerd's hosts.toml above): Image functions'
# images are pushed here (test/e2e's image tests) and pulled by the kubelet; the manager
# resolves their tags here (install.sh: config.plainHTTPRegistries). It is klambda's code
# store binary (the CNCF distribution registry's handler over one directory); its
# read-only port is not used here and stays on loopback.
if ! running registry; then
	log "starting the node's registry on :$REGISTRY_PORT (plain HTTP, content in $D/registry)"
	(cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -o "$D/bin/registry" ./cmd/code-store) ||
		die "could not build the registry (cmd/code-store)"
	start registry "$D/bin/registry" --root "$D/registry" --listen ":$REGISTRY_PORT" \
		--read-listen "127.0.0.1:$((REGISTRY_PORT + 1))" --log-level warn
fi
wait_for registry 30 curl -fsS "http://127.0.0.1:$REGISTRY_PORT/v2/" ||
	die "the node's registry did not answer in 30s; see $LOGS/registry.log"

node_ready() { api "/api/v1/nodes/$NODE_NAME" | jq -e '.status.conditions[] | select(.type == "Ready") | .status == "True"'; }
wait_for node "$READY_TIMEOUT" node_ready ||
	die "node $NODE_NAME did not become Ready in ${READY_TIMEOUT}s; see $LOGS/kubelet.log and $LOGS/containerd.log"
# Services: kube-proxy in iptables mode (Debian's iptables, the nf_tables backend) routes
# ClusterIPs from pods and from this host (its OUTPUT rules), the apiserver's 10.96.0.1:443
# included, which client-go's in-cluster config dials.
write_config "$D/kube-proxy/config.yaml" kube-proxy <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIG_FILE}
hostnameOverride: $NODE_NAME
mode: iptables
# Traffic from outside the pod network to a Service is masqueraded (the host's callers).
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTH_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
nodePortAddresses: [primary]
# This VM forbids a negative oom_score_adj (kube-proxy's default is -999), and the host's
# conntrack limits and timeouts are left as they are (0: do not set).
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
if ! running kube-proxy; then
	log "starting kube-proxy (iptables mode: Services)"
	start kube-proxy "$KUBE_BIN/kube-proxy" --config "$D/kube-proxy/config.yaml" --v=1
fi
wait_for kube-proxy 60 curl -fsS "http://127.0.0.1:$KUBE_PROXY_HEALTH_PORT/healthz" ||
	die "kube-proxy did not become healthy in 60s; see $LOGS/kube-proxy.log"
# A cluster started by an older up.sh forwarded 10.96.0.1:443 by hand (chain KLAMBDA-DEV);
# kube-proxy does it now.
for chain in PREROUTING OUTPUT; do
	while iptables -t nat -D "$chain" -j KLAMBDA-DEV 2>/dev/null; do :; done
done
iptables -t nat -F KLAMBDA-DEV 2>/dev/null && iptables -t nat -X KLAMBDA-DEV 2>/dev/null || true
apiserver_service() { curl -fsS --max-time 2 --cacert "$PKI/ca.crt" "https://$KUBERNETES_SERVICE_IP/readyz"; }
wait_for "Service kubernetes" 30 apiserver_service ||
	die "the apiserver is not reachable at its Service https://$KUBERNETES_SERVICE_IP (kube-proxy's rules); see $LOGS/kube-proxy.log"

# NetworkPolicy: the bridge CNI does not enforce it; kube-router's network policy controller
# (alone: no routing, no service proxy) does, with iptables and ipset rules on this node.
# It needs the Node object, so it starts once the node is registered.
KUBE_ROUTER=$("$REPO_ROOT/hack/cluster/kube-router.sh" | tail -1) || die "could not build kube-router (hack/cluster/kube-router.sh)"
if ! running kube-router; then
	log "starting kube-router's network policy controller (NetworkPolicy enforcement)"
	start kube-router "$KUBE_ROUTER" --kubeconfig "$KUBECONFIG_FILE" --hostname-override "$NODE_NAME" \
		--run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
		--service-cluster-ip-range "$SERVICE_CIDR" --health-addr 127.0.0.1 --health-port "$KUBE_ROUTER_HEALTH_PORT" --metrics-port 0 --v=1
fi
wait_for kube-router 60 curl -fsS "http://127.0.0.1:$KUBE_ROUTER_HEALTH_PORT/healthz" ||
	die "kube-router did not become healthy in 60s; see $LOGS/kube-router.log"
# Service accounts come from the controller manager; a pod created before they exist fails.
wait_for serviceaccount 60 api /api/v1/namespaces/default/serviceaccounts/default ||
	die "the default ServiceAccount did not appear in 60s; see $LOGS/kube-controller-manager.log"

# Cluster DNS: CoreDNS as a Deployment behind Service kube-dns ($DNS_SERVICE_IP, the kubelet's
# clusterDNS), its image made here from a binary built once from the Go module proxy.
COREDNS=$("$REPO_ROOT/hack/cluster/coredns.sh" | tail -1) || die "could not build CoreDNS (hack/cluster/coredns.sh)"
coredns_version=$(basename "$(dirname "$COREDNS")")
COREDNS_IMAGE=klambda.local/coredns:${coredns_version#coredns-}
if ! ctr_ -n k8s.io images ls -q | grep -x "$COREDNS_IMAGE" >/dev/null; then
	log "building the image $COREDNS_IMAGE"
	(cd "$REPO_ROOT" && go run ./hack/imagebuild -tag "$COREDNS_IMAGE" -o "$D/coredns.tar" \
		-base-files -add "$COREDNS=/coredns" -user 65532:65532 -entrypoint /coredns >/dev/null)
	ctr_ -n k8s.io images import "$D/coredns.tar" >/dev/null
	rm -f "$D/coredns.tar"
fi
# Names outside the cluster go to the host's resolver, when it has one a pod can reach.
forward="# no forward: the host's /etc/resolv.conf names no resolver a pod can reach"
if awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 != "::1" {ok = 1} END {exit !ok}' /etc/resolv.conf 2>/dev/null; then
	forward="forward . /etc/resolv.conf"
fi
dns_manifest() { # CONFIG_HASH
	sed -e "s|\${CLUSTER_DOMAIN}|$CLUSTER_DOMAIN|" -e "s|\${FORWARD}|$forward|" -e "s|\${COREDNS_IMAGE}|$COREDNS_IMAGE|" \
		-e "s|\${DNS_SERVICE_IP}|$DNS_SERVICE_IP|" -e "s|\${CONFIG_HASH}|$1|" "$REPO_ROOT/hack/cluster/coredns.yaml"
}
dns_manifest "$(dns_manifest - | sha256sum | cut -c1-16)" | kubectl_ apply -f - >/dev/null ||
	die "could not apply CoreDNS (hack/cluster/coredns.yaml)"
if ! kubectl_ -n kube-system rollout status deployment/coredns --timeout "${READY_TIMEOUT}s" >/dev/null; then
	kubectl_ -n kube-system get pods -l k8s-app=kube-dns -o wide >&2 || true
	kubectl_ -n kube-system logs deployment/coredns --tail 20 >&2 || true
	die "CoreDNS did not become available in ${READY_TIMEOUT}s (its pods and log are above)"
fi
dns_answers() { /bin/busybox nslookup "kubernetes.default.svc.$CLUSTER_DOMAIN" "$DNS_SERVICE_IP" | grep "$KUBERNETES_SERVICE_IP"; }
wait_for "cluster DNS" 30 dns_answers ||
	die "CoreDNS at $DNS_SERVICE_IP does not resolve kubernetes.default.svc.$CLUSTER_DOMAIN; see kubectl -n kube-system logs deploy/coredns"
log "cluster up: node $NODE_NAME Ready (KUBECONFIG=$KUBECONFIG_FILE)"

# Shared settings and helpers for the local cluster scripts. Sourced, not run.
# Everything the cluster writes lives under $KLAMBDA_CLUSTER_DIR; nothing goes to /etc.

KLAMBDA_CACHE=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
KLAMBDA_CLUSTER_DIR=${KLAMBDA_CLUSTER_DIR:-$KLAMBDA_CACHE/cluster}
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
NODE_NAME=${NODE_NAME:-klambda-dev}
READY_TIMEOUT=${READY_TIMEOUT:-180}

ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
APISERVER_PORT=${APISERVER_PORT:-6443}
KUBELET_PORT=${KUBELET_PORT:-10250}
KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-10248}
KCM_PORT=${KCM_PORT:-10257}
SCHEDULER_PORT=${SCHEDULER_PORT:-10259}
CODE_PORT=${CODE_PORT:-18080} # the node's static file server for example packages (code.url)
REGISTRY_PORT=${REGISTRY_PORT:-15000} # the node's OCI registry (plain HTTP) for Image functions' images
KUBE_ROUTER_HEALTH_PORT=${KUBE_ROUTER_HEALTH_PORT:-20244} # kube-router's /healthz (NetworkPolicy enforcement)
KUBE_PROXY_HEALTH_PORT=${KUBE_PROXY_HEALTH_PORT:-10256}   # kube-proxy's /healthz
KUBE_PROXY_METRICS_PORT=${KUBE_PROXY_METRICS_PORT:-10249} # kube-proxy's /metrics

POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10 # Service kube-dns (CoreDNS), the kubelet's clusterDNS
CLUSTER_DOMAIN=cluster.local
CNI_BRIDGE=cni0
CNI_NETWORK=klambda-dev
SANDBOX_IMAGE=registry.k8s.io/pause:3.6 # what Debian's containerd 1.6 asks for

D=$KLAMBDA_CLUSTER_DIR
PKI=$D/pki
RUN=$D/run
LOGS=$D/logs
CONTAINERD_SOCK=$D/containerd/containerd.sock
KUBECONFIG_FILE=$D/kubeconfig
KUBE_BIN=$KLAMBDA_CACHE/kube-$KUBE_VERSION/bin
TOOLS=$KLAMBDA_CACHE/bin
HELM=${HELM:-$TOOLS/helm-v3.22.0}
CRICTL=$TOOLS/crictl
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}

here_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$here_lib/../.." && pwd)

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# debian_install LOGFILE PACKAGE...: apt-get install the packages (an update first only when
# the install fails), its output in LOGFILE.
debian_install() {
	local logf=$1
	shift
	[ $# -gt 0 ] || return 0
	log "installing from Debian: $*"
	mkdir -p "$(dirname "$logf")"
	{ apt-get install -y -qq "$@" || { apt-get update -qq && apt-get install -y -qq "$@"; }; } >"$logf" 2>&1 ||
		die "could not install $* with apt-get (see $logf)"
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "the local cluster runs containerd and a kubelet, which need root; run as root (sudo -E make dev)"
}

# api PATH: GET from the apiserver as admin (curl, so the checks need no kubectl).
api() {
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$PKI/admin.token")" "https://127.0.0.1:$APISERVER_PORT$1"
}
kubectl_() { "$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" "$@"; }

# containerd_config DIR SOCK CNI_CONF_DIR [RUNC_ROOT]: the configuration of one of the local
# cluster's containerds: root, state and opt under DIR, its socket SOCK, the CRI plugin with
# the bridge CNI's configuration in CNI_CONF_DIR, the node registry's hosts
# ($D/containerd/certs.d), and runc through the wrapper that clamps oomScoreAdj (with its
# state in RUNC_ROOT when given, for a second containerd beside the first).
containerd_config() {
	local dir=$1 sock=$2 cni=$3 root_line=""
	[ -z "${4:-}" ] || root_line=$'\n        Root = "'"$4"'"'
	cat <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni"
  # Registry hosts (hosts.toml per host:port): the node's own registry is plain HTTP.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$D/containerd/certs.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$D/bin/runc-wrapper"$root_line
        SystemdCgroup = false
EOF
}

# remove_sandboxes SOCK WHAT: removes the pod sandboxes of the containerd at SOCK through
# CRI (crictl rmp; logged as WHAT), having first noted their network namespaces in the array
# SANDBOX_NETNS, for the caller to remove by hand if CRI could not.
remove_sandboxes() {
	local sock=$1 what=$2 id ns
	SANDBOX_NETNS=()
	for id in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
		ns=$(ctr --address "$sock" -n k8s.io containers info "$id" 2>/dev/null |
			jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty' 2>/dev/null || true)
		[ -z "$ns" ] || SANDBOX_NETNS+=("$ns")
	done
	if [ -x "$CRICTL" ]; then
		log "removing $what"
		"$CRICTL" --runtime-endpoint "unix://$sock" --timeout 60s rmp --all --force >/dev/null 2>&1 ||
			log "crictl rmp did not finish; cleaning up by hand"
	fi
}

# node_ip is the host's primary IPv4 address: the node's InternalIP and the apiserver's
# advertise address (pods reach the apiserver there).
node_ip() {
	ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}'
}

# running NAME: the daemon we started under NAME is alive (pid file, and the pid still
# runs the same binary, so a pid reused after a reboot does not count).
running() {
	local pidf=$RUN/$1.pid pid
	[ -f "$pidf" ] || return 1
	pid=$(cat "$pidf")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -- "$(cat "$RUN/$1.bin" 2>/dev/null || echo "$1")" >/dev/null
}

# start NAME BINARY ARGS...: run BINARY in its own session, logging to $LOGS/NAME.log.
start() {
	local name=$1 bin=$2
	shift 2
	mkdir -p "$RUN" "$LOGS"
	echo "$bin" >"$RUN/$name.bin"
	setsid nohup "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
}

# stop NAME: SIGTERM the daemon started as NAME, then SIGKILL after 10 s.
stop() {
	running "$1" || { rm -f "$RUN/$1.pid"; return 0; }
	local pid i
	pid=$(cat "$RUN/$1.pid")
	log "stopping $1 (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$RUN/$1.pid"
}

# write_config FILE NAME: write stdin to FILE; when that changes FILE and daemon NAME runs,
# stop it, so that up.sh starts it again on the new configuration.
write_config() {
	local file=$1 name=$2
	cat >"$file.new"
	if cmp -s "$file.new" "$file"; then
		rm -f "$file.new"
		return 0
	fi
	mv "$file.new" "$file"
	if running "$name"; then
		log "$name's configuration changed: restarting it"
		stop "$name"
	fi
}

# port_free PORT: nothing listens on TCP PORT.
port_free() {
	! ss -Hltn "sport = :$1" 2>/dev/null | grep . >/dev/null
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND once a second.
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for ((i = 0; i < secs; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	return 1
}

#!/usr/bin/env bash
# arm64-node.sh up|down: a second node, klambda-dev-arm64, on the local cluster of up.sh,
# whose containers are arm64 programs run by qemu-user through binfmt_misc (opt-in; the
# first node is left as it is). README.md, "An emulated arm64 node", says how and why.
#   up    start its containerd and kubelet, bridge cni1 (10.244.1.0/24), import its arm64
#         images, apply the admission policy that keeps the Node arm64; wait until the node
#         is Ready. Idempotent. Function pods tolerate its taint through the manager's
#         config.tolerations (values-local.yaml), as on a cluster with a tainted arm64 pool.
#   down  remove all of it: pods' sandboxes, processes, shims, mounts, netns, cni1, its
#         iptables rules, cgroups, the Node object, the policy and $ARM64_DIR.
# Needs up.sh's cluster running and qemu-aarch64 registered in binfmt_misc with the F flag
# (apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ARM64_NODE=${ARM64_NODE:-klambda-dev-arm64}
ARM64_KUBELET_PORT=${ARM64_KUBELET_PORT:-10450}
ARM64_KUBELET_HEALTHZ_PORT=${ARM64_KUBELET_HEALTHZ_PORT:-10448}
ARM64_POD_CIDR=10.244.1.0/24
ARM64_BRIDGE=cni1
ARM64_NETWORK=klambda-dev-arm64
ARM64_CGROUP=klambda-arm64 # the kubelet's cgroupRoot: its pods never share /kubepods with the first node's
A=$D/arm64
ARM64_SOCK=$A/containerd/containerd.sock
NAT_CHAIN=KLAMBDA-ARM64
ctr_arm64() { ctr --address "$ARM64_SOCK" "$@"; }

usage() { die "usage: $0 up|down"; }
[ $# -eq 1 ] || usage
need_root

# binfmt_ok: qemu-aarch64 runs arm64 programs, also in containers that have no qemu inside
# (the F flag: the kernel opens the interpreter when the entry is registered).
binfmt_ok() {
	local e=/proc/sys/fs/binfmt_misc/qemu-aarch64
	[ -r "$e" ] && grep -x enabled "$e" >/dev/null && grep '^flags:.*F' "$e" >/dev/null
}

shim_pids() {
	local p
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' <"$p/cmdline" | grep -- "containerd-shim.* -address $ARM64_SOCK " >/dev/null && echo "${p#/proc/}"; } 2>/dev/null
	done
	return 0
}

cgroup_dirs() { # the cgroupRoot in every hierarchy this host mounts
	awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts | while read -r m; do echo "$m/$ARM64_CGROUP"; done
}

policies() {
	cat <<EOF
# The kubelet labels its Node with its own GOARCH (amd64) at every status update; this
# policy keeps ${ARM64_NODE} arm64, as an arm64 kubelet would report it.
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: klambda-dev-arm64-node}
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [nodes, nodes/status]}
  matchConditions:
  - {name: arm64-node, expression: 'object.metadata.name == "${ARM64_NODE}"'}
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >-
        Object{metadata: Object.metadata{labels: {"kubernetes.io/arch": "arm64", "beta.kubernetes.io/arch": "arm64"}},
        status: Object.status{nodeInfo: Object.status.nodeInfo{architecture: "arm64"}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: klambda-dev-arm64-node}
spec: {policyName: klambda-dev-arm64-node}
EOF
}

# dry_run METHOD PATH JSON: the apiserver's answer to a dry-run request (admission runs,
# nothing is stored), as admin.
dry_run() {
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$PKI/admin.token")" -X "$1" \
		-H "Content-Type: $([ "$1" = PATCH ] && echo application/merge-patch+json || echo application/json)" \
		"https://127.0.0.1:$APISERVER_PORT$2?dryRun=All" -d "$3"
}

# policies_active: a server-side dry run shows the policy at work: the Node (created, or
# relabelled amd64) stays arm64.
policies_active() {
	if api "/api/v1/nodes/$ARM64_NODE" >/dev/null 2>&1; then
		dry_run PATCH "/api/v1/nodes/$ARM64_NODE" '{"metadata": {"labels": {"kubernetes.io/arch": "amd64"}}}'
	else
		dry_run POST /api/v1/nodes '{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "'"$ARM64_NODE"'", "labels": {"kubernetes.io/arch": "amd64"}}}'
	fi | jq -e '.metadata.labels["kubernetes.io/arch"] == "arm64"' >/dev/null
}

# --- down ------------------------------------------------------------------------------------

down() {
	stop arm64-kubelet
	local pid child m ns netns=()
	if running arm64-containerd; then
		remove_sandboxes "$ARM64_SOCK" "the arm64 node's pod sandboxes"
		netns=("${SANDBOX_NETNS[@]}")
	fi
	stop arm64-containerd
	for pid in $(shim_pids); do
		for child in $(ps -o pid= --ppid "$pid"); do kill -9 "$child" 2>/dev/null || true; done
		kill -9 "$pid" 2>/dev/null || true
	done
	sleep 0.5
	for ns in "${netns[@]}"; do
		umount "$ns" 2>/dev/null || true
		rm -f "$ns"
	done
	mapfile -t mounts < <(awk -v d="$A" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r)
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	ip link delete "$ARM64_BRIDGE" 2>/dev/null || true
	while iptables -t nat -D POSTROUTING -j "$NAT_CHAIN" 2>/dev/null; do :; done
	iptables -t nat -F "$NAT_CHAIN" 2>/dev/null && iptables -t nat -X "$NAT_CHAIN" 2>/dev/null || true
	# Masquerade and hostPort rules CNI left for our network (CNI DEL did not run).
	iptables-save -t nat 2>/dev/null | grep -- "name: \\\\\"$ARM64_NETWORK\\\\\"" | grep '^-A ' | while read -r _ chain rest; do
		target=$(sed -E 's/.* -j (CNI-[A-Za-z0-9-]+).*/\1/' <<<"$rest")
		eval "iptables -t nat -D $chain $rest" 2>/dev/null || true
		case $target in CNI-HOSTPORT-*) ;; CNI-*) iptables -t nat -F "$target" 2>/dev/null || true; iptables -t nat -X "$target" 2>/dev/null || true ;; esac
	done || true
	# Cgroups, deepest first (empty now that the shims are gone).
	for m in $(cgroup_dirs); do
		[ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	if api /readyz >/dev/null 2>&1; then
		kubectl_ delete node "$ARM64_NODE" --ignore-not-found --wait=false >/dev/null
		policies | kubectl_ delete --ignore-not-found -f - >/dev/null
	else
		log "the apiserver does not answer: Node $ARM64_NODE and the klambda-dev-arm64-node admission policy are left"
	fi
	local left
	left=$(awk -v d="$A" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts)
	[ -z "$left" ] || die "mounts are still in place under $A (not deleting it): $left"
	[ -z "$(shim_pids)" ] || die "containerd shims of the arm64 node still running: $(shim_pids | tr '\n' ' ')"
	for m in $(cgroup_dirs); do [ ! -d "$m" ] || die "cgroup $m is still there (processes in it?)"; done
	rm -rf "$A"
	rm -f "$RUN"/arm64-*.bin
	log "arm64 node $ARM64_NODE removed"
}

# --- up --------------------------------------------------------------------------------------

up() {
	binfmt_ok || die "qemu-aarch64 is not registered in binfmt_misc with the F flag (see /proc/sys/fs/binfmt_misc): apt-get install qemu-user-static binfmt-support; mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64"
	api /readyz >/dev/null 2>&1 || die "the local cluster is not running (make dev)"
	running kubelet && running containerd || die "the first node's kubelet and containerd are not running (make dev)"
	[ -x "$CRICTL" ] || die "crictl is missing at $CRICTL (up.sh builds it)"
	if ! running arm64-kubelet; then
		port_free "$ARM64_KUBELET_PORT" || die "port $ARM64_KUBELET_PORT (the arm64 kubelet's) is in use; set ARM64_KUBELET_PORT"
		port_free "$ARM64_KUBELET_HEALTHZ_PORT" || die "port $ARM64_KUBELET_HEALTHZ_PORT (the arm64 kubelet's healthz) is in use; set ARM64_KUBELET_HEALTHZ_PORT"
	fi
	local node_ip
	node_ip=$(node_ip)
	mkdir -p "$A/containerd" "$A/cni/net.d" "$A/cni/ipam" "$A/kubelet" "$A/pod-logs" "$A/images"

	# containerd: its own socket, root, state and runc root; the first node's runc wrapper
	# (oom_score_adj) and registry hosts (the node's plain-HTTP registry).
	containerd_config "$A/containerd" "$ARM64_SOCK" "$A/cni/net.d" "$A/runc" >"$A/containerd/config.toml"
	cat >"$A/cni/net.d/10-klambda-arm64.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$ARM64_NETWORK",
  "plugins": [
    {
      "type": "bridge", "bridge": "$ARM64_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$ARM64_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$A/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	# Pod to pod between the two bridges without NAT (each bridge masquerades what leaves
	# its subnet), as on a cluster's pod network: NetworkPolicies see the pods' own IPs.
	iptables -t nat -N "$NAT_CHAIN" 2>/dev/null || true
	iptables -t nat -F "$NAT_CHAIN"
	iptables -t nat -A "$NAT_CHAIN" -s "$POD_CIDR" -d "$ARM64_POD_CIDR" -j RETURN
	iptables -t nat -A "$NAT_CHAIN" -s "$ARM64_POD_CIDR" -d "$POD_CIDR" -j RETURN
	iptables -t nat -C POSTROUTING -j "$NAT_CHAIN" 2>/dev/null || iptables -t nat -I POSTROUTING 1 -j "$NAT_CHAIN"

	# The kubelet's cgroupRoot must exist in every hierarchy; cpuset needs its CPUs and memory nodes.
	local m
	for m in $(cgroup_dirs); do
		mkdir -p "$m"
		if [ -f "$m/cpuset.cpus" ] && [ -z "$(cat "$m/cpuset.cpus")" ]; then
			cat "$(dirname "$m")/cpuset.cpus" >"$m/cpuset.cpus"
			cat "$(dirname "$m")/cpuset.mems" >"$m/cpuset.mems"
		fi
	done

	if ! running arm64-containerd; then
		log "starting the arm64 node's containerd (socket $ARM64_SOCK)"
		start arm64-containerd "$(command -v containerd)" --config "$A/containerd/config.toml"
		wait_for containerd 30 ctr_arm64 version || die "the arm64 node's containerd did not answer in 30s; see $LOGS/arm64-containerd.log"
	fi
	images

	write_config "$A/kubelet/config.yaml" arm64-kubelet <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /$ARM64_CGROUP
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://$ARM64_SOCK
imageServiceEndpoint: unix://$ARM64_SOCK
port: $ARM64_KUBELET_PORT
healthzPort: $ARM64_KUBELET_HEALTHZ_PORT
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: $A/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
serializeImagePulls: false
imagePullCredentialsVerificationPolicy: NeverVerify
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerWithTaints:
- {key: kubernetes.io/arch, value: arm64, effect: NoSchedule}
EOF
	policies | kubectl_ apply -f - >/dev/null || die "could not apply the arm64 node's admission policy"
	# The apiserver loads a new policy within moments; a kubelet that registers before then
	# keeps amd64 until its next status update (up to 5 min later).
	wait_for "admission policy" 30 policies_active ||
		die "the klambda-dev-arm64-node MutatingAdmissionPolicy did not take effect in 30s (a server-side dry run of the Node; see kubectl get mutatingadmissionpolicies)"
	if ! running arm64-kubelet; then
		log "starting the arm64 node's kubelet (node $ARM64_NODE, port $ARM64_KUBELET_PORT)"
		start arm64-kubelet "$KUBE_BIN/kubelet" --config "$A/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_FILE" \
			--root-dir "$A/kubelet" --cert-dir "$A/kubelet/pki" --hostname-override "$ARM64_NODE" --node-ip "$node_ip" \
			--node-labels kubernetes.io/arch=arm64 --v=1
	fi
	node_ready() {
		local node
		node=$(api "/api/v1/nodes/$ARM64_NODE") || return 1
		# Registered as amd64 before the policy held (an older up): any update makes it arm64.
		jq -e '.metadata.labels["kubernetes.io/arch"] == "arm64"' <<<"$node" >/dev/null ||
			kubectl_ label node "$ARM64_NODE" kubernetes.io/arch=arm64 --overwrite >/dev/null
		jq -e '(.status.conditions[] | select(.type == "Ready") | .status == "True") and .metadata.labels["kubernetes.io/arch"] == "arm64"' <<<"$node"
	}
	wait_for node "$READY_TIMEOUT" node_ready ||
		die "node $ARM64_NODE did not become Ready (arm64) in ${READY_TIMEOUT}s; see $LOGS/arm64-kubelet.log and $LOGS/arm64-containerd.log"
	log "arm64 node $ARM64_NODE Ready (taint kubernetes.io/arch=arm64:NoSchedule)"
}

# images: the arm64 node's images, each a single linux/arm64 manifest under the name the
# function pods use (containerd runs a single manifest whatever its platform; an index would
# resolve to this host's amd64): the provided.al2023 stand-in (Debian's arm64
# busybox-static, the arm64 runtime-shim), the runtime-shim image and, when their inputs
# are there, the python3.12 and nodejs22.x stand-ins. The pod sandbox (pause) is
# the first node's amd64 image.
images() {
	local bin=$A/images/bin busybox applet
	mkdir -p "$bin"
	(cd "$REPO_ROOT" && go build -o "$bin/imagebuild" ./hack/imagebuild) || die "could not build hack/imagebuild"
	(cd "$REPO_ROOT" && CGO_ENABLED=0 GOARCH=arm64 go build -trimpath -ldflags "-s -w" -o "$bin/runtime-shim" ./cmd/runtime-shim) ||
		die "could not build the arm64 runtime-shim"
	busybox=$("$REPO_ROOT/hack/debian-package.sh" arm64 busybox-static)/bin/busybox || die "could not fetch Debian's arm64 busybox-static"
	if ! ctr_arm64 -n k8s.io images ls -q | grep -x "$SANDBOX_IMAGE" >/dev/null; then
		ctr_ -n k8s.io images export "$A/images/pause.tar" "$SANDBOX_IMAGE" || die "could not export $SANDBOX_IMAGE from the first node"
		ctr_arm64 -n k8s.io images import "$A/images/pause.tar" >/dev/null
		ctr_arm64 -n k8s.io images label "$SANDBOX_IMAGE" io.cri-containerd.pinned=pinned >/dev/null
	fi
	cp "$REPO_ROOT/hack/runtimes/provided/lambda-entrypoint.sh" "$bin/lambda-entrypoint.sh"
	chmod 755 "$bin/lambda-entrypoint.sh"
	local provided=(-platform linux/arm64 -base-files -add "$busybox=/bin/busybox")
	# The applets: the same Debian source package as this machine's busybox-static (ask it, it runs natively).
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || provided+=(-symlink "/bin/$applet=busybox")
	done
	provided+=(-mkdir /var/task -mkdir /var/runtime -mkdir /opt -mkdir /var/lang/bin
		-add "$bin/lambda-entrypoint.sh=/lambda-entrypoint.sh"
		-env LAMBDA_TASK_ROOT=/var/task -env LAMBDA_RUNTIME_DIR=/var/runtime -env LANG=en_US.UTF-8 -env TZ=:UTC
		-env LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib
		-workdir /var/task -entrypoint /lambda-entrypoint.sh
		-layer -add "$bin/runtime-shim=/klambda/runtime-shim")
	arm64_image provided-al2023 klambda.local/provided:al2023 "${provided[@]}"
	arm64_image runtime-shim klambda.local/runtime-shim:dev -platform linux/arm64 -base-files -layer \
		-add "$bin/runtime-shim=/runtime-shim" -user 65532:65532 -entrypoint /runtime-shim

	# python3.12: the provided image + Debian's arm64 glibc and libcrypt + CPython for arm64
	# (hack/runtimes/python/standalone.sh) + klambda's minimal runtime interface client, as
	# hack/release-images.sh builds the stand-in's arm64 half.
	local tree libs
	if tree=$("$REPO_ROOT/hack/runtimes/python/standalone.sh" 3.12 arm64); then
		libs=$(debian_libs python3.12 libc6 libcrypt1)
		printf '%s\n' '#!/bin/sh' \
			'# python3.12: klambda'"'"'s minimal runtime interface client runs the handler (module.function).' \
			'export PYTHONPATH=/opt/python/lib/python3.12/site-packages:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}' \
			'exec /var/lang/bin/python3 /var/runtime/klambda_ric.py "${_HANDLER:-$1}"' >"$bin/python-bootstrap-3.12"
		chmod 755 "$bin/python-bootstrap-3.12"
		arm64_image python-3.12 klambda.local/python:3.12 "${provided[@]}" -layer -add "$libs=/" -layer -add "$tree=/var/lang" \
			-layer -add "$REPO_ROOT/hack/runtimes/python/klambda_ric.py=/var/runtime/klambda_ric.py" \
			-add "$bin/python-bootstrap-3.12=/var/runtime/bootstrap" -env AWS_EXECUTION_ENV=AWS_Lambda_python3.12
	else
		log "no arm64 python3.12 image: hack/runtimes/python/standalone.sh 3.12 arm64 failed (above)"
	fi

	# nodejs22.x: the provided image + Debian's arm64 glibc, libstdc++ and libgcc + npm's
	# Node.js 22 for arm64 + the npm aws-lambda-ric with its addon built for it
	# (hack/runtimes/node/node.sh 22 arm64, ~8 min once; not run from here).
	local built node ric
	if built=$("$REPO_ROOT/hack/runtimes/node/node.sh" --installed 22 arm64 2>/dev/null); then
		{ read -r node; read -r ric; } <<<"$built"
		libs=$(debian_libs node22 libc6 libstdc++6 libgcc-s1)
		printf '%s\n' '#!/bin/sh' \
			'# nodejs22.x: the npm aws-lambda-ric runs the handler (module.function) from /var/task.' \
			'export NODE_PATH=/opt/nodejs/node22/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task' \
			'exec /var/lang/bin/node /var/runtime/node_modules/aws-lambda-ric/bin/index.mjs "${_HANDLER:-$1}"' >"$bin/node-bootstrap-22"
		chmod 755 "$bin/node-bootstrap-22"
		arm64_image nodejs-22 klambda.local/nodejs:22 "${provided[@]}" -layer -add "$libs=/" -layer -add "$node/bin/node=/var/lang/bin/node" \
			-layer -add "$ric=/var/runtime/node_modules" -add "$bin/node-bootstrap-22=/var/runtime/bootstrap" \
			-env AWS_EXECUTION_ENV=AWS_Lambda_nodejs22.x
	else
		log "no arm64 nodejs22.x image: needs hack/runtimes/node/node.sh 22 arm64 (~8 min once)"
	fi
}

# debian_libs NAME PACKAGE...: Debian's arm64 PACKAGEs' shared libraries at their paths
# (lib/, lib64/, usr/lib/aarch64-linux-gnu/*.so*) in a folder, printed.
debian_libs() {
	local name=$1 out=$A/images/libs-$1 pkg deb sub
	shift
	rm -rf "$out" && mkdir -p "$out/usr/lib/aarch64-linux-gnu"
	for pkg in "$@"; do
		deb=$("$REPO_ROOT/hack/debian-package.sh" arm64 "$pkg") || die "could not fetch Debian's arm64 $pkg"
		for sub in lib lib64; do [ ! -d "$deb/$sub" ] || cp -a "$deb/$sub" "$out/"; done
		[ ! -d "$deb/usr/lib/aarch64-linux-gnu" ] ||
			find "$deb/usr/lib/aarch64-linux-gnu" -maxdepth 1 -name '*.so*' -exec cp -a {} "$out/usr/lib/aarch64-linux-gnu/" \;
	done
	echo "$out"
}

# arm64_image NAME TAG IMAGEBUILD-ARGS...: build, and import unless this digest is there.
arm64_image() {
	local name=$1 tag=$2 digest
	shift 2
	digest=$("$A/images/bin/imagebuild" -tag "$tag" -digest "$@") || die "could not build $tag (arm64)"
	if [ "$(cat "$A/images/$name.digest" 2>/dev/null)" = "$digest" ] &&
		ctr_arm64 -n k8s.io images ls -q "name==$tag" | grep -x "$tag" >/dev/null; then
		return 0
	fi
	log "arm64 image $tag ($digest)"
	"$A/images/bin/imagebuild" -tag "$tag" -o "$A/images/$name.tar" "$@" >/dev/null
	ctr_arm64 -n k8s.io images import --platform linux/arm64 "$A/images/$name.tar" >/dev/null
	echo "$digest" >"$A/images/$name.digest"
}

case $1 in
up) up ;;
down) down ;;
*) usage ;;
esac

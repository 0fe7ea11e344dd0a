#!/usr/bin/env bash
# Stops the local cluster started by up.sh and cleans what its pods left on the host:
# pod sandboxes (via CRI, so CNI releases IPs and iptables rules), container shims, overlay,
# shm and volume mounts, network namespaces, the cni0 bridge, kube-proxy's and kube-router's
# iptables rules.
#   down.sh          stop and delete $KLAMBDA_CLUSTER_DIR (images, etcd data, everything)
#   down.sh --keep   stop, keep the data: the next `make dev` starts the same cluster again
# Only processes whose pid files this cluster wrote, and the shims serving its containerd
# socket, are stopped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

keep=false
[ "${1:-}" != --keep ] || keep=true
need_root
[ -d "$D" ] || { log "no local cluster in $D"; exit 0; }

# shim_pids: containerd shims serving our socket (a system containerd's shims do not match).
shim_pids() {
	local p
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' <"$p/cmdline" | grep -- "containerd-shim.* -address $CONTAINERD_SOCK " >/dev/null && echo "${p#/proc/}"; } 2>/dev/null
	done
	return 0
}

# strays: daemons of this cluster whose pid file is lost (say, started by a concurrent
# up.sh): one of our binaries, with our state dir on its command line.
strays() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case $cmd in
		"$KUBE_BIN"/kube* | */kube-router\ * | */etcd\ * | */containerd\ * | /bin/busybox\ httpd*)
			case $cmd in *"$D/"*) echo "${p#/proc/}" ;; esac ;;
		esac
	done
	return 0
}

# The emulated arm64 node (arm64-node.sh), when it was added: its pods, shims, bridge and rules.
if [ -d "$D/arm64" ]; then
	"$(dirname "$0")/arm64-node.sh" down || log "arm64-node.sh down failed; cleaning up the rest"
fi

# The kubelet first, so that it does not restart what is being removed.
stop kubelet
for pid in $(strays); do
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -- "$KUBE_BIN/kubelet" >/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
done

netns=()
if running containerd; then
	remove_sandboxes "$CONTAINERD_SOCK" "pod sandboxes"
	netns=("${SANDBOX_NETNS[@]}")
fi
kr_bin=$(cat "$RUN/kube-router.bin" 2>/dev/null || true)
kp_bin=$(cat "$RUN/kube-proxy.bin" 2>/dev/null || true)
stop kube-router
stop kube-proxy
for name in registry code-server kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do stop "$name"; done
for pid in $(strays); do
	log "stopping stray $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-60) (pid $pid)"
	kill -9 "$pid" 2>/dev/null || true
done

# Shims outlive containerd; stop them with their containers (the container processes are
# their children).
for pid in $(shim_pids); do
	for child in $(ps -o pid= --ppid "$pid"); do kill -9 "$child" 2>/dev/null || true; done
	kill -9 "$pid" 2>/dev/null || true
done
sleep 0.5

# Mounts: overlay rootfs, shm, secrets and projected volumes under our state dir, netns
# bind mounts. Deepest first.
for ns in "${netns[@]}"; do
	umount "$ns" 2>/dev/null || true
	rm -f "$ns"
done
# Netns of sandboxes CRI did not remove (e.g. made by a kubelet that was being stopped): a
# CNI netns that no process is in any more is an orphan now that our pods are gone.
used=$(for p in /proc/[0-9]*; do stat -L -c %i "$p/ns/net" 2>/dev/null; done | sort -u)
for ns in /run/netns/cni-*; do
	[ -e "$ns" ] || continue
	grep -x "$(stat -L -c %i "$ns" 2>/dev/null)" <<<"$used" >/dev/null && continue
	umount "$ns" 2>/dev/null || true
	rm -f "$ns"
done
mapfile -t mounts < <(awk -v d="$D" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r)
for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
# containerd 1.6's shims mount the rootfs under its state dir, which is ours; netns live in
# /run/netns: the ones of our pods have been removed above.

# Network: the bridge, the DNAT chain of clusters started before kube-proxy ran here, the
# masquerade rules CNI left for our network.
ip link delete "$CNI_BRIDGE" 2>/dev/null || true
for chain in PREROUTING OUTPUT; do
	while iptables -t nat -D "$chain" -j KLAMBDA-DEV 2>/dev/null; do :; done
done
iptables -t nat -F KLAMBDA-DEV 2>/dev/null || true
iptables -t nat -X KLAMBDA-DEV 2>/dev/null || true
# kube-proxy's Service chains (KUBE-SERVICES, KUBE-SVC-*, ...; every proxy mode's).
if [ -n "$kp_bin" ] && [ -x "$kp_bin" ]; then
	"$kp_bin" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || log "kube-proxy --cleanup failed; see $LOGS/kube-proxy.log"
fi
# ... except its "block incoming localnet connections" rule (chain KUBE-FIREWALL), which
# --cleanup leaves.
for chain in INPUT OUTPUT; do
	while iptables -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
done
iptables -F KUBE-FIREWALL 2>/dev/null && iptables -X KUBE-FIREWALL 2>/dev/null || true
# kube-router's NetworkPolicy chains and ipsets.
if [ -n "$kr_bin" ] && [ -x "$kr_bin" ]; then
	"$kr_bin" --cleanup-config >>"$LOGS/kube-router.log" 2>&1 || log "kube-router --cleanup-config failed; see $LOGS/kube-router.log"
fi
# Masquerade (bridge) and hostPort (portmap) rules CNI left for our network, when CRI could
# not run CNI DEL: each names the network in a comment and jumps to a per-pod chain.
iptables-save -t nat 2>/dev/null | grep -- "name: \\\\\"$CNI_NETWORK\\\\\"" | grep '^-A ' | while read -r _ chain rest; do
	target=$(sed -E 's/.* -j (CNI-[A-Za-z0-9-]+).*/\1/' <<<"$rest")
	eval "iptables -t nat -D $chain $rest" 2>/dev/null || true
	case $target in CNI-HOSTPORT-*) ;; CNI-*) iptables -t nat -F "$target" 2>/dev/null || true; iptables -t nat -X "$target" 2>/dev/null || true ;; esac
done || true

left=$(awk -v d="$D" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts)
[ -z "$left" ] || die "mounts are still in place under $D (not deleting it): $left"
[ -z "$(shim_pids)" ] || die "containerd shims still running: $(shim_pids | tr '\n' ' ')"

if $keep; then
	log "cluster stopped; state kept in $D (make dev starts it again)"
else
	rm -rf "$D"
	log "cluster stopped and $D removed"
fi

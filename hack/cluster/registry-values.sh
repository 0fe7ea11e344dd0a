#!/usr/bin/env bash
# Prints Helm values naming, by digest, the images images.sh pushed (PUSH_TO=...; the
# references in $KLAMBDA_CLUSTER_DIR/images/pushed/): klambda's components, the NATS server,
# and the local runtime images with the shim (the one-container shape) for the runtimes
# built here. Runtimes not built here keep the chart's images. make dev CLUSTER=existing
# REGISTRY=... installs with these values.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
P=$D/images/pushed
[ -d "$P" ] || die "nothing pushed: run PUSH_TO=<registry> hack/cluster/images.sh first"
ref() { cat "$P/$1" 2>/dev/null || true; }
# image KEY NAME: KEY's image block by digest, when NAME was pushed.
image() {
	local r
	r=$(ref "$2")
	[ -n "$r" ] || die "images.sh pushed no $2 image"
	printf '%s\n  image: {repository: %s, digest: "%s", pullPolicy: IfNotPresent}\n' "$1:" "${r%@*}" "${r#*@}"
}
image manager manager
image activator activator
image eventsources eventsources
r=$(ref runtime-shim)
[ -n "$r" ] || die "images.sh pushed no runtime-shim image"
# Function pods' pull policy is config.imagePullPolicy, not the shim image's.
printf 'runtimeShim:\n  image: {repository: %s, digest: "%s"}\n' "${r%@*}" "${r#*@}"
r=$(ref code-store)
[ -n "$r" ] || die "images.sh pushed no code-store image"
printf 'codeStore:\n  bundled:\n    image: {repository: %s, digest: "%s", pullPolicy: IfNotPresent}\n' "${r%@*}" "${r#*@}"
[ -z "$(ref nats)" ] || image nats nats
printf 'config:\n  runtimeImages:\n'
provided=$(ref provided-al2023)
[ -n "$provided" ] || die "images.sh pushed no provided.al2023 image"
for rt in provided provided.al2 provided.al2023; do printf '    %s: %s\n' "$rt" "$provided"; done
[ -z "$(ref nodejs-20)" ] || printf '    nodejs20.x: %s\n' "$(ref nodejs-20)"
[ -z "$(ref nodejs-22)" ] || printf '    nodejs22.x: %s\n' "$(ref nodejs-22)"
[ -z "$(ref python-3.11)" ] || printf '    python3.11: %s\n' "$(ref python-3.11)"
[ -z "$(ref python-3.12)" ] || printf '    python3.12: %s\n' "$(ref python-3.12)"
[ -z "$(ref python-3.13)" ] || printf '    python3.13: %s\n' "$(ref python-3.13)"
printf '  embeddedShim:\n    provided: {path: /klambda/runtime-shim}\n'
[ -z "$(ref python-3.11)" ] || printf '    python3.11: {path: /klambda/runtime-shim}\n'

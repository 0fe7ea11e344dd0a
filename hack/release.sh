#!/usr/bin/env bash
# `make release VERSION=x.y.z`: the versioned artifacts of one release in dist/release/x.y.z/
# (ignored by git):
#   bin/<cmd>-linux-{amd64,arm64}   every cmd/ binary, static, --version says x.y.z
#   klambda-x.y.z.tgz               the Helm chart, version and appVersion x.y.z (its image
#                                   tags, runtime images included, follow appVersion)
#   install.yaml, crds.yaml         dist/'s manifests rendered from that chart: image tags x.y.z
#   SHA256SUMS                      sha256sum of all the above
# Images are not built here (no registry on this machine): the Dockerfile builds them
# (docker buildx --platform linux/amd64,linux/arm64 ... --build-arg VERSION=x.y.z).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:?make release VERSION=x.y.z}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "VERSION=$VERSION is not a semantic version (x.y.z)" >&2; exit 1; }
HELM=${HELM:-helm}
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
"$HELM" package "$tmp/klambda" --destination "$OUT" >/dev/null
"$HELM" lint --strict "$OUT/klambda-$VERSION.tgz" >/dev/null

CHART_DIR=$tmp/klambda DIST=$OUT HELM=$HELM hack/dist-manifests.sh
( cd "$OUT" && sha256sum bin/* "klambda-$VERSION.tgz" install.yaml crds.yaml > SHA256SUMS )
echo "release $VERSION in $OUT:"
( cd "$OUT" && ls -1 bin/* ./*.tgz ./*.yaml SHA256SUMS )

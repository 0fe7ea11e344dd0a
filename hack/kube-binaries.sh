#!/usr/bin/env bash
# Builds the Kubernetes components klambda's tests and local cluster run, from the Go
# module proxy (there is no download site for release binaries here), once per version.
# Usage: hack/kube-binaries.sh [component ...]   (default: all)
# Prints the folder that holds the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
cache=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
bin="$cache/kube-$KUBE_VERSION/bin"
mkdir -p "$bin"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# One build at a time: concurrent callers (parallel test packages, make dev) wait for it
# instead of compiling the same packages twice on a small machine.
exec 9>"$bin/.lock"
flock 9

# One multi-call binary (hack/kube/multicall: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy and kubectl, chosen by the name it is called by), and a
# link of each component's name to it: the packages the components share are linked once,
# not six times, and without DWARF (-s -w, as Kubernetes' own release builds). A cache made
# by the former one-binary-per-component build is replaced the same way.
# Built again when the module (versions, the multi-call main) changes.
stamp=$(cat "$here/kube/go.mod" "$here/kube/go.sum" "$here/kube/multicall/main.go" | sha256sum | cut -c1-16)
if [ ! -x "$bin/kube" ] || [ "$(cat "$bin/.kube-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "building the Kubernetes components $KUBE_VERSION, one binary (first time only; ~6 min on 2 idle cores)" >&2
  (cd "$here/kube" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/kube.tmp" ./multicall)
  mv "$bin/kube.tmp" "$bin/kube"
  echo "$stamp" >"$bin/.kube-stamp"
fi
for c in "${components[@]}"; do
  case $c in
  kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy | kubectl) ;;
  *) echo "hack/kube-binaries.sh: no component $c" >&2; exit 2 ;;
  esac
  if [ "$(readlink "$bin/$c" 2>/dev/null)" = kube ]; then continue; fi
  ln -sfn kube "$bin/$c.tmp"
  mv -T "$bin/$c.tmp" "$bin/$c"
done
echo "$bin"

#!/usr/bin/env bash
# Prepares the folder controller-runtime's envtest expects in KUBEBUILDER_ASSETS: a real
# kube-apiserver (built from the Go module proxy by kube-binaries.sh, cached) and etcd
# (Debian's etcd-server). Prints the folder on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KLAMBDA_CACHE:-$HOME/.cache/klambda}
assets="$cache/envtest"
mkdir -p "$assets"

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then echo "etcd is missing and installing it needs root: apt-get install etcd-server" >&2; exit 1; fi
  echo "installing etcd-server from Debian" >&2
  (apt-get install -y -qq etcd-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }) \
    || { echo "could not install etcd-server" >&2; exit 1; }
fi
ln -sf "$(command -v etcd)" "$assets/etcd"

kbin=$("$here/kube-binaries.sh" kube-apiserver | tail -n 1)
ln -sf "$kbin/kube-apiserver" "$assets/kube-apiserver"
echo "$assets"

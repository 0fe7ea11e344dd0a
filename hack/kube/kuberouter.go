//go:build tools

// Package kube pins kube-router, whose network policy controller enforces NetworkPolicy on
// the local cluster (hack/cluster/kube-router.sh builds it from this module; up.sh runs it on
// the node). It shares this module's versions with the Kubernetes components and CoreDNS, so
// a first build compiles the Kubernetes libraries they all use once.
package kube

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"

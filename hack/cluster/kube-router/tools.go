//go:build tools

// Package tools pins kube-router, whose network policy controller enforces NetworkPolicy on
// the local cluster (hack/cluster/kube-router.sh builds it; up.sh runs it on the node).
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"

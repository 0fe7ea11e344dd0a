// Package e2e holds klambda's end-to-end tests: they run against a real single-node cluster
// (hack/cluster: kube-apiserver, kubelet, containerd on this machine) with klambda
// installed by its Helm chart. They are behind the build tag e2e, so `go test ./...`
// skips them; run them with `make test-e2e`.
//
// The suite starts the local cluster when none is up and reuses it when it is (set
// E2E_CLUSTER=existing to use the cluster KUBECONFIG points at instead). Tests of other
// features use the helpers of cluster.go: Start, Namespace, WaitForFunctionActive,
// ScaleFunction, WaitForReadyPod, InvokePod, ServeCode. The activator authorizes every
// invocation: tests that go through it take a token from InvokerToken and a client from
// LambdaClient or ActivatorURL (invoker.go).
package e2e

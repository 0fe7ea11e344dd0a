package activator

// The activator's RBAC: exactly what this binary calls. `make manifests` generates
// config/rbac/activator/role.yaml from these markers and copies it into the chart
// (charts/klambda/files/activator-role.yaml); test/rbac checks the result against a real
// kube-apiserver, both what must be allowed and what must be denied.
//
// Informers (feeder.NewCache): Functions, Versions and Aliases for the router and the async
// workers' configuration; pods (by the function label) for the dispatcher; Deployments
// (by the function label) for the scaler and the pods' owner chain.
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions;versions;aliases,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=list;watch
// A pod serves only if its owner chain (ReplicaSet → Deployment → Function/Version) is
// klambda's: ReplicaSets (by the function label) are cached too.
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=list;watch
//
// scaleclient.Deployments.Scale: spec.replicas through the scale subresource only (no write on the
// Deployment itself, so no way to change a pod template).
// +kubebuilder:rbac:groups=apps,resources=deployments/scale,verbs=patch
//
// scaleclient.Deployments.MarkForRemoval: the pod-deletion-cost annotation on an idle pod (server-side
// apply). Pods' spec is mutable (container images), so the chart also renders a
// ValidatingAdmissionPolicy that lets the activator change that one annotation and nothing
// else (charts/klambda/files/activator-pod-policy.yaml).
// +kubebuilder:rbac:groups="",resources=pods,verbs=patch
//
// pool.Starter (docs/pools.md): the claim of a generic pod (its pool label removed, the
// version's labels, annotations and Deployment as owner) and the deletion of a claimed pod
// (idle past the timeout, or its specialization failed). The same ValidatingAdmissionPolicy
// admits the claim only on a pod labelled lambda.klambda.dev/pool, and the deletion only
// of a pod carrying lambda.klambda.dev/specialized-from.
// +kubebuilder:rbac:groups="",resources=pods,verbs=delete
//
// feeder.PodResizer: the CPU share of a ready environment (pods/resize changes only resources).
// +kubebuilder:rbac:groups="",resources=pods/resize,verbs=patch
//
// invokesecret.Reader (a shim's invoke secret) and the async destinations' SQS credentials: a
// single Get of a named Secret; no list or watch, so no cache of every Secret.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
//
// activator/auth: callers' tokens (TokenReview) and their invoke permission
// (SubjectAccessReview); the async workers' function destinations (SubjectAccessReview
// of the source function's ServiceAccount).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

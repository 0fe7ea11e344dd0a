package controllers

// The manager serves its metrics to callers the API server authenticates (TokenReview)
// and allows get on the non-resource URL /metrics (SubjectAccessReview), as
// controller-runtime's secure metrics do (cmd/manager: --metrics-secure).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

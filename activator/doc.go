// Package activator is klambda's invoke front end. Its parts, each in its own package and
// each testable alone with an in-memory fake of the next:
//
//	invoke               the typed invoke core (Core.Invoke: Input → Output) and the Lambda Invoke API over it
//	auth                 Kubernetes tokens (TokenReview) and the invoke permission (SubjectAccessReview)
//	router               function name + qualifier → version, aliases chosen by weight
//	dispatch             one invocation per environment, waiting for capacity, every concurrency limit
//	shimclient           the HTTP call to a runtime shim's invoke endpoint
//	scaler               spec.replicas of function Deployments, idle environments, pod-deletion-cost
//	fnkey                the key of one function version, shared by router, dispatch, scaler and feeder
//	feeder               informers that feed router and dispatcher (pods → environments)
//	internal/ownerchain  which version a pod or Deployment serves, by its owner chain
//	invokesecret         the invoke token a pod's shim wants (the Secret its annotation names)
//	scaleclient          the scaler's Kubernetes writes (spec.replicas, pod-deletion-cost)
//	metrics              Prometheus metrics named after Lambda's CloudWatch metrics
//
// The activator's RBAC markers are in rbac.go.
package activator

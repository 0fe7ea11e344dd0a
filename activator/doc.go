// Package activator is klambda's invoke front end. Its parts, each in its own package and
// each testable alone with an in-memory fake of the next:
//
//	invoke      the Lambda Invoke API over HTTP: parsing, Lambda's errors, the handler
//	auth        Kubernetes tokens (TokenReview) and the invoke permission (SubjectAccessReview)
//	router      function name + qualifier → version, aliases chosen by weight
//	dispatch    one invocation per environment, waiting for capacity, throttling at limits
//	shimclient  the HTTP call to a runtime shim's invoke endpoint
//	scaler      spec.replicas of function Deployments, idle environments, pod-deletion-cost
//	kube        informers that feed router and dispatcher; the scaler's Kubernetes writes
//	metrics     Prometheus metrics named after Lambda's CloudWatch metrics
package activator

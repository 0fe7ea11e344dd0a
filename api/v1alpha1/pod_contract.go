package v1alpha1

// What the controllers put on a function's pods for the activator to read: one definition
// for both sides of that contract (controllers/README.md, "What other components can rely
// on").
const (
	// AnnotationCPULimit, on a pod whose function container starts with the manager's init
	// CPU, is the CPU limit Lambda's share gives that container: the activator resizes it
	// in place to this value once the environment is ready.
	AnnotationCPULimit = "lambda.klambda.dev/cpu-limit"
	// FunctionContainerName is the name of the function's container in every function pod.
	FunctionContainerName = "function"
)

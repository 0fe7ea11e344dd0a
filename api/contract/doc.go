// Package contract is what klambda's components agree on and nothing else: Lambda's
// constants and limits, the pod contract between the controllers and the activator
// (labels, annotations, the shim's port, field managers, the invoke Secret), the shim's
// wire protocol (headers and paths), condition types and reasons, and id helpers.
//
// Every component imports this package instead of keeping its own copy; a constant that
// two components share belongs here, one that only one component uses stays with it.
// The package imports only the standard library and github.com/google/uuid, so any
// component (and the CRD types) may import it.
package contract

package contract

// Lambda's refusals of a provisioned-concurrency configuration (PutProvisionedConcurrencyConfig),
// word for word. The controllers report a configuration Lambda would refuse as FAILED with
// one of these as its statusReason; such a configuration holds no concurrency, and the
// activator keeps no environment warm for it.
const (
	ProvisionedOnLatest       = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
	ProvisionedOverReserved   = "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function"
	ProvisionedAliasOnVersion = "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
	ProvisionedVersionOfAlias = "Version is pointed by a Provisioned Concurrency alias"
)

// ProvisionedRefused: a FAILED provisioned-concurrency status's statusReason is one of
// Lambda's refusals (as opposed to environments that failed to start, which the activator
// keeps trying to start).
func ProvisionedRefused(statusReason string) bool {
	switch statusReason {
	case ProvisionedOnLatest, ProvisionedOverReserved, ProvisionedAliasOnVersion, ProvisionedVersionOfAlias:
		return true
	}
	return false
}

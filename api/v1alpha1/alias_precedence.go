package v1alpha1

// AliasPrecedes reports whether alias a owns its effective name over b, another Alias of
// the same function with the same effective name (spec.name, or metadata.name): the older
// one (creationTimestamp), then the lower metadata.name. The alias controller marks the
// other Ready=False (DuplicateAlias) and the activator's router ignores it, so a second
// Alias can never take a share of the first one's traffic.
func AliasPrecedes(a, b *Alias) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

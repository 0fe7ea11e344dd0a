// Package fnkey names one version of a function, the unit the activator's parts share:
// the router resolves invocations to it, the dispatcher keeps a pool of environments per
// key, the scaler sizes each key's Deployment, and the cluster feeder fills the pools.
package fnkey

// Key names one version's pool of environments: Version is contract.Latest or a number.
type Key struct{ Namespace, Function, Version string }

func (k Key) String() string { return k.Namespace + "/" + k.Function + ":" + k.Version }

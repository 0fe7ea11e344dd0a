package controlapi

import (
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// qualified is the object a function name and Qualifier name: the Function for $LATEST (no
// qualifier), a Version for a number, an Alias for a name. Exactly one is set.
type qualified struct {
	fn      *lambdav1alpha1.Function
	version *lambdav1alpha1.Version
	alias   *lambdav1alpha1.Alias
}

func (q *qualified) object() client.Object {
	switch {
	case q.fn != nil:
		return q.fn
	case q.version != nil:
		return q.version
	}
	return q.alias
}

func (q *qualified) kind() string {
	switch {
	case q.fn != nil:
		return "function"
	case q.version != nil:
		return "version"
	}
	return "alias"
}

// qualifiedResource is the resource a qualifier names: functions for "" and $LATEST,
// versions for a number, aliases for a name.
func qualifiedResource(qual string) string {
	switch {
	case qual == "" || qual == contract.Latest:
		return "functions"
	case isNumber(qual):
		return "versions"
	}
	return "aliases"
}

// object is the one way an operation reaches what it acts on: it authorizes verb on the
// resource qual names (the function itself by name; versions and aliases, whose object
// names the caller does not know, as a collection), reads the object and, unless verb
// only reads, checks the API may change it (README.md, "Who owns an object").
func (c *call) object(verb, action, name, qual string) (*qualified, *invoke.Error) {
	res := qualifiedResource(qual)
	p := Permission{Verb: verb, Resource: res}
	if res == "functions" {
		p.Name = name
		qual = ""
	}
	if e := c.authorize(p, action, c.h.arn(name, qual)); e != nil {
		return nil, e
	}
	var q qualified
	var e *invoke.Error
	switch res {
	case "functions":
		q.fn, e = c.function(name)
	case "versions":
		q.version, e = c.version(name, qual)
	default:
		q.alias, e = c.alias(name, qual)
	}
	if e != nil {
		return nil, e
	}
	if verb != "get" && verb != "list" {
		if e := writable(q.object(), q.kind()); e != nil {
			return nil, e
		}
	}
	return &q, nil
}

// functionToChange authorizes verb (update, delete) on function name and reads it; the API
// must be allowed to change it.
func (c *call) functionToChange(verb, action, name string) (*lambdav1alpha1.Function, *invoke.Error) {
	q, e := c.object(verb, action, name, "")
	if e != nil {
		return nil, e
	}
	return q.fn, nil
}

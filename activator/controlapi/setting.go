package controlapi

import (
	"net/http"
	"sort"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// setting is a configuration kept in the spec of a function's Function ($LATEST), Versions
// and Aliases — a function URL config, an event invoke config, provisioned concurrency:
// where each kind keeps it (nil: that kind has none) and how an operation reaches it.
// Delete…Config and List…Configs are the same for each (delete, list).
type setting[T any] struct {
	fn      func(*lambdav1alpha1.Function) **T
	version func(*lambdav1alpha1.Version) **T
	alias   func(*lambdav1alpha1.Alias) **T
	// target authorizes verb on what the call's function name and Qualifier name, of a kind
	// that holds the setting, and reads it; qual is the qualifier its ARN carries.
	target func(c *call, verb, action string) (name, qual string, q *qualified, e *invoke.Error)
	// notFound is the error for an object without the setting.
	notFound func(arn string) *invoke.Error
}

// of is the setting in q's object, to read or set (nil: not set).
func (s *setting[T]) of(q *qualified) **T {
	switch {
	case q.fn != nil:
		return s.fn(q.fn)
	case q.version != nil:
		return s.version(q.version)
	}
	return s.alias(q.alias)
}

// delete serves Delete…Config: the setting is removed from what the call names, 204; an
// object without it is notFound.
func (s *setting[T]) delete(action string) op {
	return func(c *call) (int, any, *invoke.Error) {
		name, qual, q, e := s.target(c, "update", action)
		if e != nil {
			return 0, nil, e
		}
		spec := s.of(q)
		if *spec == nil {
			return 0, nil, s.notFound(c.h.arn(name, qual))
		}
		*spec = nil
		if err := c.h.Client.Update(c, q.object(), client.FieldOwner(FieldManager)); err != nil {
			return 0, nil, fromAPI(err, q.kind())
		}
		return http.StatusNoContent, nil, nil
	}
}

// held is the setting as one object holds it: the object, and the qualifier naming it
// ($LATEST for the Function).
type held[T any] struct {
	qual string
	q    *qualified
	cfg  *T
}

// list serves List…Configs up to the answer: for the unqualified function name it
// authorizes get on the function when Functions hold the setting (else it only reads the
// function), list versions when Versions hold it, and list aliases; then it collects the
// setting of $LATEST, the published versions and the aliases that have one, ordered by
// key, and answers a page of them (Marker, MaxItems up to 50).
func (s *setting[T]) list(c *call, action string, key func(name string, it held[T]) string) (string, []held[T], *string, *invoke.Error) {
	name, e := c.unqualified(action)
	if e != nil {
		return "", nil, nil, e
	}
	var items []held[T]
	if s.fn != nil {
		q, e := c.object("get", action, name, "")
		if e != nil {
			return "", nil, nil, e
		}
		if cfg := *s.fn(q.fn); cfg != nil {
			items = append(items, held[T]{contract.Latest, q, cfg})
		}
	}
	if s.version != nil {
		if e := c.authorize(Permission{"list", "versions", ""}, action, c.h.arn(name, "")); e != nil {
			return "", nil, nil, e
		}
	}
	if e := c.authorize(Permission{"list", "aliases", ""}, action, c.h.arn(name, "")); e != nil {
		return "", nil, nil, e
	}
	if s.fn == nil {
		if _, e := c.function(name); e != nil {
			return "", nil, nil, e
		}
	}
	if s.version != nil {
		vs, e := c.versionsOf(name)
		if e != nil {
			return "", nil, nil, e
		}
		for _, v := range publishedVersions(vs) {
			if cfg := *s.version(v); cfg != nil {
				items = append(items, held[T]{v.Status.Version, &qualified{version: v}, cfg})
			}
		}
	}
	as, e := c.aliasesOf(name)
	if e != nil {
		return "", nil, nil, e
	}
	for i := range as {
		a := &as[i]
		if cfg := *s.alias(a); cfg != nil {
			items = append(items, held[T]{aliasName(a), &qualified{alias: a}, cfg})
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return key(name, items[i]) < key(name, items[j]) })
	page, next, e := listPage(c, items, func(it held[T]) string { return key(name, it) }, 50, 50)
	if e != nil {
		return "", nil, nil, e
	}
	return name, page, next, nil
}

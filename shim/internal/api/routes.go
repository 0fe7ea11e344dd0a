package api

import (
	"net/http"
	"slices"
	"strings"
)

// route is one endpoint of a routeTable: the methods it takes (none: any), its path and
// its handler. A path may hold one parameter: "{id}" matches one non-empty segment,
// "{name...}" matches anything, slashes included; handle is given what it matched.
type route struct {
	methods []string
	path    string
	handle  func(w http.ResponseWriter, r *http.Request, param string)

	prefix, suffix string // around the parameter
	param, any     bool   // the path has a parameter; it matches anything
}

// routeTable dispatches a request to the one route whose path matches, or answers
// notFound, or methodNotAllowed when the path is known but not the method.
type routeTable struct {
	routes           []route
	notFound         func(w http.ResponseWriter, r *http.Request)
	methodNotAllowed func(w http.ResponseWriter, r *http.Request)
}

// newRouteTable compiles routes; a path with an unclosed or second parameter panics.
func newRouteTable(notFound, methodNotAllowed func(http.ResponseWriter, *http.Request), routes ...route) *routeTable {
	for i := range routes {
		rt := &routes[i]
		open := strings.IndexByte(rt.path, '{')
		if open < 0 {
			continue
		}
		end := strings.IndexByte(rt.path[open:], '}')
		if end < 0 || strings.ContainsAny(rt.path[open+end+1:], "{}") {
			panic("route " + rt.path + ": want at most one {parameter}")
		}
		rt.param = true
		rt.prefix, rt.suffix = rt.path[:open], rt.path[open+end+1:]
		rt.any = strings.HasSuffix(rt.path[open:open+end], "...")
	}
	return &routeTable{routes: routes, notFound: notFound, methodNotAllowed: methodNotAllowed}
}

// match is the route of path (nil if none) and its parameter.
func (t *routeTable) match(path string) (*route, string) {
	for i := range t.routes {
		rt := &t.routes[i]
		if !rt.param {
			if path == rt.path {
				return rt, ""
			}
			continue
		}
		if !strings.HasPrefix(path, rt.prefix) || !strings.HasSuffix(path, rt.suffix) {
			continue
		}
		var p string
		if n := len(path) - len(rt.suffix); n > len(rt.prefix) {
			p = path[len(rt.prefix):n]
		}
		if rt.any || (p != "" && !strings.Contains(p, "/")) {
			return rt, p
		}
	}
	return nil, ""
}

func (t *routeTable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, param := t.match(r.URL.Path)
	switch {
	case rt == nil:
		t.notFound(w, r)
	case len(rt.methods) > 0 && !slices.Contains(rt.methods, r.Method):
		t.methodNotAllowed(w, r)
	default:
		rt.handle(w, r, param)
	}
}

package functionurl

import (
	"net/http"
	"strconv"
	"strings"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// CORS is a URL's cors configuration, ready to answer with. Lambda handles CORS in
// front of the function: it answers preflight requests itself (the function is not
// invoked) and adds the configured headers to every answer, taking precedence over
// CORS headers the function set.
type CORS struct {
	origins       map[string]bool
	anyOrigin     bool
	methods       string
	anyMethod     bool
	headers       string
	anyHeader     bool
	expose        string
	credentials   bool
	maxAge        string
	configuredAny bool
}

// NewCORS compiles c; nil: no CORS (preflights reach the function as any OPTIONS request).
func NewCORS(c *lambdav1alpha1.Cors) *CORS {
	if c == nil {
		return nil
	}
	x := &CORS{origins: map[string]bool{}, credentials: c.AllowCredentials, configuredAny: true}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			x.anyOrigin = true
		} else {
			x.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
		}
	}
	x.methods, x.anyMethod = joinList(c.AllowMethods, true)
	x.headers, x.anyHeader = joinList(c.AllowHeaders, false)
	x.expose, _ = joinList(c.ExposeHeaders, false)
	if c.MaxAge != nil && *c.MaxAge > 0 {
		x.maxAge = strconv.Itoa(int(*c.MaxAge))
	}
	return x
}

func joinList(l []string, upper bool) (string, bool) {
	out := make([]string, 0, len(l))
	for _, v := range l {
		if v == "*" {
			return "*", true
		}
		if upper {
			v = strings.ToUpper(v)
		}
		out = append(out, v)
	}
	return strings.Join(out, ","), false
}

// IsPreflight: an OPTIONS request with Origin and Access-Control-Request-Method.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// allowOrigin is the Access-Control-Allow-Origin for origin; "" when it is not allowed.
// A wildcard answers "*", or the origin itself with credentials (a browser refuses "*"
// on a credentialed request).
func (c *CORS) allowOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	if c.origins[strings.ToLower(origin)] {
		return origin
	}
	if c.anyOrigin {
		if c.credentials {
			return origin
		}
		return "*"
	}
	return ""
}

// Preflight answers a preflight request: 200 with the configured headers when the
// origin is allowed, without them otherwise (the browser then refuses the call).
func (c *CORS) Preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Vary", "Origin")
	if o := c.allowOrigin(r.Header.Get("Origin")); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
		if c.methods != "" {
			m := c.methods
			if c.anyMethod && c.credentials { // "*" is literal on credentialed requests
				m = r.Header.Get("Access-Control-Request-Method")
			}
			h.Set("Access-Control-Allow-Methods", m)
		}
		if c.headers != "" {
			hs := c.headers
			if c.anyHeader && c.credentials {
				hs = r.Header.Get("Access-Control-Request-Headers")
			}
			if hs != "" {
				h.Set("Access-Control-Allow-Headers", hs)
			}
		}
		if c.credentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if c.maxAge != "" {
			h.Set("Access-Control-Max-Age", c.maxAge)
		}
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// Apply sets the CORS headers of an answer to r, in place of any the function set.
func (c *CORS) Apply(h http.Header, r *http.Request) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
	o := c.allowOrigin(r.Header.Get("Origin"))
	if o == "" {
		return
	}
	h.Set("Access-Control-Allow-Origin", o)
	if o != "*" {
		h.Add("Vary", "Origin")
	}
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

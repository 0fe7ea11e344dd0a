package functionurl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is Lambda's function URL request event: API Gateway's payload format 2.0 with
// the placeholders function URLs put in it (routeKey and stage "$default").
type Event struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        RequestContext    `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

// RequestContext is the event's requestContext.
type RequestContext struct {
	AccountID string `json:"accountId"`
	APIID     string `json:"apiId"`
	// Authentication is null (function URLs don't use it).
	Authentication *struct{} `json:"authentication"`
	// Authorizer is null unless the URL's authType authenticates callers.
	Authorizer   *Authorizer `json:"authorizer"`
	DomainName   string      `json:"domainName"`
	DomainPrefix string      `json:"domainPrefix"`
	HTTP         HTTP        `json:"http"`
	RequestID    string      `json:"requestId"`
	RouteKey     string      `json:"routeKey"`
	Stage        string      `json:"stage"`
	Time         string      `json:"time"`
	TimeEpoch    int64       `json:"timeEpoch"`
}

// HTTP is requestContext.http.
type HTTP struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// Authorizer is requestContext.authorizer, set for authenticated (AWS_IAM, KUBERNETES)
// URLs only.
type Authorizer struct {
	IAM IAM `json:"iam"`
}

// IAM is requestContext.authorizer.iam with the Kubernetes caller in Lambda's fields:
// the user name (as the TokenReview reports it) in callerId, userArn and userId; the
// SigV4 access key id when the caller signed (else empty); accountId the activator's.
type IAM struct {
	AccessKey       string  `json:"accessKey"`
	AccountID       string  `json:"accountId"`
	CallerID        string  `json:"callerId"`
	CognitoIdentity *string `json:"cognitoIdentity"`
	PrincipalOrgID  *string `json:"principalOrgId"`
	UserARN         string  `json:"userArn"`
	UserID          string  `json:"userId"`
}

// Lambda's placeholders (function URLs have no routes or stages).
const (
	PayloadVersion = "2.0"
	DefaultRoute   = "$default"
	DefaultStage   = "$default"
	// TimeLayout is requestContext.time's layout ("12/Mar/2020:19:03:58 +0000").
	TimeLayout = "02/Jan/2006:15:04:05 -0700"
)

// Methods a function URL accepts (Lambda's requestContext.http.method values).
var Methods = map[string]bool{http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodHead: true, http.MethodOptions: true, http.MethodPatch: true, http.MethodDelete: true}

// RequestMeta is what the event says that the HTTP request does not.
type RequestMeta struct {
	AccountID string
	// URLID is the url-id (apiId, domainPrefix); DomainName the URL's host.
	URLID, DomainName string
	RequestID         string
	Received          time.Time
	// RawPath is the path the function sees (path-based URLs strip their prefix);
	// "" takes the request's.
	RawPath    string
	Authorizer *Authorizer
}

// MalformedError is a request the function never sees (400).
type MalformedError struct{ Reason string }

func (e *MalformedError) Error() string { return e.Reason }

// NewEvent maps r (its body already read: body) to the event. A request Lambda would
// refuse is a *MalformedError.
func NewEvent(r *http.Request, body []byte, m RequestMeta) (*Event, error) {
	if !Methods[r.Method] {
		return nil, &MalformedError{"method " + r.Method + " is not one a function URL accepts"}
	}
	rawPath := m.RawPath
	if rawPath == "" {
		rawPath = r.URL.EscapedPath()
	}
	if rawPath == "" {
		rawPath = "/"
	}
	path, err := url.PathUnescape(rawPath)
	if err != nil || !utf8.ValidString(path) {
		return nil, &MalformedError{"the request path is not a valid escaped UTF-8 path"}
	}
	if !utf8.ValidString(r.URL.RawQuery) {
		return nil, &MalformedError{"the query string is not valid UTF-8"}
	}
	query, err := queryParameters(r.URL.RawQuery)
	if err != nil {
		return nil, &MalformedError{"the query string is malformed: " + err.Error()}
	}
	headers, cookies, err := headerMap(r)
	if err != nil {
		return nil, err
	}
	e := &Event{
		Version:               PayloadVersion,
		RouteKey:              DefaultRoute,
		RawPath:               rawPath,
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: query,
		RequestContext: RequestContext{
			AccountID:    m.AccountID,
			APIID:        m.URLID,
			Authorizer:   m.Authorizer,
			DomainName:   m.DomainName,
			DomainPrefix: m.URLID,
			HTTP: HTTP{Method: r.Method, Path: path, Protocol: r.Proto, SourceIP: sourceIP(r),
				UserAgent: r.Header.Get("User-Agent")},
			RequestID: m.RequestID,
			RouteKey:  DefaultRoute,
			Stage:     DefaultStage,
			Time:      m.Received.UTC().Format(TimeLayout),
			TimeEpoch: m.Received.UnixMilli(),
		},
	}
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) && utf8.Valid(body) {
			e.Body = string(body)
		} else {
			e.Body, e.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
	}
	return e, nil
}

// Marshal encodes the event (always valid JSON: every string in it is valid UTF-8).
// &, < and > are kept as they are (no HTML escaping), as in Lambda's events.
func (e *Event) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// queryParameters: each key once, repeated values comma-joined in order.
func queryParameters(raw string) (map[string]string, error) {
	if raw == "" {
		return nil, nil
	}
	q := map[string]string{}
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		v, err = url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, &MalformedError{"a query parameter is not valid UTF-8"}
		}
		if old, ok := q[k]; ok {
			v = old + "," + v
		}
		q[k] = v
	}
	if len(q) == 0 {
		return nil, nil
	}
	return q, nil
}

// headerMap: lower-cased names, repeated headers comma-joined; the Cookie header goes to
// cookies (one entry per cookie) instead; Host (which Go keeps apart) is a header.
func headerMap(r *http.Request) (map[string]string, []string, error) {
	h := make(map[string]string, len(r.Header)+1)
	var cookies []string
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names) // two spellings of one name join in a stable order
	for _, k := range names {
		lk := strings.ToLower(k)
		for _, v := range r.Header[k] {
			if !utf8.ValidString(v) {
				return nil, nil, &MalformedError{"header " + lk + " is not valid UTF-8"}
			}
			if lk == "cookie" {
				for c := range strings.SplitSeq(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
				continue
			}
			if old, ok := h[lk]; ok {
				v = old + "," + v
			}
			h[lk] = v
		}
	}
	if r.Host != "" {
		if !utf8.ValidString(r.Host) {
			return nil, nil, &MalformedError{"the Host header is not valid UTF-8"}
		}
		h["host"] = r.Host
	}
	return h, cookies, nil
}

// isText: bodies of these content types reach the function as text; any other (or none)
// is binary and arrives base64-encoded with isBase64Encoded true.
func isText(contentType string) bool {
	if contentType == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if strings.HasPrefix(mt, "text/") {
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/xml", "application/yaml",
		"application/x-yaml", "application/graphql", "application/ld+json":
		return true
	}
	return strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

func sourceIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

package invoke

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/klambda/klambda/api/contract"
)

func TestParseRequestForms(t *testing.T) {
	cases := []struct {
		path, query, ns, fn, qual string
	}{
		{"/2015-03-31/functions/my-fn/invocations", "", "default", "my-fn", ""},
		{"/2015-03-31/functions/my-fn:prod/invocations", "", "default", "my-fn", "prod"},
		{"/2015-03-31/functions/my-fn%3A7/invocations", "", "default", "my-fn", "7"},
		{"/2015-03-31/functions/my-fn/invocations", "Qualifier=%24LATEST", "default", "my-fn", "$LATEST"},
		{"/2015-03-31/functions/my-fn:live/invocations", "Qualifier=live", "default", "my-fn", "live"},
		{"/2015-03-31/functions/123456789012:function:my-fn/invocations", "", "default", "my-fn", ""},
		{"/2015-03-31/functions/123456789012:function:my-fn:3/invocations", "", "default", "my-fn", "3"},
		{"/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:my-fn/invocations", "", "default", "my-fn", ""},
		{"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn%3Aprod/invocations", "", "default", "my-fn", "prod"},
		{"/namespaces/team-a/2015-03-31/functions/my-fn/invocations", "", "team-a", "my-fn", ""},
	}
	for _, c := range cases {
		r, err := ParseRequest("POST", c.path, c.query, http.Header{}, "default")
		if err != nil {
			t.Errorf("%s?%s: %v", c.path, c.query, err)
			continue
		}
		if r.Namespace != c.ns || r.FunctionName != c.fn || r.Qualifier != c.qual || r.InvocationType != RequestResponse {
			t.Errorf("%s?%s = %+v", c.path, c.query, r)
		}
	}
}

func TestParseRequestErrors(t *testing.T) {
	cases := []struct {
		method, path, query string
		h                   http.Header
		status              int
		typ, msg            string
	}{
		{"POST", "/2015-03-31/functions/my-fn:live/invocations", "Qualifier=prod", nil, 400, "InvalidParameterValueException", "The derived qualifier from the function name does not match the specified qualifier."},
		{"POST", "/2015-03-31/functions/bad%20name/invocations", "", nil, 400, "ValidationException", "at 'functionName' failed to satisfy constraint"},
		{"POST", "/2015-03-31/functions/a:b:c/invocations", "", nil, 400, "ValidationException", "functionName"},
		{"POST", "/2015-03-31/functions/arn:aws:s3:us-east-1:000000000000:function:f/invocations", "", nil, 400, "ValidationException", "functionName"},
		{"POST", "/2015-03-31/functions/f/invocations", "Qualifier=a%2Fb", nil, 400, "ValidationException", "qualifier"},
		{"POST", "/2015-03-31/functions/f/invocations", "", http.Header{"X-Amz-Invocation-Type": {"Later"}}, 400, "ValidationException", "invocationType"},
		{"POST", "/2015-03-31/functions/f/invocations", "", http.Header{"X-Amz-Log-Type": {"All"}}, 400, "ValidationException", "logType"},
		{"POST", "/2015-03-31/functions/f/invocations", "", http.Header{"X-Amz-Client-Context": {"%%%"}}, 400, "InvalidParameterValueException", "Client context"},
		{"POST", "/2015-03-31/functions/f/invocations", "", http.Header{"X-Amz-Client-Context": {strings.Repeat("A", 3584)}}, 400, "InvalidParameterValueException", "Client context"},
		{"GET", "/2015-03-31/functions/f/invocations", "", nil, 405, "UnknownOperationException", "POST"},
		{"POST", "/2015-03-31/functions/f", "", nil, 404, "UnknownOperationException", ""},
		{"POST", "/namespaces/Bad_NS/2015-03-31/functions/f/invocations", "", nil, 400, "ValidationException", "namespace"},
	}
	for _, c := range cases {
		h := c.h
		if h == nil {
			h = http.Header{}
		}
		_, err := ParseRequest(c.method, c.path, c.query, h, "default")
		if err == nil {
			t.Errorf("%s %s?%s: no error", c.method, c.path, c.query)
			continue
		}
		if err.Status != c.status || err.Type != c.typ || !strings.Contains(err.Message, c.msg) {
			t.Errorf("%s %s?%s = %d %s %q", c.method, c.path, c.query, err.Status, err.Type, err.Message)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-Amz-Invocation-Type", "DryRun")
	h.Set("X-Amz-Log-Type", "Tail")
	h.Set("X-Amz-Client-Context", "eyJhIjoxfQ==")
	r, err := ParseRequest("POST", "/2015-03-31/functions/f/invocations", "", h, "d")
	if err != nil || r.InvocationType != DryRun || !r.LogTail || r.ClientContext != "eyJhIjoxfQ==" {
		t.Fatalf("%+v %v", r, err)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add("/2015-03-31/functions/my-fn:prod/invocations", "Qualifier=prod", "RequestResponse", "Tail", "")
	f.Add("/namespaces/a/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:f:1/invocations", "", "DryRun", "", "eyJjdXN0b20iOnt9fQ==")
	f.Add("/2015-03-31/functions/%ZZ/invocations", "Qualifier=%", "Event", "None", "not base64!")
	f.Add("/2015-03-31/functions/a:b:c:d:e:f:g:h:i/invocations", ";;", "", "", "")
	f.Fuzz(func(t *testing.T, path, query, invType, logType, clientContext string) {
		h := http.Header{}
		h.Set("X-Amz-Invocation-Type", invType)
		h.Set("X-Amz-Log-Type", logType)
		h.Set("X-Amz-Client-Context", clientContext)
		r, err := ParseRequest("POST", path, query, h, "default")
		if err != nil {
			if err.Status < 400 || err.Status > 499 || err.Type == "" {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		if !validName(r.FunctionName) || (r.Qualifier != "" && !validQualifier(r.Qualifier)) || !validNamespace(r.Namespace) {
			t.Fatalf("accepted invalid %+v from %q %q", r, path, query)
		}
		if !utf8.ValidString(r.FunctionName) {
			t.Fatal("non-UTF-8 name")
		}
		if r.ClientContext != "" && len(r.ClientContext) > contract.MaxClientContext {
			t.Fatalf("accepted a client context of %d bytes", len(r.ClientContext))
		}
		switch r.InvocationType {
		case RequestResponse, Event, DryRun:
		default:
			t.Fatalf("accepted invocation type %q", r.InvocationType)
		}
	})
}

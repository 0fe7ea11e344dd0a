package invoke

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/klambda/klambda/api/contract"
)

// Invocation types (X-Amz-Invocation-Type).
const (
	RequestResponse = contract.InvocationRequestResponse
	Event           = contract.InvocationEvent
	DryRun          = contract.InvocationDryRun
)

// Request is an Invoke call once its path, query and headers are understood; the payload
// is read later, after routing and authorization, so that a rejected call costs nothing.
type Request struct {
	Namespace string
	// FunctionName is the bare name (metadata.name of the Function), whatever form the
	// caller used (name, name:qualifier, partial or full ARN).
	FunctionName string
	// Qualifier is "" for an unqualified call ($LATEST), else $LATEST, a version or an alias.
	Qualifier      string
	InvocationType string
	LogTail        bool
	// ClientContext is the X-Amz-Client-Context header as sent (base64 JSON).
	ClientContext string
	// ResponseStream: the call is InvokeWithResponseStream (stream.go).
	ResponseStream bool
}

const (
	apiPrefix       = contract.InvokePathPrefix
	invocationsPart = "/invocations"
	nsPrefix        = "/namespaces/"
	maxFunctionName = 170 // Lambda's FunctionName length limit on Invoke

	functionNamePattern = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`
)

// clientContextMessage refuses an X-Amz-Client-Context over Lambda's limit or not base64.
var clientContextMessage = "Client context must be a valid Base64-encoded JSON object of at most " + strconv.Itoa(contract.MaxClientContext) + " bytes."

// ParseRequest reads an Invoke call. defaultNamespace applies when the path has no
// /namespaces/{ns} prefix.
func ParseRequest(method, escapedPath, rawQuery string, h http.Header, defaultNamespace string) (Request, *Error) {
	var req Request
	p := escapedPath
	req.Namespace = defaultNamespace
	if strings.HasPrefix(p, nsPrefix) {
		rest := p[len(nsPrefix):]
		i := strings.IndexByte(rest, '/')
		if i <= 0 {
			return req, errUnknownOperation(escapedPath)
		}
		ns, err := url.PathUnescape(rest[:i])
		if err != nil || !validNamespace(ns) {
			return req, ErrValidation("1 validation error detected: Value '" + rest[:i] + "' at 'namespace' failed to satisfy constraint: Member must be a Kubernetes namespace name")
		}
		req.Namespace = ns
		p = rest[i:]
	}
	prefix, part := apiPrefix, invocationsPart
	if strings.HasPrefix(p, streamPrefix) {
		prefix, part = streamPrefix, streamPart
		req.ResponseStream = true
	}
	if !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, part) || len(p) <= len(prefix)+len(part) {
		return req, errUnknownOperation(escapedPath)
	}
	if method != http.MethodPost {
		return req, &Error{Status: http.StatusMethodNotAllowed, Type: "UnknownOperationException", Fault: "User", Message: "Invoke takes POST, not " + method}
	}
	rawName := p[len(prefix) : len(p)-len(part)]
	name, err := url.PathUnescape(rawName)
	if err != nil || strings.IndexByte(name, '/') >= 0 {
		return req, errFunctionNamePattern(rawName)
	}
	fn, nameQualifier, ok := splitFunctionName(name)
	if !ok {
		return req, errFunctionNamePattern(name)
	}
	req.FunctionName = fn
	req.Qualifier = nameQualifier

	if rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return req, ErrValidation("could not parse the query string: " + err.Error())
		}
		if vs, ok := q["Qualifier"]; ok && len(vs) > 0 && vs[0] != "" {
			qual := vs[0]
			if !validQualifier(qual) {
				return req, ErrValidation("1 validation error detected: Value '" + qual + "' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
			}
			if req.Qualifier != "" && req.Qualifier != qual {
				return req, ErrInvalidParameter("The derived qualifier from the function name does not match the specified qualifier.")
			}
			req.Qualifier = qual
		}
	}

	switch t := headerGet(h, contract.HeaderInvocationType); t {
	case "", RequestResponse:
		req.InvocationType = RequestResponse
	case Event, DryRun:
		if t == Event && req.ResponseStream {
			return req, errStreamInvocationType(t)
		}
		req.InvocationType = t
	default:
		if req.ResponseStream {
			return req, errStreamInvocationType(t)
		}
		return req, errInvocationType(t)
	}
	switch t := headerGet(h, contract.HeaderLogType); t {
	case "", "None":
	case contract.LogTypeTail:
		req.LogTail = true
	default:
		return req, ErrValidation("1 validation error detected: Value '" + t + "' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]")
	}
	if cc := headerGet(h, contract.HeaderClientContext); cc != "" {
		if len(cc) > contract.MaxClientContext {
			return req, ErrInvalidParameter(clientContextMessage)
		}
		if _, err := base64.StdEncoding.DecodeString(cc); err != nil {
			return req, ErrInvalidParameter(clientContextMessage)
		}
		req.ClientContext = cc
	}
	return req, nil
}

func errUnknownOperation(path string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "UnknownOperationException", Fault: "User",
		Message: "This activator serves POST /2015-03-31/functions/{FunctionName}/invocations and /2021-11-15/functions/{FunctionName}/response-streaming-invocations, optionally under /namespaces/{namespace}; not " + path}
}

func errFunctionNamePattern(name string) *Error {
	return ErrValidation("1 validation error detected: Value '" + name + "' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: " + functionNamePattern)
}

// splitFunctionName accepts Lambda's forms of FunctionName: my-function, my-function:v1,
// 123456789012:function:my-function[:v1], arn:aws:lambda:us-west-2:123456789012:function:my-function[:v1].
func splitFunctionName(s string) (name, qualifier string, ok bool) {
	if len(s) == 0 || len(s) > maxFunctionName {
		return "", "", false
	}
	var parts [8]string
	n := 0
	for {
		i := strings.IndexByte(s, ':')
		if n == len(parts)-1 || i < 0 {
			parts[n] = s
			n++
			break
		}
		parts[n] = s[:i]
		n++
		s = s[i+1:]
	}
	if n == len(parts) && strings.IndexByte(parts[n-1], ':') >= 0 {
		return "", "", false
	}
	p := parts[:n]
	switch {
	case p[0] == "arn":
		// arn:partition:lambda:region:account:function:name[:qualifier]
		if (n != 7 && n != 8) || !strings.HasPrefix(p[1], "aws") || p[2] != "lambda" || p[5] != "function" ||
			!validRegion(p[3]) || !validAccount(p[4]) {
			return "", "", false
		}
		name = p[6]
		if n == 8 {
			qualifier = p[7]
		}
	case n == 1:
		name = p[0]
	case n == 2:
		name, qualifier = p[0], p[1]
	case n == 3 || n == 4:
		if !validAccount(p[0]) || p[1] != "function" {
			return "", "", false
		}
		name = p[2]
		if n == 4 {
			qualifier = p[3]
		}
	default:
		return "", "", false
	}
	if !validName(name) {
		return "", "", false
	}
	if n == 2 || n == 4 || n == 8 {
		if qualifier == "" || !(qualifier == contract.Latest || validAliasOrVersion(qualifier)) {
			return "", "", false
		}
	}
	return name, qualifier, true
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 140 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validAliasOrVersion(s string) bool {
	if len(s) == 0 || len(s) > contract.MaxQualifier {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validQualifier(s string) bool {
	return s == contract.Latest || validAliasOrVersion(s)
}

func validAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validRegion accepts the region part of an ARN: empty or like us-east-1, us-gov-west-1.
func validRegion(s string) bool {
	if s == "" {
		return true
	}
	if len(s) < 6 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validNamespace(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s[0] != '-' && s[len(s)-1] != '-'
}

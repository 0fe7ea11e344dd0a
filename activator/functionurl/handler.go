package functionurl

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Writer answers a URL request with the invocation's output, and closes it. WriteBuffered
// is the BUFFERED mode's; a RESPONSE_STREAM writer replaces it for such URLs.
type Writer func(w http.ResponseWriter, r *http.Request, t *Target, out *invoke.Output)

// Handler serves function URLs on the activator's listener, through the Invoke API's
// checks (API: authorization, request bytes, refusal counts) and the same Invoker (the
// typed core, or the replica router in front of it).
type Handler struct {
	Table *Table
	// API is the Invoke API handler whose bounds and authorization URLs share.
	API     *invoke.Handler
	Invoker invoke.Invoker
	// AccountID is requestContext.accountId.
	AccountID string
	// Domain, when set, serves host-based URLs <url-id>.lambda-url.<Domain>; path-based
	// URLs (/lambda-url/<url-id>/...) are served always.
	Domain string
	// Buffered answers BUFFERED URLs (nil: WriteBuffered); Stream answers RESPONSE_STREAM
	// URLs (nil: WriteStream), whose invocations ask for the function's response stream.
	Buffered, Stream Writer
	// Reservations tells each function's reserved concurrency, for Lambda's per-URL rate
	// cap (RateCapPerReserved); nil: no cap.
	Reservations Reservations
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Synced, when set, is closed once Table holds every Function and Alias the
	// informers first listed (the feeder's HasSynced); until then a url-id the table does
	// not know waits for it (at most WaitDeadline, then 500 ServiceException) instead of
	// a 404 for a URL that exists, as the Invoke API's core does (invoke.WaitSynced).
	Synced       <-chan struct{}
	WaitDeadline time.Duration

	caps rateCaps
}

// Match reports whether r is addressed to a function URL: its url-id, the path the
// function sees and the URL's domain name.
func (h *Handler) Match(r *http.Request) (id, rawPath, domain string, ok bool) {
	if h.Domain != "" {
		host := r.Host
		if hst, _, err := net.SplitHostPort(host); err == nil {
			host = hst
		}
		suffix := "." + contract.FunctionURLHostLabel + "." + h.Domain
		if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
			id = strings.ToLower(host[:len(host)-len(suffix)])
			if !strings.Contains(id, ".") {
				return id, "", strings.ToLower(host), true
			}
		}
	}
	p := r.URL.EscapedPath()
	if rest, found := strings.CutPrefix(p, contract.FunctionURLPathPrefix); found {
		id, rawPath, _ = strings.Cut(rest, "/")
		return strings.ToLower(id), "/" + rawPath, r.Host, true
	}
	return "", "", "", false
}

// Wrap sends function URL requests to h and the others to next.
func (h *Handler) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, rawPath, domain, ok := h.Match(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		h.serve(w, r, id, rawPath, domain)
	})
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, id, rawPath, domain string) {
	t, ok := h.Table.Lookup(id)
	if !ok {
		if e := invoke.WaitSynced(r.Context(), h.Synced, h.WaitDeadline); e != nil {
			writeMessage(w, e.Status, e.Type, e.Message)
			return
		}
		if t, ok = h.Table.Lookup(id); !ok {
			writeMessage(w, http.StatusNotFound, "", "Not Found")
			return
		}
	}
	if t.CORS != nil && IsPreflight(r) { // answered in front of the function
		t.CORS.Preflight(w, r)
		return
	}
	write := h.Buffered
	if write == nil {
		write = WriteBuffered
	}
	stream := t.InvokeMode == lambdav1alpha1.InvokeModeResponseStream
	if stream {
		if write = h.Stream; write == nil {
			write = WriteStream
		}
	}
	if !Methods[r.Method] {
		h.refuse(w, r, t, http.StatusBadRequest, "", "Method "+r.Method+" is not allowed on a function URL.")
		return
	}
	var authz *Authorizer
	if t.Auth {
		user, e := h.API.Authorize(r, t.Namespace, t.Function, t.Qualifier)
		if e != nil {
			h.API.CountRefusal(e)
			h.invokeError(w, r, t, e)
			return
		}
		authz = &Authorizer{IAM: IAM{AccessKey: sigV4AccessKey(r.Header), AccountID: h.AccountID,
			CallerID: user, UserARN: user, UserID: user}}
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	if h.Reservations != nil {
		if route, err := h.Reservations.Resolve(t.Namespace, t.Function, ""); err == nil && !h.caps.allow(t.ID, route.ReservedConcurrency, now(), h.Table) {
			e := invoke.ErrThrottled(contract.ReasonReservedRate)
			h.API.CountRefusal(e)
			h.invokeError(w, r, t, e)
			return
		}
	}
	body, release, e := h.API.ReadBody(r, t.Namespace)
	if e != nil {
		h.API.CountRefusal(e)
		h.invokeError(w, r, t, e)
		return
	}
	defer release()
	rid := contract.NewRequestID()
	if t.Auth { // the caller's klambda token is not the function's to replay
		r.Header.Del("Authorization")
		r.Header.Del("X-Amz-Security-Token")
	}
	ev, err := NewEvent(r, body, RequestMeta{AccountID: h.AccountID, URLID: t.ID, DomainName: domain,
		RequestID: rid, Received: now(), RawPath: rawPath, Authorizer: authz})
	if err != nil {
		h.refuse(w, r, t, http.StatusBadRequest, "", "Bad Request: "+err.Error())
		return
	}
	payload, err := ev.Marshal()
	if err != nil {
		h.refuse(w, r, t, http.StatusBadRequest, "", "Bad Request: "+err.Error())
		return
	}
	out, err := h.Invoker.Invoke(r.Context(), &invoke.Input{Namespace: t.Namespace, Function: t.Function,
		Qualifier: t.Qualifier, InvocationType: invoke.RequestResponse, Payload: payload,
		TraceID: r.Header.Get(contract.HeaderTraceID), RequestID: rid, ResponseStream: stream})
	if err != nil {
		h.invokeError(w, r, t, invoke.AsError(err))
		return
	}
	write(w, r, t, out)
}

// refuse answers a request the function never sees.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, t *Target, status int, typ, msg string) {
	if t.CORS != nil {
		t.CORS.Apply(w.Header(), r)
	}
	writeMessage(w, status, typ, msg)
}

// invokeError answers an invocation error with its status, as a URL answers: a small
// JSON {"Message"} (the Invoke API's exception name in x-amzn-ErrorType). Refusals of the
// caller's token or permission say only "Forbidden", as Lambda's URLs do.
func (h *Handler) invokeError(w http.ResponseWriter, r *http.Request, t *Target, e *invoke.Error) {
	msg := e.Message
	if e.Status == http.StatusForbidden {
		msg = "Forbidden"
	}
	if e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	h.refuse(w, r, t, e.Status, e.Type, msg)
}

func writeMessage(w http.ResponseWriter, status int, typ, msg string) {
	b, _ := json.Marshal(struct {
		Message string `json:"Message"`
	}{msg})
	hd := w.Header()
	if typ != "" {
		hd.Set(contract.HeaderErrorType, typ)
	}
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// WriteBuffered is the BUFFERED mode: the whole result, interpreted as Lambda does
// (Interpret); a function error (a timeout included) is 502 Internal Server Error.
func WriteBuffered(w http.ResponseWriter, r *http.Request, t *Target, out *invoke.Output) {
	defer out.Close()
	var resp *Response
	if out.Body == nil {
		resp = &Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}}
	} else {
		b, err := io.ReadAll(io.LimitReader(out.Body, contract.MaxSyncPayload+1))
		switch {
		case err != nil || len(b) > contract.MaxSyncPayload || out.FunctionError != "":
			resp = InternalServerError()
		default:
			resp = Interpret(b)
		}
	}
	writeResponse(w, r, t, out, resp)
}

// writeResponse answers resp whole (with the request id and the URL's CORS headers).
func writeResponse(w http.ResponseWriter, r *http.Request, t *Target, out *invoke.Output, resp *Response) {
	hd := w.Header()
	setHeader(hd, r, t, out, resp)
	hd.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.Body)
	}
}

// sigV4AccessKey is the access key id of a SigV4 Authorization header, "" without one.
func sigV4AccessKey(h http.Header) string {
	a := h.Get("Authorization")
	_, cred, ok := strings.Cut(a, "Credential=")
	if !ok || !strings.HasPrefix(a, "AWS4-HMAC-SHA256") {
		return ""
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// Verifier tells whether a token is a peer activator's.
type Verifier interface {
	IsPeer(ctx context.Context, token string) (bool, error)
}

// Handler serves forwarded invocations on the peer port: it checks the caller is a peer,
// that this replica owns the namespace, and runs the invocation on Core.
type Handler struct {
	Core   invoke.Invoker
	Owns   func(namespace string) bool
	Verify Verifier
}

var payloadPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	ok, err := h.Verify.IsPeer(r.Context(), auth.TokenFrom(r.Header))
	switch {
	case err != nil:
		invoke.ErrService("could not review the peer's token").Write(w)
		return
	case !ok:
		invoke.ErrInvalidToken().Write(w)
		return
	}
	in, err := decode(r.Header)
	if err != nil {
		invoke.ErrInvalidParameter(err.Error()).Write(w)
		return
	}
	if !h.Owns(in.Namespace) {
		notOwner(w)
		return
	}
	buf := payloadPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer payloadPool.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, contract.MaxSyncPayload+1)); err != nil {
		invoke.ErrInvalidParameter("could not read the forwarded payload: " + err.Error()).Write(w)
		return
	}
	in.Payload = buf.Bytes()
	out, err := h.Core.Invoke(r.Context(), &in)
	switch {
	case errors.Is(err, ErrNotOwner):
		notOwner(w) // the shard moved on while the invocation was on its way: nothing ran
		return
	case err != nil:
		invoke.AsError(err).Write(w)
		return
	}
	defer out.Close()
	writeOutput(w, out)
}

// notOwner answers a forwarded invocation of a namespace this replica does not own: the
// forwarder looks the owner up again.
func notOwner(w http.ResponseWriter) {
	w.Header()[hNotOwner] = []string{"true"}
	w.WriteHeader(http.StatusMisdirectedRequest)
}

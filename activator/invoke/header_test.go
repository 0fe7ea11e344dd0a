package invoke

import (
	"net/http"
	"testing"

	"github.com/klambda/klambda/api/contract"
)

// headerGet and shimclient.Millis look names up as they are, which is h.Get only for
// names in canonical form: every one they are given is.
func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, k := range []string{
		contract.HeaderFunctionError, contract.HeaderLogResult, "Content-Type", contract.HeaderFunctionErrorType,
		contract.HeaderResponseStream, contract.HeaderTraceID, contract.HeaderInvocationType, contract.HeaderLogType,
		contract.HeaderClientContext, contract.HeaderDuration, contract.HeaderInitDuration, contract.TrailerDuration,
	} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
	}
	h := http.Header{}
	h.Add("x-amz-function-error", "Unhandled")
	h["X-Amz-Log-Result"] = []string{}
	for _, k := range []string{contract.HeaderFunctionError, contract.HeaderLogResult, contract.HeaderTraceID} {
		if got, want := headerGet(h, k), h.Get(k); got != want {
			t.Errorf("headerGet(%q) = %q, h.Get: %q", k, got, want)
		}
	}
}

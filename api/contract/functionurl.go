package contract

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// Function URLs: the url-id and the URL the controllers report in status.functionUrl and
// the activator serves (activator/functionurl). One definition for both.

// FunctionURLPathPrefix starts a path-based function URL on the activator's listener:
// /lambda-url/<url-id>/<path>. No Invoke API path starts with it (those start with
// /2015-03-31/, /namespaces/, /healthz, /readyz).
const FunctionURLPathPrefix = "/lambda-url/"

// FunctionURLHostLabel is the label between the url-id and the domain in a host-based
// URL: <url-id>.lambda-url.<domain>, as Lambda's <url-id>.lambda-url.<region>.on.aws.
const FunctionURLHostLabel = "lambda-url"

// FunctionURLIDLength is the length of a url-id (Lambda's are 32 characters).
const FunctionURLIDLength = 32

var urlIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// FunctionURLID is the url-id of the function URL of the object with uid (the Function
// for $LATEST, the Alias for an alias), of function in namespace, for qualifier ("" for
// $LATEST). It is stable for the object's life and changes when the object is
// recreated (Lambda: a new function URL has a new address); the UID, which the API server
// makes at random, keeps it from being guessed from the names. 32 characters, [a-z2-7].
func FunctionURLID(uid, namespace, function, qualifier string) string {
	h := sha256.Sum256([]byte("klambda-function-url\x00" + uid + "\x00" + namespace + "\x00" + function + "\x00" + qualifier))
	return strings.ToLower(urlIDEncoding.EncodeToString(h[:]))[:FunctionURLIDLength]
}

// FunctionURL is the URL of url-id id: host-based (scheme://<id>.lambda-url.<domain>/)
// when domain is set, else path-based under pathBase (<pathBase>/lambda-url/<id>/, e.g.
// pathBase http://klambda-activator.klambda-system.svc:8080).
func FunctionURL(id, scheme, domain, pathBase string) string {
	if domain != "" {
		if scheme == "" {
			scheme = "https"
		}
		return scheme + "://" + id + "." + FunctionURLHostLabel + "." + domain + "/"
	}
	return strings.TrimRight(pathBase, "/") + FunctionURLPathPrefix + id + "/"
}

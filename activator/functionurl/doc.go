// Package functionurl serves Lambda function URLs on the activator's listener: a
// Function's ($LATEST) or an Alias's functionUrlConfig becomes a URL,
// <url-id>.lambda-url.<domain> (host-based) or /lambda-url/<url-id>/ (path-based). A
// request becomes Lambda's payload format 2.0 event (event.go), goes through the Invoke
// API's authorization and bounds and the same invoke core, and the function's result
// becomes the HTTP answer as Lambda makes it (response.go); CORS is answered in front of
// the function (cors.go). docs/function-urls.md lists each behaviour with its test.
package functionurl

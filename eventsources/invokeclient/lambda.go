package invokeclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// LambdaInvoker invokes through the activator with the AWS SDK's Lambda client.
type LambdaInvoker struct {
	// ActivatorURL is the activator's base URL, e.g. http://klambda-activator.klambda-system:8080.
	ActivatorURL string
	// Tokens authenticates the poller; nil sends no token.
	Tokens TokenSource
	// HTTPClient, nil for the SDK's default.
	HTTPClient *http.Client
	// TLS, when HTTPClient is nil, is the SDK's default client's TLS configuration (the
	// CA that signed an https ActivatorURL's certificate).
	TLS *tls.Config
	// Region signs requests (the activator ignores it); default us-east-1.
	Region string

	mu      sync.Mutex
	clients map[string]*lambda.Client // by namespace
}

func (l *LambdaInvoker) client(ns string) *lambda.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.clients[ns]; ok {
		return c
	}
	if l.clients == nil {
		l.clients = map[string]*lambda.Client{}
	}
	region := l.Region
	if region == "" {
		region = "us-east-1"
	}
	base := strings.TrimSuffix(l.ActivatorURL, "/")
	if ns != "" {
		base += "/namespaces/" + ns
	}
	opts := lambda.Options{
		Region:       region,
		BaseEndpoint: aws.String(base),
		// Anonymous: the SDK does not sign (the activator checks the bearer token instead).
		Credentials: aws.AnonymousCredentials{},
		// Delivery owns retries: the SDK must not retry throttles behind its back.
		RetryMaxAttempts: 1,
		// Unsigned, so the payload's SHA-256 (for SigV4) is wasted work on every batch.
		APIOptions: []func(*middleware.Stack) error{bearerToken(l.Tokens), v4.RemoveComputePayloadSHA256Middleware},
	}
	if l.HTTPClient != nil {
		opts.HTTPClient = l.HTTPClient
	} else if l.TLS != nil {
		opts.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = l.TLS.Clone()
		})
	}
	c := lambda.New(opts)
	l.clients[ns] = c
	return c
}

// Invoke calls the function synchronously (or asynchronously with req.Async).
func (l *LambdaInvoker) Invoke(ctx context.Context, req Request) (Response, error) {
	typ := types.InvocationTypeRequestResponse
	if req.Async {
		typ = types.InvocationTypeEvent
	}
	in := &lambda.InvokeInput{FunctionName: aws.String(req.FunctionName), InvocationType: typ, Payload: req.Payload}
	// A qualified name "fn:alias" goes as the Qualifier: the activator resolves it.
	if !strings.HasPrefix(req.FunctionName, "arn:") {
		if name, q, ok := strings.Cut(req.FunctionName, ":"); ok {
			in.FunctionName, in.Qualifier = aws.String(name), aws.String(q)
		}
	}
	out, err := l.client(req.Namespace).Invoke(ctx, in)
	if err != nil {
		var tooMany *types.TooManyRequestsException
		if errors.As(err, &tooMany) {
			return Response{StatusCode: http.StatusTooManyRequests}, &ThrottledError{Message: tooMany.ErrorMessage()}
		}
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusTooManyRequests {
			return Response{StatusCode: http.StatusTooManyRequests}, &ThrottledError{Message: err.Error()}
		}
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
	}
	resp := Response{StatusCode: int(out.StatusCode), Payload: out.Payload}
	if out.FunctionError != nil {
		resp.FunctionError = *out.FunctionError
	}
	if out.ExecutedVersion != nil {
		resp.ExecutedVersion = *out.ExecutedVersion
	}
	if id, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata); ok {
		resp.RequestID = id
	}
	return resp, nil
}

// bearerToken sets Authorization: Bearer <token> on every request, as the last step before
// it is sent; with no TokenSource (or an empty token) the request goes without one.
func bearerToken(tokens TokenSource) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("KubernetesBearerToken",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if tokens != nil {
					tok, err := tokens.Token()
					if err != nil {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, err
					}
					if req, ok := in.Request.(*smithyhttp.Request); ok && tok != "" {
						req.Header.Set("Authorization", "Bearer "+tok)
					}
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}

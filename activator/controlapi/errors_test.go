package controlapi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/controlapi"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// Each operation's error cases against the real apiserver: the SDK's errors.As finds
// Lambda's modelled exception, with Lambda's status code and a message that says why.
func TestErrorCases(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	api := r.sdk("")
	zip := ziptest.Bootstrap(t, "x")
	create := func(name string, mod func(*lambda.CreateFunctionInput)) error {
		in := &lambda.CreateFunctionInput{FunctionName: aws.String(name), Role: aws.String(role), Runtime: types.RuntimeProvidedal2023,
			Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip}}
		if mod != nil {
			mod(in)
		}
		_, err := api.CreateFunction(ctx, in)
		return err
	}
	if err := create("exists", nil); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("exists")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// A function applied with kubectl (another field manager, no API label).
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: "code"}, BinaryData: map[string][]byte{"code.zip": zip}}
	if err := k8s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	gitops := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: "gitops"}}
	gitops.Spec.Runtime, gitops.Spec.Handler = "provided.al2023", "bootstrap"
	gitops.Spec.Code.ConfigMapRef = &lambdav1alpha1.ConfigMapCodeSource{Name: "code", Key: "code.zip"}
	if err := k8s.Create(ctx, gitops, client.FieldOwner("argocd-controller")); err != nil {
		t.Fatal(err)
	}

	var (
		notFound  *types.ResourceNotFoundException
		conflict  *types.ResourceConflictException
		invalid   *types.InvalidParameterValueException
		pre       *types.PreconditionFailedException
		tooLarge  *types.RequestTooLargeException
		validator *types.InvalidRequestContentException
	)
	_ = validator
	var apiErr smithy.APIError
	cases := []struct {
		name   string
		call   func() error
		target any
		status int
		msg    string
	}{
		{"GetFunction of an unknown function", func() error {
			_, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
			return err
		}, &notFound, 404, "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
		{"GetFunction of an unknown version", func() error {
			_, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("exists"), Qualifier: aws.String("7")})
			return err
		}, &notFound, 404, "function:exists:7"},
		{"GetFunctionConfiguration of an unknown alias", func() error {
			_, err := api.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("exists:prod")})
			return err
		}, &notFound, 404, "Alias not found"},
		{"CreateFunction of an existing name", func() error { return create("exists", nil) }, &conflict, 409, "Function already exist: exists"},
		{"CreateFunction below the minimum memory (schema)", func() error {
			return create("small", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(64) })
		}, &invalid, 400, "greater than or equal to 128"},
		{"CreateFunction of a Zip without a handler (CEL rule)", func() error {
			return create("nohandler", func(in *lambda.CreateFunctionInput) { in.Handler = nil })
		}, &invalid, 400, "runtime and handler are required when packageType is Zip"},
		{"CreateFunction with a reserved variable (CEL rule)", func() error {
			return create("reserved", func(in *lambda.CreateFunctionInput) {
				in.Environment = &types.Environment{Variables: map[string]string{"AWS_REGION": "x"}}
			})
		}, &invalid, 400, "is a reserved key"},
		{"CreateFunction with a ZipFile that is no zip", func() error {
			return create("badzip", func(in *lambda.CreateFunctionInput) { in.Code.ZipFile = []byte("not a zip") })
		}, &invalid, 400, "Could not unzip uploaded file"},
		{"CreateFunction with two code sources", func() error {
			return create("two", func(in *lambda.CreateFunctionInput) { in.Code.ImageUri = aws.String("registry.test/x:1") })
		}, &invalid, 400, "more than one source"},
		{"CreateFunction with a VpcConfig", func() error {
			return create("vpc", func(in *lambda.CreateFunctionInput) { in.VpcConfig = &types.VpcConfig{SubnetIds: []string{"s"}} })
		}, &invalid, 400, "VpcConfig"},
		{"CreateFunction with a capitalised name", func() error { return create("Hello", nil) }, &invalid, 400, "lower-case"},
		{"CreateFunction with a role that is no role ARN", func() error {
			return create("role", func(in *lambda.CreateFunctionInput) { in.Role = aws.String("admin") })
		}, &invalid, 400, "role"},
		{"UpdateFunctionCode of a function another manager owns", func() error {
			_, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("gitops"), ZipFile: zip})
			return err
		}, &conflict, 409, "managed by argocd-controller"},
		{"DeleteFunction of a function another manager owns", func() error {
			_, err := api.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("gitops")})
			return err
		}, &conflict, 409, "managed by argocd-controller"},
		{"UpdateFunctionConfiguration with a stale RevisionId", func() error {
			_, err := api.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("exists"), RevisionId: aws.String("stale")})
			return err
		}, &pre, 412, "Revision Id"},
		{"UpdateFunctionConfiguration above the maximum timeout (schema)", func() error {
			_, err := api.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("exists"), Timeout: aws.Int32(901)})
			return err
		}, &invalid, 400, "less than or equal to 900"},
		{"PublishVersion with another CodeSha256", func() error {
			_, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("exists"), CodeSha256: aws.String("AAAA")})
			return err
		}, &pre, 412, "CodeSHA256"},
		{"PublishVersion of an unknown function", func() error {
			_, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("nope")})
			return err
		}, &notFound, 404, "Function not found"},
		{"CreateAlias to an unknown version", func() error {
			_, err := api.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("exists"), Name: aws.String("a"), FunctionVersion: aws.String("99")})
			return err
		}, &notFound, 404, "function:exists:99"},
		{"CreateAlias named like a version", func() error {
			_, err := api.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("exists"), Name: aws.String("12"), FunctionVersion: aws.String("$LATEST")})
			return err
		}, &apiErr, 400, "ValidationException"},
		{"GetAlias of an unknown alias", func() error {
			_, err := api.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("exists"), Name: aws.String("nope")})
			return err
		}, &notFound, 404, "Alias not found"},
		{"DeleteFunction of $LATEST by qualifier", func() error {
			_, err := api.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("exists"), Qualifier: aws.String("$LATEST")})
			return err
		}, &invalid, 400, "$LATEST version cannot be deleted"},
		{"DeleteFunction of an unknown version", func() error {
			_, err := api.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("exists"), Qualifier: aws.String("5")})
			return err
		}, &notFound, 404, "function:exists:5"},
		{"ListFunctions with a marker that is not one", func() error {
			_, err := api.ListFunctions(ctx, &lambda.ListFunctionsInput{Marker: aws.String("!!")})
			return err
		}, &invalid, 400, "Marker"},
		{"PutFunctionConcurrency of an unknown function", func() error {
			_, err := api.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("nope"), ReservedConcurrentExecutions: aws.Int32(1)})
			return err
		}, &notFound, 404, "Function not found"},
		{"UpdateFunctionCode above the upload limit", func() error {
			_, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("exists"), ZipFile: make([]byte, 51*1024*1024)})
			return err
		}, &tooLarge, 413, "Request must be smaller than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.As(err, tc.target) {
				t.Fatalf("errors.As(%T) failed: %v", tc.target, err)
			}
			if s := status(err); s != tc.status {
				t.Errorf("status %d, want %d (%v)", s, tc.status, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not say %q", err.Error(), tc.msg)
			}
		})
	}
	// Nothing was created by the refused calls, and the GitOps function is as applied.
	for _, n := range []string{"small", "nohandler", "reserved", "badzip", "two", "vpc", "role"} {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: n}, &lambdav1alpha1.Function{}); !apierrors.IsNotFound(err) {
			t.Errorf("function %s exists after a refused CreateFunction (%v)", n, err)
		}
	}
	if f := r.function(t, "gitops"); f.Spec.Code.ConfigMapRef == nil || f.Spec.Code.URL != "" {
		t.Errorf("the GitOps function was changed: %+v", f.Spec.Code)
	}
	// The opt-in annotation lets the API change it.
	f := r.function(t, "gitops")
	f.Annotations = map[string]string{controlapi.AnnotationWritable: "true"}
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("gitops")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("gitops"), ReservedConcurrentExecutions: aws.Int32(2)}); err != nil {
		t.Fatalf("with %s=true: %v", controlapi.AnnotationWritable, err)
	}
}

// ListFunctions pages with Marker/NextMarker (the SDK's paginator) and FunctionVersion=ALL
// lists published versions too.
func TestListFunctionsPagination(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	api := r.sdk("")
	zip := ziptest.Bootstrap(t, "x")
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("fn-%d", i)
		want = append(want, name)
		if _, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Role: aws.String(role),
			Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip}}); err != nil {
			t.Fatal(err)
		}
	}
	p := lambda.NewListFunctionsPaginator(api, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
	var got []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(out.Functions) > 2 {
			t.Fatalf("a page of %d with MaxItems 2", len(out.Functions))
		}
		for _, f := range out.Functions {
			got = append(got, aws.ToString(f.FunctionName))
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v in 3", got, pages, want)
	}
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn-1")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("fn-1")}); err != nil {
		t.Fatal(err)
	}
	all, err := api.ListFunctions(ctx, &lambda.ListFunctionsInput{FunctionVersion: types.FunctionVersionAll})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for _, f := range all.Functions {
		arns = append(arns, aws.ToString(f.FunctionName)+":"+aws.ToString(f.Version))
	}
	if strings.Join(arns, ",") != "fn-0:$LATEST,fn-1:$LATEST,fn-1:1,fn-2:$LATEST,fn-3:$LATEST,fn-4:$LATEST" {
		t.Fatalf("FunctionVersion=ALL: %v", arns)
	}
}

// Authorization: a ServiceAccount allowed only to get and list functions can GetFunction,
// ListFunctions and GetFunctionUrlConfig; CreateFunction, the writes of URL and event invoke
// configs, event source mappings and layers (and their lists) are 403
// AccessDeniedException and create or store nothing; a token not made for klambda is refused.
func TestAuthorization(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	kube := &auth.Kube{Client: clientset}
	r.handler.Auth = controlapi.NewChecker(kube, clientset)
	admin := r.sdk("")
	r.handler.Auth = nil
	zip := ziptest.Bootstrap(t, "x")
	if _, err := admin.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("seen"), Role: aws.String(role),
		Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip}}); err != nil {
		t.Fatal(err)
	}
	r.handler.Auth = controlapi.NewChecker(kube, clientset)

	if _, err := clientset.CoreV1().ServiceAccounts(r.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.RbacV1().Roles(r.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-functions"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"lambda.klambda.dev"}, Resources: []string{"functions"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.RbacV1().RoleBindings(r.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-functions"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: r.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(aud ...string) string {
		tr, err := clientset.CoreV1().ServiceAccounts(r.ns).CreateToken(ctx, "reader",
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: aud}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reader := r.sdk(token("klambda"))
	if _, err := reader.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("seen")}); err != nil {
		t.Fatalf("GetFunction with get functions: %v", err)
	}
	if out, err := reader.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil || len(out.Functions) != 1 {
		t.Fatalf("ListFunctions with list functions: %v", err)
	}
	deniedErr := func(err error) bool {
		var ae smithy.APIError
		return errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException"
	}
	_, err := reader.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("sneaky"), Role: aws.String(role),
		Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: ziptest.Bootstrap(t, "sneaky")}})
	if !deniedErr(err) || status(err) != 403 || !strings.Contains(err.Error(), "system:serviceaccount:"+r.ns+":reader") ||
		!strings.Contains(err.Error(), "verb create on functions") {
		t.Fatalf("CreateFunction without create functions: %v", err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: "sneaky"}, &lambdav1alpha1.Function{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a refused CreateFunction created the function (%v)", err)
	}
	sneaky, _ := ziptest.Digest(ziptest.Bootstrap(t, "sneaky"))
	if _, err := r.store.Stat(ctx, sneaky); err == nil {
		t.Fatal("a refused CreateFunction stored its code")
	}
	for name, call := range map[string]func() error{
		"UpdateFunctionCode": func() error {
			_, err := reader.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("seen"), ZipFile: zip})
			return err
		},
		"DeleteFunction": func() error {
			_, err := reader.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("seen")})
			return err
		},
		"PublishVersion": func() error {
			_, err := reader.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("seen")})
			return err
		},
		"CreateFunctionUrlConfig": func() error {
			_, err := reader.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("seen"), AuthType: types.FunctionUrlAuthTypeNone})
			return err
		},
		"PutFunctionEventInvokeConfig": func() error {
			_, err := reader.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("seen"), MaximumRetryAttempts: aws.Int32(0)})
			return err
		},
		"CreateEventSourceMapping": func() error {
			_, err := reader.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("seen"), EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q")})
			return err
		},
		"ListEventSourceMappings": func() error {
			_, err := reader.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
			return err
		},
		"PublishLayerVersion": func() error {
			_, err := reader.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("sneaky"), Content: &types.LayerVersionContentInput{ZipFile: ziptest.Bootstrap(t, "sneaky layer")}})
			return err
		},
		"ListLayers": func() error {
			_, err := reader.ListLayers(ctx, &lambda.ListLayersInput{})
			return err
		},
	} {
		if err := call(); !deniedErr(err) || status(err) != 403 {
			t.Errorf("%s without its verb: %v", name, err)
		}
	}
	// Nothing was written by the refused calls; reading a URL config is get functions.
	if f := r.function(t, "seen"); f.Spec.FunctionURLConfig != nil || f.Spec.EventInvokeConfig != nil {
		t.Fatalf("a refused call changed the function: %+v", f.Spec)
	}
	var esms lambdav1alpha1.EventSourceMappingList
	if err := k8s.List(ctx, &esms, client.InNamespace(r.ns)); err != nil || len(esms.Items) != 0 {
		t.Fatalf("a refused CreateEventSourceMapping: %v %d mappings", err, len(esms.Items))
	}
	sneakyLayer, _ := ziptest.Digest(ziptest.Bootstrap(t, "sneaky layer"))
	if _, err := r.store.Stat(ctx, sneakyLayer); err == nil {
		t.Fatal("a refused PublishLayerVersion stored its content")
	}
	var nf *types.ResourceNotFoundException
	if _, err := reader.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("seen")}); !errors.As(err, &nf) {
		t.Fatalf("GetFunctionUrlConfig with get functions: %v", err)
	}
	// A token for the API server (no klambda audience) is no credential here.
	var unrecognized interface{ ErrorCode() string }
	if _, err := r.sdk(token()).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("seen")}); !errors.As(err, &unrecognized) ||
		unrecognized.ErrorCode() != "UnrecognizedClientException" {
		t.Fatalf("an API-server token: %v", err)
	}
}

package controlapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Function URL configs over spec.functionUrlConfig of the Function ($LATEST) and of an
// Alias (Qualifier): Create answers the URL the controller reports in status, Get/Update/
// List/Delete, Lambda's errors, and a GitOps-owned function is not changed.
func TestFunctionURLConfigs(t *testing.T) {
	r, api := newAPIRig(t, "web")
	ctx := context.Background()

	created, err := api.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"),
		AuthType: types.FunctionUrlAuthTypeNone, Cors: &types.Cors{AllowOrigins: []string{"*"}, MaxAge: aws.Int32(60)}})
	if err != nil {
		t.Fatal(err)
	}
	f := r.function(t, "web")
	if f.Spec.FunctionURLConfig == nil || f.Spec.FunctionURLConfig.AuthType != lambdav1alpha1.FunctionURLAuthNone ||
		f.Spec.FunctionURLConfig.Cors == nil || *f.Spec.FunctionURLConfig.Cors.MaxAge != 60 {
		t.Fatalf("spec.functionUrlConfig %+v", f.Spec.FunctionURLConfig)
	}
	if u := aws.ToString(created.FunctionUrl); u == "" || u != f.Status.FunctionURL || !strings.Contains(u, "/lambda-url/") {
		t.Fatalf("CreateFunctionUrlConfig answered FunctionUrl %q; status.functionUrl %q", u, f.Status.FunctionURL)
	}
	if aws.ToString(created.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:web" || created.InvokeMode != types.InvokeModeBuffered ||
		aws.ToString(created.CreationTime) == "" {
		t.Fatalf("CreateFunctionUrlConfig answered %+v", created)
	}
	var conflict *types.ResourceConflictException
	_, err = api.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone})
	wantErr(t, "a second CreateFunctionUrlConfig", err, &conflict, 409, "FunctionUrlConfig exists")

	up, err := api.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: aws.String("web"),
		AuthType: types.FunctionUrlAuthTypeAwsIam, InvokeMode: types.InvokeModeResponseStream})
	if err != nil {
		t.Fatal(err)
	}
	if up.AuthType != types.FunctionUrlAuthTypeAwsIam || up.InvokeMode != types.InvokeModeResponseStream || up.Cors == nil ||
		aws.ToInt32(up.Cors.MaxAge) != 60 || aws.ToString(up.LastModifiedTime) == "" {
		t.Fatalf("UpdateFunctionUrlConfig answered %+v", up)
	}
	got, err := api.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("web")})
	if err != nil || got.AuthType != types.FunctionUrlAuthTypeAwsIam || aws.ToString(got.FunctionUrl) != f.Status.FunctionURL {
		t.Fatalf("GetFunctionUrlConfig: %v %+v", err, got)
	}

	// An alias's URL (Qualifier); a version number is no URL qualifier. The URL config is
	// a change of the Function's spec: PublishVersion waits for the controller to take it in.
	r.waitUpdated(t, api, "web")
	if _, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("web"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	live, err := api.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"), Qualifier: aws.String("live"),
		AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(live.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:web:live" || aws.ToString(live.FunctionUrl) == "" ||
		aws.ToString(live.FunctionUrl) == f.Status.FunctionURL {
		t.Fatalf("the alias's URL config: %+v", live)
	}
	var al lambdav1alpha1.AliasList
	if err := k8s.List(ctx, &al, client.InNamespace(r.ns)); err != nil || len(al.Items) != 1 || al.Items[0].Spec.FunctionURLConfig == nil ||
		al.Items[0].Status.FunctionURL != aws.ToString(live.FunctionUrl) {
		t.Fatalf("the Alias: %v %+v", err, al.Items)
	}
	var apiErr smithy.APIError
	_, err = api.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("web"), Qualifier: aws.String("1")})
	wantErr(t, "a URL config of a version", err, &apiErr, 400, "ValidationException")

	// List pages with MaxItems.
	p := lambda.NewListFunctionUrlConfigsPaginator(api, &lambda.ListFunctionUrlConfigsInput{FunctionName: aws.String("web"), MaxItems: aws.Int32(1)})
	var arns []string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.FunctionUrlConfigs {
			arns = append(arns, aws.ToString(c.FunctionArn))
		}
	}
	if strings.Join(arns, ",") != "arn:aws:lambda:us-east-1:000000000000:function:web,arn:aws:lambda:us-east-1:000000000000:function:web:live" {
		t.Fatalf("ListFunctionUrlConfigs: %v", arns)
	}

	// Schema validation surfaces with the apiserver's message.
	var invalid *types.InvalidParameterValueException
	_, err = api.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: aws.String("web"), Cors: &types.Cors{AllowMethods: []string{"get"}}})
	wantErr(t, "a lower-case CORS method", err, &invalid, 400, "allowMethods")

	// Delete; then Lambda's not-found.
	if _, err := api.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String("web"), Qualifier: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	var notFound *types.ResourceNotFoundException
	_, err = api.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("web"), Qualifier: aws.String("live")})
	wantErr(t, "GetFunctionUrlConfig after the delete", err, &notFound, 404, "function:web:live")
	if _, err := api.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	if f := r.function(t, "web"); f.Spec.FunctionURLConfig != nil {
		t.Fatalf("DeleteFunctionUrlConfig left %+v", f.Spec.FunctionURLConfig)
	}
	_, err = api.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String("web")})
	wantErr(t, "deleting it again", err, &notFound, 404, "function:web")
	_, err = api.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("nope"), AuthType: types.FunctionUrlAuthTypeNone})
	wantErr(t, "a URL for an unknown function", err, &notFound, 404, "Function not found")

	// A function another manager owns is not changed.
	r.gitopsFunction(t, "gitops")
	_, err = api.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("gitops"), AuthType: types.FunctionUrlAuthTypeNone})
	wantErr(t, "a URL for a GitOps function", err, &conflict, 409, "managed by argocd-controller")
	if f := r.function(t, "gitops"); f.Spec.FunctionURLConfig != nil {
		t.Fatal("the GitOps function was changed")
	}
}

// Event invoke configs over spec.eventInvokeConfig of the Function, a Version and an
// Alias: Put replaces, Update merges, a function ARN is a Function destination, others are
// refused; List, Delete and Lambda's errors.
func TestEventInvokeConfigs(t *testing.T) {
	r, api := newAPIRig(t, "async")
	ctx := context.Background()
	const destARN = "arn:aws:lambda:us-east-1:000000000000:function:dest:live"

	put, err := api.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("async"),
		MaximumRetryAttempts: aws.Int32(1), DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(destARN)}}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(put.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:async:$LATEST" || aws.ToInt32(put.MaximumRetryAttempts) != 1 ||
		aws.ToInt32(put.MaximumEventAgeInSeconds) != 21600 || put.LastModified == nil || time.Since(*put.LastModified) > time.Hour ||
		aws.ToString(put.DestinationConfig.OnFailure.Destination) != destARN {
		t.Fatalf("PutFunctionEventInvokeConfig answered %+v", put)
	}
	f := r.function(t, "async")
	if c := f.Spec.EventInvokeConfig; c == nil || *c.MaximumRetryAttempts != 1 || c.DestinationConfig.OnFailure.Function == nil ||
		*c.DestinationConfig.OnFailure.Function != (lambdav1alpha1.FunctionDestination{Name: "dest", Qualifier: "live"}) {
		t.Fatalf("spec.eventInvokeConfig %+v", f.Spec.EventInvokeConfig)
	}
	// Update keeps what it is not given; Put removes it.
	up, err := api.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String("async"), MaximumEventAgeInSeconds: aws.Int32(120)})
	if err != nil || aws.ToInt32(up.MaximumRetryAttempts) != 1 || aws.ToInt32(up.MaximumEventAgeInSeconds) != 120 || up.DestinationConfig == nil {
		t.Fatalf("UpdateFunctionEventInvokeConfig: %v %+v", err, up)
	}
	put, err = api.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("async"), MaximumEventAgeInSeconds: aws.Int32(300)})
	if err != nil || aws.ToInt32(put.MaximumRetryAttempts) != 2 || aws.ToInt32(put.MaximumEventAgeInSeconds) != 300 || put.DestinationConfig != nil {
		t.Fatalf("a second Put: %v %+v", err, put)
	}

	// A version's and an alias's.
	r.waitUpdated(t, api, "async")
	if _, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("async")}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("async"), Name: aws.String("prod"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("async"), Qualifier: aws.String("1"),
		MaximumRetryAttempts: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	var vl lambdav1alpha1.VersionList
	if err := k8s.List(ctx, &vl, client.InNamespace(r.ns)); err != nil || len(vl.Items) != 1 || vl.Items[0].Spec.EventInvokeConfig == nil ||
		*vl.Items[0].Spec.EventInvokeConfig.MaximumRetryAttempts != 0 {
		t.Fatalf("the Version: %v %+v", err, vl.Items)
	}
	if _, err := api.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String("async:prod"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:dest")}}}); err != nil {
		t.Fatal(err)
	}
	var al lambdav1alpha1.AliasList
	if err := k8s.List(ctx, &al, client.InNamespace(r.ns)); err != nil || len(al.Items) != 1 || al.Items[0].Spec.EventInvokeConfig == nil ||
		al.Items[0].Spec.EventInvokeConfig.DestinationConfig.OnSuccess.Function.Name != "dest" {
		t.Fatalf("the Alias: %v %+v", err, al.Items)
	}
	list, err := api.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("async")})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for _, c := range list.FunctionEventInvokeConfigs {
		arns = append(arns, strings.TrimPrefix(aws.ToString(c.FunctionArn), "arn:aws:lambda:us-east-1:000000000000:function:"))
	}
	if strings.Join(arns, ",") != "async:$LATEST,async:1,async:prod" {
		t.Fatalf("ListFunctionEventInvokeConfigs: %v", arns)
	}

	// Errors.
	var invalid *types.InvalidParameterValueException
	_, err = api.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("async"),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:sqs:us-east-1:000000000000:dlq")}}})
	wantErr(t, "an SQS destination ARN", err, &invalid, 400, "set the destination with kubectl")
	_, err = api.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("async"), MaximumRetryAttempts: aws.Int32(5)})
	wantErr(t, "five retries (schema)", err, &invalid, 400, "less than or equal to 2")
	if f := r.function(t, "async"); aws.ToInt32(f.Spec.EventInvokeConfig.MaximumEventAgeInSeconds) != 300 {
		t.Fatalf("a refused Put changed the function: %+v", f.Spec.EventInvokeConfig)
	}
	if _, err := api.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("async")}); err != nil {
		t.Fatal(err)
	}
	var notFound *types.ResourceNotFoundException
	_, err = api.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("async")})
	wantErr(t, "GetFunctionEventInvokeConfig after the delete", err, &notFound, 404, "doesn't have an EventInvokeConfig")
	_, err = api.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("async"), Qualifier: aws.String("7")})
	wantErr(t, "an unknown version", err, &notFound, 404, "function:async:7")
	r.gitopsFunction(t, "gitops")
	var conflict *types.ResourceConflictException
	_, err = api.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("gitops"), MaximumRetryAttempts: aws.Int32(0)})
	wantErr(t, "a GitOps function", err, &conflict, 409, "managed by argocd-controller")
}

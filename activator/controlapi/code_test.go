package controlapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// CreateFunction's other code sources become the Function's: ImageUri (packageType Image,
// shown back in GetFunction's Code) and S3Bucket/S3Key/S3ObjectVersion (code.s3); Publish
// creates a Version that the version controller numbers 1 once the function is Active;
// Put/Get/List/DeleteProvisionedConcurrencyConfig on that version; Tag/Untag/ListTags.
func TestImageS3PublishOnCreateAndProvisioned(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	api := r.sdk("")
	out, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("img"), Role: aws.String(role),
		PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String("registry.test/app:v1")},
		ImageConfig: &types.ImageConfig{Command: []string{"handler"}}, Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	if out.PackageType != types.PackageTypeImage {
		t.Fatalf("CreateFunction answered %+v", out)
	}
	f := r.function(t, "img")
	if f.Spec.PackageType != lambdav1alpha1.PackageTypeImage || f.Spec.Code.ImageURI != "registry.test/app:v1" || f.Spec.ImageConfig.Command[0] != "handler" {
		t.Fatalf("Function spec %+v", f.Spec)
	}
	got, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("img")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.Code.ImageUri) != "registry.test/app:v1" || aws.ToString(got.Code.RepositoryType) != "ECR" ||
		got.Configuration.ImageConfigResponse.ImageConfig.Command[0] != "handler" {
		t.Fatalf("GetFunction Code %+v", got.Code)
	}
	var vl lambdav1alpha1.VersionList
	if err := k8s.List(ctx, &vl, client.InNamespace(r.ns)); err != nil || len(vl.Items) != 1 || vl.Items[0].Spec.FunctionName != "img" {
		t.Fatalf("Publish on CreateFunction: %v %+v", err, vl.Items)
	}
	// The number comes once the function is Active (README: Publish on CreateFunction
	// answers $LATEST); then version 1 is there for the waiter.
	deadline := time.Now().Add(time.Minute)
	for {
		vs, err := api.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("img")})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs.Versions) == 2 && aws.ToString(vs.Versions[1].Version) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no version 1 a minute after CreateFunction with Publish: %+v", vs.Versions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := lambda.NewPublishedVersionActiveWaiter(api).Wait(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("img"), Qualifier: aws.String("1")}, time.Minute); err != nil {
		t.Fatal("version 1 published on create:", err)
	}

	// Provisioned concurrency of version 1: the Version's spec, its status as Lambda's.
	pc, err := api.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("img"),
		Qualifier: aws.String("1"), ProvisionedConcurrentExecutions: aws.Int32(2)})
	if err != nil || aws.ToInt32(pc.RequestedProvisionedConcurrentExecutions) != 2 || pc.Status == "" {
		t.Fatalf("PutProvisionedConcurrencyConfig: %v %+v", err, pc)
	}
	if err := k8s.List(ctx, &vl, client.InNamespace(r.ns)); err != nil || *vl.Items[0].Spec.ProvisionedConcurrentExecutions != 2 {
		t.Fatalf("the Version's provisionedConcurrentExecutions: %v", err)
	}
	gpc, err := api.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("img"), Qualifier: aws.String("1")})
	if err != nil || aws.ToInt32(gpc.RequestedProvisionedConcurrentExecutions) != 2 {
		t.Fatalf("GetProvisionedConcurrencyConfig: %v %+v", err, gpc)
	}
	lpc, err := api.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("img")})
	if err != nil || len(lpc.ProvisionedConcurrencyConfigs) != 1 || aws.ToString(lpc.ProvisionedConcurrencyConfigs[0].FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:img:1" {
		t.Fatalf("ListProvisionedConcurrencyConfigs: %v %+v", err, lpc)
	}
	var invalid *types.InvalidParameterValueException
	if _, err := api.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("img"),
		Qualifier: aws.String("$LATEST"), ProvisionedConcurrentExecutions: aws.Int32(1)}); !errors.As(err, &invalid) {
		t.Fatalf("provisioned concurrency on $LATEST: %v", err)
	}
	if _, err := api.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String("img"), Qualifier: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	var pcnf *types.ProvisionedConcurrencyConfigNotFoundException
	if _, err := api.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("img"), Qualifier: aws.String("1")}); !errors.As(err, &pcnf) {
		t.Fatalf("GetProvisionedConcurrencyConfig after the delete: %v", err)
	}

	if _, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("s3"), Role: aws.String(role),
		Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
		Code: &types.FunctionCode{S3Bucket: aws.String("my-bucket"), S3Key: aws.String("app.zip"), S3ObjectVersion: aws.String("3")}}); err != nil {
		t.Fatal(err)
	}
	s3 := r.function(t, "s3").Spec.Code.S3
	if s3 == nil || s3.Bucket != "my-bucket" || s3.Key != "app.zip" || s3.ObjectVersion != "3" {
		t.Fatalf("code.s3 = %+v", s3)
	}
	// Tags of the function, by its ARN.
	arn := aws.String("arn:aws:lambda:us-east-1:000000000000:function:s3")
	if _, err := api.TagResource(ctx, &lambda.TagResourceInput{Resource: arn, Tags: map[string]string{"team": "a", "env": "dev"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.UntagResource(ctx, &lambda.UntagResourceInput{Resource: arn, TagKeys: []string{"env"}}); err != nil {
		t.Fatal(err)
	}
	tags, err := api.ListTags(ctx, &lambda.ListTagsInput{Resource: arn})
	if err != nil || len(tags.Tags) != 1 || tags.Tags["team"] != "a" {
		t.Fatalf("ListTags: %v %+v", err, tags)
	}
	if f := r.function(t, "s3"); len(f.Spec.Tags) != 1 || f.Spec.Tags["team"] != "a" {
		t.Fatalf("spec.tags = %v", f.Spec.Tags)
	}
	g, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("s3")})
	if err != nil || aws.ToString(g.Code.Location) != "s3://my-bucket/app.zip" {
		t.Fatalf("GetFunction of an S3 function: %v %+v", err, g)
	}
}

package controlapi_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/klambda/klambda/activator/controlapi"
	"github.com/klambda/klambda/test/ziptest"
)

const role = "arn:aws:iam::000000000000:role/default"

// The SDK flow of issue 20 against the real apiserver and controllers: CreateFunction from
// a ZipFile (stored in the code store), FunctionActiveV2, UpdateFunctionCode (conflict
// while in progress, RevisionId, DryRun), FunctionUpdatedV2, UpdateFunctionConfiguration,
// PublishVersion, aliases with RoutingConfig, concurrency, account settings, DeleteFunction.
func TestSDKFlow(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	api := r.sdk("")
	zip1 := ziptest.Bootstrap(t, "v1")
	hex1, b641 := ziptest.Digest(zip1)

	out, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("hello"), Role: aws.String(role), Runtime: types.RuntimeProvidedal2023,
		Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip1}, Description: aws.String("first"),
		MemorySize: aws.Int32(256), Environment: &types.Environment{Variables: map[string]string{"AA": "1"}},
		Tags: map[string]string{"team": "a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.State != types.StatePending || aws.ToString(out.CodeSha256) != b641 || aws.ToString(out.Version) != "$LATEST" ||
		aws.ToString(out.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:hello" {
		t.Fatalf("CreateFunction answered %+v", out)
	}
	if _, err := r.store.Stat(ctx, hex1); err != nil {
		t.Fatalf("the uploaded zip is not in the code store: %v", err)
	}
	f := r.function(t, "hello")
	if f.Labels[controlapi.LabelManagedBy] != controlapi.ManagedByValue || f.Spec.Code.SHA256 != hex1 ||
		!strings.HasSuffix(f.Spec.Code.URL, "/blobs/sha256:"+hex1) || f.Spec.MemorySize != 256 || f.Spec.Tags["team"] != "a" {
		t.Fatalf("the Function object: labels %v spec %+v", f.Labels, f.Spec)
	}

	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, time.Minute); err != nil {
		t.Fatal("FunctionActiveV2:", err)
	}
	got, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
	if err != nil {
		t.Fatal(err)
	}
	c := got.Configuration
	if c.State != types.StateActive || c.LastUpdateStatus != types.LastUpdateStatusSuccessful || aws.ToString(c.CodeSha256) != b641 ||
		c.CodeSize != int64(len(zip1)) || aws.ToString(c.RevisionId) == "" || got.Tags["team"] != "a" ||
		c.Environment.Variables["AA"] != "1" || aws.ToString(c.Description) != "first" || aws.ToInt32(c.MemorySize) != 256 {
		t.Fatalf("GetFunction after FunctionActiveV2: %+v %+v", c, got.Tags)
	}
	rev1 := aws.ToString(c.RevisionId)

	// UpdateFunctionCode: InProgress at once; a second update meanwhile is Lambda's conflict.
	zip2 := ziptest.Bootstrap(t, "v2")
	_, b642 := ziptest.Digest(zip2)
	up, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zip2, RevisionId: aws.String(rev1)})
	if err != nil {
		t.Fatal(err)
	}
	if up.LastUpdateStatus != types.LastUpdateStatusInProgress || aws.ToString(up.CodeSha256) != b642 {
		t.Fatalf("UpdateFunctionCode answered %s %s", up.LastUpdateStatus, aws.ToString(up.CodeSha256))
	}
	var conflict *types.ResourceConflictException
	if _, err := api.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("hello"), Timeout: aws.Int32(9)}); !errors.As(err, &conflict) ||
		!strings.Contains(aws.ToString(conflict.Message), "An update is in progress") {
		t.Fatalf("an update during an update: %v", err)
	}
	if err := lambda.NewFunctionUpdatedV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, time.Minute); err != nil {
		t.Fatal("FunctionUpdatedV2:", err)
	}
	cfg, err := api.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(cfg.CodeSha256) != b642 || aws.ToString(cfg.RevisionId) == rev1 {
		t.Fatalf("after the update: code %s revision %s (was %s)", aws.ToString(cfg.CodeSha256), aws.ToString(cfg.RevisionId), rev1)
	}

	// A stale RevisionId, and a DryRun that changes nothing.
	var pre *types.PreconditionFailedException
	if _, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zip1, RevisionId: aws.String(rev1)}); !errors.As(err, &pre) {
		t.Fatalf("stale RevisionId: %v", err)
	}
	zip3 := ziptest.Bootstrap(t, "dry")
	hex3, b643 := ziptest.Digest(zip3)
	dry, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zip3, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(dry.CodeSha256) != b643 {
		t.Errorf("DryRun answered code %s", aws.ToString(dry.CodeSha256))
	}
	if _, err := r.store.Stat(ctx, hex3); err == nil {
		t.Error("DryRun stored the zip")
	}
	if f := r.function(t, "hello"); f.Spec.Code.SHA256 == hex3 {
		t.Error("DryRun changed the function")
	}

	// UpdateFunctionConfiguration.
	if _, err := api.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("hello"),
		Timeout: aws.Int32(9), Environment: &types.Environment{Variables: map[string]string{"BB": "2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionUpdatedV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, time.Minute); err != nil {
		t.Fatal("FunctionUpdatedV2:", err)
	}
	if f := r.function(t, "hello"); f.Spec.Timeout != 9 || len(f.Spec.Environment.Variables) != 1 || f.Spec.Environment.Variables[0].Name != "BB" {
		t.Fatalf("UpdateFunctionConfiguration wrote %+v", f.Spec)
	}

	// PublishVersion: 1; again with nothing changed: 1 again.
	v1, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello"), Description: aws.String("one")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(v1.Version) != "1" || aws.ToString(v1.CodeSha256) != b642 || aws.ToString(v1.Description) != "one" ||
		aws.ToString(v1.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:hello:1" {
		t.Fatalf("PublishVersion: %+v", v1)
	}
	if err := lambda.NewPublishedVersionActiveWaiter(api).Wait(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("hello"), Qualifier: aws.String("1")}, time.Minute); err != nil {
		t.Fatal("PublishedVersionActive:", err)
	}
	again, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello")})
	if err != nil || aws.ToString(again.Version) != "1" {
		t.Fatalf("publishing again without a change: %v %v", err, again)
	}
	if _, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello"), CodeSha256: aws.String(b641)}); !errors.As(err, &pre) {
		t.Fatalf("PublishVersion with another CodeSha256: %v", err)
	}
	// Version 2 from new code, published by UpdateFunctionCode... then PublishVersion.
	if _, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zip1}); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionUpdatedV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	v2, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello")})
	if err != nil || aws.ToString(v2.Version) != "2" || aws.ToString(v2.CodeSha256) != b641 {
		t.Fatalf("version 2: %v %+v", err, v2)
	}
	vs, err := api.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("hello")})
	if err != nil {
		t.Fatal(err)
	}
	var nums []string
	for _, v := range vs.Versions {
		nums = append(nums, aws.ToString(v.Version))
	}
	if !slices.Equal(nums, []string{"$LATEST", "1", "2"}) {
		t.Fatalf("ListVersionsByFunction: %v", nums)
	}

	// Aliases with routing.
	al, err := api.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("hello"), Name: aws.String("Live"), FunctionVersion: aws.String("1")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(al.AliasArn) != "arn:aws:lambda:us-east-1:000000000000:function:hello:Live" {
		t.Fatalf("CreateAlias: %+v", al)
	}
	if _, err := api.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("hello"), Name: aws.String("Live"), FunctionVersion: aws.String("1")}); !errors.As(err, &conflict) {
		t.Fatalf("a second alias Live: %v", err)
	}
	if _, err := api.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("hello"), Name: aws.String("Live"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.25}}}); err != nil {
		t.Fatal(err)
	}
	ga, err := api.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("hello"), Name: aws.String("Live")})
	if err != nil || ga.RoutingConfig == nil || ga.RoutingConfig.AdditionalVersionWeights["2"] != 0.25 || aws.ToString(ga.FunctionVersion) != "1" {
		t.Fatalf("GetAlias: %v %+v", err, ga)
	}
	las, err := api.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("hello")})
	if err != nil || len(las.Aliases) != 1 || aws.ToString(las.Aliases[0].Name) != "Live" {
		t.Fatalf("ListAliases: %v %+v", err, las)
	}
	viaAlias, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello"), Qualifier: aws.String("Live")})
	if err != nil || aws.ToString(viaAlias.Configuration.Version) != "1" || aws.ToString(viaAlias.Configuration.CodeSha256) != b642 {
		t.Fatalf("GetFunction through the alias: %v %+v", err, viaAlias)
	}
	if _, err := api.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello"), Qualifier: aws.String("2")}); !errors.As(err, &conflict) {
		t.Fatalf("deleting version 2, which the alias routes to: %v", err)
	}

	// Concurrency and account settings.
	pc, err := api.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"), ReservedConcurrentExecutions: aws.Int32(5)})
	if err != nil || aws.ToInt32(pc.ReservedConcurrentExecutions) != 5 {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	gc, err := api.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("hello")})
	if err != nil || aws.ToInt32(gc.ReservedConcurrentExecutions) != 5 {
		t.Fatalf("GetFunctionConcurrency: %v %+v", err, gc)
	}
	as, err := api.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil || as.AccountLimit.ConcurrentExecutions != 100 || aws.ToInt32(as.AccountLimit.UnreservedConcurrentExecutions) != 95 || as.AccountUsage.FunctionCount != 1 {
		t.Fatalf("GetAccountSettings: %v %+v %+v", err, as.AccountLimit, as.AccountUsage)
	}
	var invalid *types.InvalidParameterValueException
	if _, err := api.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"), ReservedConcurrentExecutions: aws.Int32(101)}); !errors.As(err, &invalid) {
		t.Fatalf("reserving more than the namespace has: %v", err)
	}
	if _, err := api.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatal(err)
	}
	if f := r.function(t, "hello"); f.Spec.ReservedConcurrentExecutions != nil {
		t.Fatal("DeleteFunctionConcurrency left the reservation")
	}

	// Delete the alias, then the function.
	if _, err := api.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("hello"), Name: aws.String("Live")}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatal(err)
	}
	var nf *types.ResourceNotFoundException
	if _, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")}); !errors.As(err, &nf) {
		t.Fatalf("GetFunction after DeleteFunction: %v", err)
	}
}

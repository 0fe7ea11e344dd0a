package controlapi_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

func (r *rig) esm(t *testing.T, uuid string) *lambdav1alpha1.EventSourceMapping {
	t.Helper()
	var l lambdav1alpha1.EventSourceMappingList
	if err := k8s.List(context.Background(), &l, client.InNamespace(r.ns)); err != nil {
		t.Fatal(err)
	}
	for i := range l.Items {
		if string(l.Items[i].UID) == uuid {
			return &l.Items[i]
		}
	}
	return nil
}

// Event source mappings over EventSourceMapping objects: a Kafka cluster
// (SelfManagedEventSource) and an SQS queue ARN; the UUID is the object's UID; Get, Update,
// List with filters and pages, Delete; other sources and members are refused.
func TestEventSourceMappings(t *testing.T) {
	r, api := newAPIRig(t, "consumer")
	ctx := context.Background()

	kafka, err := api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("consumer"),
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {"kafka.kafka.svc:9092"}}},
		Topics:                 []string{"orders"}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(50),
		SourceAccessConfigurations: []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth,
			URI: aws.String("arn:aws:secretsmanager:us-east-1:000000000000:secret:kafka-creds")}}})
	if err != nil {
		t.Fatal(err)
	}
	m := r.esm(t, aws.ToString(kafka.UUID))
	if m == nil {
		t.Fatalf("no EventSourceMapping with UID %s", aws.ToString(kafka.UUID))
	}
	if m.Labels["lambda.klambda.dev/managed-by"] != "lambda-api" || m.Spec.FunctionName != "consumer" || m.Spec.SelfManagedEventSource == nil ||
		!slices.Equal(m.Spec.SelfManagedEventSource.Endpoints.KafkaBootstrapServers, []string{"kafka.kafka.svc:9092"}) ||
		!slices.Equal(m.Spec.Topics, []string{"orders"}) || *m.Spec.BatchSize != 50 || m.Spec.StartingPosition != lambdav1alpha1.StartingPositionTrimHorizon ||
		len(m.Spec.SourceAccessConfigurations) != 1 || m.Spec.SourceAccessConfigurations[0].SecretRef.Name != "kafka-creds" {
		t.Fatalf("the EventSourceMapping: labels %v spec %+v", m.Labels, m.Spec)
	}
	if aws.ToString(kafka.State) != "Creating" || aws.ToString(kafka.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:consumer" ||
		aws.ToString(kafka.EventSourceMappingArn) != "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:"+aws.ToString(kafka.UUID) ||
		kafka.LastModified == nil || aws.ToString(kafka.SourceAccessConfigurations[0].URI) != "arn:aws:secretsmanager:us-east-1:000000000000:secret:kafka-creds" {
		t.Fatalf("CreateEventSourceMapping answered %+v", kafka)
	}

	sqs, err := api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("consumer"),
		EventSourceArn: aws.String("arn:aws:sqs:eu-west-1:123456789012:jobs"), BatchSize: aws.Int32(5),
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":{"kind":["a"]}}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	ms := r.esm(t, aws.ToString(sqs.UUID))
	if ms == nil || ms.Spec.SQS == nil || ms.Spec.SQS.QueueURL != "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs" || ms.Spec.SQS.Region != "eu-west-1" ||
		len(ms.Spec.FilterCriteria.Filters) != 1 {
		t.Fatalf("the SQS EventSourceMapping: %+v", ms)
	}
	if aws.ToString(sqs.EventSourceArn) != "arn:aws:sqs:eu-west-1:123456789012:jobs" || aws.ToInt32(sqs.BatchSize) != 5 {
		t.Fatalf("CreateEventSourceMapping (SQS) answered %+v", sqs)
	}

	got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: kafka.UUID})
	if err != nil || aws.ToInt32(got.BatchSize) != 50 || got.SelfManagedEventSource == nil || got.Topics[0] != "orders" {
		t.Fatalf("GetEventSourceMapping: %v %+v", err, got)
	}
	up, err := api.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: kafka.UUID, BatchSize: aws.Int32(20), Enabled: aws.Bool(false),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:consumer")}}})
	if err != nil || aws.ToInt32(up.BatchSize) != 20 || aws.ToString(up.DestinationConfig.OnFailure.Destination) != "arn:aws:lambda:us-east-1:000000000000:function:consumer" {
		t.Fatalf("UpdateEventSourceMapping: %v %+v", err, up)
	}
	if m := r.esm(t, aws.ToString(kafka.UUID)); *m.Spec.Enabled || *m.Spec.BatchSize != 20 || m.Spec.DestinationConfig.OnFailure.Function.Name != "consumer" {
		t.Fatalf("after the update: %+v", m.Spec)
	}

	// List: filters and pages.
	bySource, err := api.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{EventSourceArn: aws.String("arn:aws:sqs:eu-west-1:123456789012:jobs")})
	if err != nil || len(bySource.EventSourceMappings) != 1 || aws.ToString(bySource.EventSourceMappings[0].UUID) != aws.ToString(sqs.UUID) {
		t.Fatalf("ListEventSourceMappings by EventSourceArn: %v %+v", err, bySource)
	}
	p := lambda.NewListEventSourceMappingsPaginator(api, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("consumer"), MaxItems: aws.Int32(1)})
	var uuids []string
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range page.EventSourceMappings {
			uuids = append(uuids, aws.ToString(m.UUID))
		}
	}
	slices.Sort(uuids)
	want := []string{aws.ToString(kafka.UUID), aws.ToString(sqs.UUID)}
	slices.Sort(want)
	if !slices.Equal(uuids, want) || pages != 2 {
		t.Fatalf("ListEventSourceMappings by FunctionName, 1 a page: %v in %d pages", uuids, pages)
	}
	if other, err := api.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("other")}); err != nil || len(other.EventSourceMappings) != 0 {
		t.Fatalf("ListEventSourceMappings of another function: %v %+v", err, other)
	}

	// Refused sources and members, Lambda's errors.
	var invalid *types.InvalidParameterValueException
	var notFound *types.ResourceNotFoundException
	var conflict *types.ResourceConflictException
	_, err = api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("consumer"),
		EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/s"), StartingPosition: types.EventSourcePositionLatest})
	wantErr(t, "a Kinesis stream", err, &invalid, 400, "Kinesis, DynamoDB, MSK, Amazon MQ and DocumentDB are not supported")
	_, err = api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("nope"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q")})
	wantErr(t, "an unknown function", err, &notFound, 404, "Function not found")
	_, err = api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("consumer"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q"), StartingPosition: types.EventSourcePositionLatest})
	wantErr(t, "a starting position for a queue (CEL rule)", err, &invalid, 400, "startingPosition is only supported for stream sources")
	_, err = api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("consumer"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q"), Tags: map[string]string{"a": "b"}})
	wantErr(t, "tags", err, &invalid, 400, "do not support Tags")
	_, err = api.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: sqs.UUID,
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:consumer")}}})
	wantErr(t, "an OnSuccess destination", err, &invalid, 400, "not OnSuccess")
	_, err = api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String("00000000-0000-0000-0000-000000000000")})
	wantErr(t, "an unknown UUID", err, &notFound, 404, "does not exist")
	if _, err := api.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{MaxItems: aws.Int32(20000)}); err == nil ||
		!strings.Contains(err.Error(), "ValidationException") {
		t.Fatalf("MaxItems 20000: %v", err)
	}

	// A mapping another manager owns.
	gitops := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: "flux"},
		Spec: lambdav1alpha1.EventSourceMappingSpec{FunctionName: "consumer", SQS: &lambdav1alpha1.SQSQueue{QueueURL: "http://elasticmq:9324/000000000000/q"}}}
	if err := k8s.Create(ctx, gitops, client.FieldOwner("kustomize-controller")); err != nil {
		t.Fatal(err)
	}
	_, err = api.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(string(gitops.UID)), BatchSize: aws.Int32(1)})
	wantErr(t, "a GitOps mapping", err, &conflict, 409, "managed by kustomize-controller")

	del, err := api.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: sqs.UUID})
	if err != nil || aws.ToString(del.State) != "Deleting" {
		t.Fatalf("DeleteEventSourceMapping: %v %+v", err, del)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: ms.Name}, &lambdav1alpha1.EventSourceMapping{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the mapping is still there after DeleteEventSourceMapping: %v", err)
	}
	_, err = api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: sqs.UUID})
	wantErr(t, "GetEventSourceMapping after the delete", err, &notFound, 404, "does not exist")
}

// Layers over LayerVersion objects: PublishLayerVersion stores the ZipFile in the code
// store and answers the number the controller assigns; Get (by number and by ARN),
// ListLayers, ListLayerVersions (newest first, paged), a function using a published layer,
// DeleteLayerVersion (idempotent), and Lambda's errors.
func TestLayers(t *testing.T) {
	r, api := newAPIRig(t, "")
	ctx := context.Background()
	zip1, zip2 := ziptest.Bootstrap(t, "lib v1"), ziptest.Bootstrap(t, "lib v2")
	hex1, b641 := ziptest.Digest(zip1)

	v1, err := api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("shared-libs"),
		Content: &types.LayerVersionContentInput{ZipFile: zip1}, CompatibleRuntimes: []types.Runtime{types.RuntimeProvidedal2023},
		Description: aws.String("first"), LicenseInfo: aws.String("MIT")})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || aws.ToString(v1.LayerVersionArn) != "arn:aws:lambda:us-east-1:000000000000:layer:shared-libs:1" ||
		aws.ToString(v1.LayerArn) != "arn:aws:lambda:us-east-1:000000000000:layer:shared-libs" || aws.ToString(v1.Content.CodeSha256) != b641 ||
		v1.Content.CodeSize != int64(len(zip1)) || aws.ToString(v1.Description) != "first" || aws.ToString(v1.CreatedDate) == "" {
		t.Fatalf("PublishLayerVersion answered %+v %+v", v1, v1.Content)
	}
	if _, err := r.store.Stat(ctx, hex1); err != nil {
		t.Fatalf("the layer's zip is not in the code store: %v", err)
	}
	v2, err := api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("shared-libs"), Content: &types.LayerVersionContentInput{ZipFile: zip2}})
	if err != nil || v2.Version != 2 {
		t.Fatalf("the second version: %v %+v", err, v2)
	}
	other, err := api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("Other_Layer"), Content: &types.LayerVersionContentInput{ZipFile: zip1}})
	if err != nil || other.Version != 1 {
		t.Fatalf("a layer named with capitals and _: %v %+v", err, other)
	}

	g, err := api.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("shared-libs"), VersionNumber: aws.Int64(1)})
	if err != nil || aws.ToString(g.LicenseInfo) != "MIT" || g.CompatibleRuntimes[0] != types.RuntimeProvidedal2023 {
		t.Fatalf("GetLayerVersion: %v %+v", err, g)
	}
	if g, err := api.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String("arn:aws:lambda:us-east-1:000000000000:layer:shared-libs:2")}); err != nil || g.Version != 2 {
		t.Fatalf("GetLayerVersionByArn: %v %+v", err, g)
	}
	layers, err := api.ListLayers(ctx, &lambda.ListLayersInput{})
	if err != nil || len(layers.Layers) != 2 || aws.ToString(layers.Layers[0].LayerName) != "Other_Layer" ||
		aws.ToString(layers.Layers[1].LayerName) != "shared-libs" || layers.Layers[1].LatestMatchingVersion.Version != 2 {
		t.Fatalf("ListLayers: %v %+v", err, layers)
	}
	if compat, err := api.ListLayers(ctx, &lambda.ListLayersInput{CompatibleRuntime: types.RuntimeProvidedal2023}); err != nil ||
		len(compat.Layers) != 1 || compat.Layers[0].LatestMatchingVersion.Version != 1 {
		t.Fatalf("ListLayers compatible with provided.al2023: %v %+v", err, compat)
	}
	p := lambda.NewListLayerVersionsPaginator(api, &lambda.ListLayerVersionsInput{LayerName: aws.String("shared-libs"), MaxItems: aws.Int32(1)})
	var nums []int64
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.LayerVersions {
			nums = append(nums, v.Version)
		}
	}
	if !slices.Equal(nums, []int64{2, 1}) {
		t.Fatalf("ListLayerVersions, one a page: %v", nums)
	}

	// A function uses a published layer.
	if _, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("user"), Role: aws.String(role),
		Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: ziptest.Bootstrap(t, "user")},
		Layers: []string{aws.ToString(v1.LayerVersionArn)}}); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("user")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	cfg, err := api.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("user")})
	if err != nil || len(cfg.Layers) != 1 || aws.ToString(cfg.Layers[0].Arn) != aws.ToString(v1.LayerVersionArn) || cfg.Layers[0].CodeSize != int64(len(zip1)) {
		t.Fatalf("the function's layers: %v %+v", err, cfg.Layers)
	}

	// Delete (idempotent), then not found.
	for range 2 {
		if _, err := api.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("shared-libs"), VersionNumber: aws.Int64(2)}); err != nil {
			t.Fatal(err)
		}
	}
	var notFound *types.ResourceNotFoundException
	_, err = api.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("shared-libs"), VersionNumber: aws.Int64(2)})
	wantErr(t, "a deleted layer version", err, &notFound, 404, "layer:shared-libs:2")

	var invalid *types.InvalidParameterValueException
	_, err = api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("bad"), Content: &types.LayerVersionContentInput{ZipFile: []byte("not a zip")}})
	wantErr(t, "content that is no zip", err, &invalid, 400, "Could not unzip")
	_, err = api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("bad"), Content: &types.LayerVersionContentInput{}})
	wantErr(t, "no content", err, &invalid, 400, "Please provide a source")
	if _, err := api.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("bad.name"), VersionNumber: aws.Int64(1)}); err == nil ||
		!strings.Contains(err.Error(), "ValidationException") || status(err) != 400 {
		t.Fatalf("a layer name with a dot: %v", err)
	}
	var lvs lambdav1alpha1.LayerVersionList
	if err := k8s.List(ctx, &lvs, client.InNamespace(r.ns)); err != nil {
		t.Fatal(err)
	}
	for _, lv := range lvs.Items {
		if lv.Spec.LayerName == "bad" {
			t.Fatalf("a refused PublishLayerVersion created %s", lv.Name)
		}
	}
}

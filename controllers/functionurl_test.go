package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// status.functionUrl: set on a Function and an Alias with functionUrlConfig (host-based,
// the url-id the activator serves: contract.FunctionURLID of the object's UID), stable
// across updates, cleared when the config is removed.
func TestFunctionURLStatus(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	fn := zipFunction(ns, "web", "code")
	fn.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone}
	create(t, fn)
	var got lambdav1alpha1.Function
	want := func() string {
		return "https://" + contract.FunctionURLID(string(got.UID), ns, "web", "") + ".lambda-url.lambda.test/"
	}
	eventually(t, "function URL", func() string {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &got); err != nil {
			return err.Error()
		}
		if got.Status.FunctionURL != want() {
			return "status.functionUrl " + got.Status.FunctionURL + ", want " + want()
		}
		return ""
	})
	first := got.Status.FunctionURL

	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "web-live", Namespace: ns},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "web", Name: "live", FunctionVersion: "$LATEST",
			FunctionURLConfig: &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthAWSIAM}}}
	create(t, a)
	var ga lambdav1alpha1.Alias
	eventually(t, "alias URL", func() string {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-live"}, &ga); err != nil {
			return err.Error()
		}
		w := "https://" + contract.FunctionURLID(string(ga.UID), ns, "web", "live") + ".lambda-url.lambda.test/"
		if ga.Status.FunctionURL != w {
			return "alias status.functionUrl " + ga.Status.FunctionURL + ", want " + w
		}
		return ""
	})
	if ga.Status.FunctionURL == first {
		t.Error("the alias and the function share a URL")
	}

	// Removing the config clears the URL; an update that keeps it keeps the URL.
	eventually(t, "function URL cleared", func() string {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &got); err != nil {
			return err.Error()
		}
		if got.Spec.FunctionURLConfig != nil {
			got.Spec.FunctionURLConfig = nil
			if err := k8s.Update(ctx, &got); err != nil {
				return err.Error()
			}
		}
		if got.Status.FunctionURL != "" {
			return "still " + got.Status.FunctionURL
		}
		return ""
	})
	eventually(t, "alias URL cleared", func() string {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-live"}, &ga); err != nil {
			return err.Error()
		}
		if ga.Spec.FunctionURLConfig != nil {
			ga.Spec.FunctionURLConfig = nil
			if err := k8s.Update(ctx, &ga); err != nil {
				return err.Error()
			}
		}
		if ga.Status.FunctionURL != "" {
			return "still " + ga.Status.FunctionURL
		}
		return ""
	})
}

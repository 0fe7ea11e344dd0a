// Command remove-finalizers removes klambda's finalizers from Versions, LayerVersions and
// EventSourceMappings, for when klambda's controllers are gone and those objects (or their
// namespace) can't be deleted (docs/operations.md, "Uninstalling and stuck finalizers").
//
//	go run ./hack/remove-finalizers [-namespace NS] [-include-live] [-dry-run]
//
// It uses the current kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster). Without
// -include-live only objects already being deleted are touched.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/finalizers"
)

func main() {
	var o finalizers.Options
	flag.StringVar(&o.Namespace, "namespace", "", "Only this namespace (default: every namespace).")
	flag.BoolVar(&o.IncludeLive, "include-live", false, "Also objects not being deleted (before removing klambda for good).")
	flag.BoolVar(&o.DryRun, "dry-run", false, "Print what would change; change nothing.")
	flag.Parse()
	scheme := runtime.NewScheme()
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cleaned, err := finalizers.Remove(context.Background(), c, o)
	verb := "removed"
	if o.DryRun {
		verb = "would remove"
	}
	for _, x := range cleaned {
		fmt.Printf("%s %s/%s: %s %s\n", x.Kind, x.Namespace, x.Name, verb, strings.Join(x.Finalizers, ", "))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d object(s)\n", len(cleaned))
}

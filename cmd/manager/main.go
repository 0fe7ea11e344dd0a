// Command manager runs klambda's controllers: Function, Version, Alias, LayerVersion.
package main

import (
	"flag"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/buildinfo"
	"github.com/klambda/klambda/internal/memlimit"
	"github.com/klambda/klambda/internal/metricsauth"
)

func main() {
	var (
		metricsAddr string
		probeAddr   string
		leaderElect bool
		configPath  string
	)
	flag.StringVar(&configPath, "config", "", "Path of the manager configuration file (YAML): runtimeImages, shimImage, region, imagePullPolicy, ...")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	metricsSecure := flag.Bool("metrics-secure", true, "Serve the metrics endpoint over HTTPS to callers the API server authenticates and allows get on the non-resource URL /metrics (TokenReview, SubjectAccessReview); false: plain HTTP to anyone.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one manager replica reconciles at a time.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	buildinfo.RegisterFlag(flag.CommandLine, "manager")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	// The Go heap stays under the container's memory limit (90 %; GOMEMLIMIT or AUTOMEMLIMIT win).
	memlimit.Set(log, nil)

	functionLabel, err := labels.Parse(contract.LabelFunction)
	if err != nil {
		log.Error(err, "unable to build the cache selector")
		os.Exit(1)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	utilruntime.Must(ctrlmetrics.Registry.Register(buildinfo.NewCollector()))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsauth.Options(metricsAddr, *metricsSecure),
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "manager.lambda.klambda.dev",
		// Cache only the Deployments and Services klambda makes, not the whole cluster's.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: {Label: functionLabel},
			&corev1.Service{}:    {Label: functionLabel},
		}},
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	cfg, err := controllers.LoadConfig(configPath)
	if err != nil {
		log.Error(err, "unable to load the configuration", "path", configPath)
		os.Exit(1)
	}
	if err := controllers.Setup(mgr, cfg); err != nil {
		log.Error(err, "unable to set up the controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the ready check")
		os.Exit(1)
	}

	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

package main

import (
	"testing"

	"k8s.io/client-go/rest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/klambda/klambda/internal/buildinfo"
)

// The pollers' metrics endpoint exports klambda_build_info with this binary's build.
func TestManagerExportsBuildInfo(t *testing.T) {
	if _, err := newManager(&rest.Config{Host: "https://127.0.0.1:1"}, &options{metricsAddr: "0", probeAddr: "0"}); err != nil {
		t.Fatal(err)
	}
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := buildinfo.Get()
	for _, mf := range mfs {
		if mf.GetName() != "klambda_build_info" {
			continue
		}
		got := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if got["version"] != want.Version || got["commit"] != want.Commit || got["goversion"] != want.GoVersion ||
			mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("klambda_build_info %v = %v, want %+v = 1", got, mf.GetMetric()[0].GetGauge().GetValue(), want)
		}
		return
	}
	t.Error("klambda_build_info is not registered")
}

package klambda_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Dockerfile has a runtime-image target for every klambda runtime image the chart's
// defaults name, FROM Lambda's public base image of that runtime and adding the shim where
// embeddedShim says it is, and no target the chart does not name (its comment tells how a
// target maps to an image). The targets are not built here: no Docker, no pull of Lambda's
// base images; this keeps the two lists from drifting apart.
func TestDockerfileBuildsTheChartsRuntimeImages(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// target -> "FROM image" and the COPY that follows it.
	stage := regexp.MustCompile(`(?m)^FROM (public\.ecr\.aws/lambda/[a-z]+:[0-9a-z.]+) AS (runtime-[a-z0-9-]+)\nCOPY --from=build /out/runtime-shim (\S+)$`)
	targets := map[string][2]string{}
	for _, m := range stage.FindAllStringSubmatch(string(b), -1) {
		targets[m[2]] = [2]string{m[1], m[3]}
	}
	objs, errOut := renderArgs(t)
	if errOut != "" {
		t.Fatal(errOut)
	}
	cfg := managerConfig(t, objs)
	ref := regexp.MustCompile(`^ghcr\.io/klambda/runtime-([a-z]+):([0-9a-z.]+)-0\.1\.0$`)
	named := map[string]bool{}
	for rt, img := range cfg.RuntimeImages {
		if !strings.HasPrefix(img, "ghcr.io/klambda/") {
			continue
		}
		m := ref.FindStringSubmatch(img)
		if m == nil {
			t.Errorf("%s: image %s is not runtime-<name>:<tag>-<appVersion>", rt, img)
			continue
		}
		target := "runtime-" + m[1] + "-" + strings.ReplaceAll(m[2], ".", "")
		named[target] = true
		got, ok := targets[target]
		if !ok {
			t.Errorf("%s: image %s has no Dockerfile target %s", rt, img, target)
			continue
		}
		if want := "public.ecr.aws/lambda/" + m[1] + ":" + m[2]; got[0] != want {
			t.Errorf("target %s is FROM %s, want %s", target, got[0], want)
		}
		if shim, ok := cfg.EmbeddedShim[rt]; !ok || shim.Path != got[1] {
			t.Errorf("target %s puts the shim at %s; embeddedShim of %s is %+v", target, got[1], rt, cfg.EmbeddedShim[rt])
		}
	}
	if len(named) == 0 {
		t.Fatal("the chart names no klambda runtime image")
	}
	for target := range targets {
		if !named[target] {
			t.Errorf("Dockerfile target %s is no runtime image of the chart", target)
		}
	}
}

# klambda — build, generate, test, run.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

CACHE ?= $(HOME)/.cache/klambda
TOOLS := $(CACHE)/bin
export PATH := $(TOOLS):$(PATH)

CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.22.0

CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM := $(TOOLS)/helm-$(HELM_VERSION)

# The version and commit every binary reports (--version, klambda_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/klambda/klambda/internal/buildinfo
LDFLAGS := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT)

.PHONY: all
all: build

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) $(HELM) ## Generate CRDs and RBAC from markers; copy the CRDs into the Helm chart; render dist/install.yaml and dist/crds.yaml from it.
	$(CONTROLLER_GEN) rbac:roleName=klambda-manager crd:allowDangerousTypes=true paths="./api/..." paths="./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=klambda-eventsources paths="./eventsources/..." \
		output:rbac:artifacts:config=config/rbac/eventsources
	$(CONTROLLER_GEN) rbac:roleName=klambda-activator paths="./activator/..." \
		output:rbac:artifacts:config=config/rbac/activator
	mkdir -p charts/klambda/crds charts/klambda/files && cp config/crd/bases/*.yaml charts/klambda/crds/
	cp config/rbac/role.yaml charts/klambda/files/manager-role.yaml
	cp config/rbac/eventsources/role.yaml charts/klambda/files/eventsources-role.yaml
	cp config/rbac/activator/role.yaml charts/klambda/files/activator-role.yaml
	HELM=$(HELM) hack/dist-manifests.sh

.PHONY: verify-generated
verify-generated: generate manifests ## Fail when generated files are stale.
	@if [ -n "$$(git status --porcelain -- api config charts/klambda/crds charts/klambda/files dist)" ]; then \
		echo "generated files are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config charts/klambda/crds charts/klambda/files dist; git --no-pager diff --stat; exit 1; fi

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (config in .golangci.yml).
	$(GOLANGCI_LINT) run --build-tags e2e ./...

##@ Test

.PHONY: test-assets
test-assets: ## Build/install the real kube-apiserver and etcd the integration tests run against.
	@hack/envtest-assets.sh >/dev/null

.PHONY: test
test: test-assets ## Unit and integration tests (real kube-apiserver + etcd). README's test command.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	@assets="$$(hack/envtest-assets.sh)"; echo "integration tests run against a real $$("$$assets/kube-apiserver" --version | sed 's/Kubernetes/kube-apiserver/') and etcd $$("$$assets/etcd" --version | sed -n 's/^etcd Version: //p')"
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" go test -count=1 -timeout 20m ./...

##@ Build

.PHONY: build
build: ## Build every binary into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

.PHONY: release
release: $(HELM) ## Versioned artifacts in dist/release/VERSION: binaries (linux amd64+arm64), the chart package, install.yaml/crds.yaml with tags VERSION, SHA256SUMS (make release VERSION=x.y.z).
	HELM=$(HELM) VERSION=$(VERSION) REGISTRY=$(REGISTRY) hack/release.sh

##@ Tools

$(CONTROLLER_GEN):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/controller-gen $@

$(GOLANGCI_LINT):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $@

$(HELM):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/helm $@

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-20s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Local cluster

# CLUSTER=local starts (or reuses) the single-node cluster of hack/cluster/up.sh;
# CLUSTER=existing installs into the cluster KUBECONFIG points at.
CLUSTER ?= local

.PHONY: dev
dev: $(HELM) ## Start a local Kubernetes (once), install klambda with its Helm chart, invoke an example function.
	CLUSTER=$(CLUSTER) HELM=$(HELM) hack/cluster/dev.sh

.PHONY: dev-stop
dev-stop: ## Stop the local cluster and keep its state; `make dev` starts it again.
	hack/cluster/down.sh --keep

.PHONY: dev-down
dev-down: ## Stop the local cluster and delete its state: no process, mount or bridge is left.
	hack/cluster/down.sh

.PHONY: dev-images
dev-images: ## Build klambda's images and the local Lambda base images (no Docker) and import them into the local cluster.
	hack/cluster/images.sh

.PHONY: chart-rbac
chart-rbac: ## Copy the manager's generated RBAC (config/rbac/role.yaml, from `make manifests`) into the Helm chart.
	@if [ -f config/rbac/role.yaml ]; then cp config/rbac/role.yaml charts/klambda/files/manager-role.yaml; \
	else echo "config/rbac/role.yaml does not exist yet (make manifests); the chart's manager role stays empty"; fi

# A metricsFrom for renders with a ServiceMonitor (without one, any pod may scrape).
METRICS_FROM := networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]

.PHONY: chart-check
chart-check: $(HELM) ## helm lint and helm template the chart; fail when its CRDs or RBAC are stale.
	@if [ -f config/rbac/role.yaml ] && ! cmp -s config/rbac/role.yaml charts/klambda/files/manager-role.yaml; then \
		echo "charts/klambda/files/manager-role.yaml differs from config/rbac/role.yaml: run 'make chart-rbac' and commit"; exit 1; fi
	@cmp -s config/rbac/eventsources/role.yaml charts/klambda/files/eventsources-role.yaml || \
		{ echo "charts/klambda/files/eventsources-role.yaml differs from config/rbac/eventsources/role.yaml: run 'make manifests' and commit"; exit 1; }
	@cmp -s config/rbac/activator/role.yaml charts/klambda/files/activator-role.yaml || \
		{ echo "charts/klambda/files/activator-role.yaml differs from config/rbac/activator/role.yaml: run 'make manifests' and commit"; exit 1; }
	@for f in config/crd/bases/*.yaml; do [ -f "$$f" ] || continue; cmp -s "$$f" "charts/klambda/crds/$$(basename $$f)" || \
		{ echo "charts/klambda/crds is stale ($$f): run 'make manifests' and commit"; exit 1; }; done
	$(HELM) lint --strict charts/klambda
	$(HELM) lint --strict charts/klambda --set activator.enabled=true --set eventsources.enabled=true --set metrics.serviceMonitor.enabled=true \
		--set activator.tls.certManager.issuer=klambda-ca --set-json '$(METRICS_FROM)'
	$(HELM) template klambda charts/klambda --kube-version 1.37.2 --namespace klambda-system >/dev/null
	$(HELM) template klambda charts/klambda --kube-version 1.37.2 --namespace klambda-system --set activator.enabled=true \
		--set eventsources.enabled=true --set metrics.serviceMonitor.enabled=true --set-json '$(METRICS_FROM)' -f hack/cluster/values-local.yaml >/dev/null
	$(HELM) template klambda charts/klambda --kube-version 1.37.2 --namespace klambda-system --set activator.enabled=true \
		--set eventsources.enabled=true --set activator.tls.plainHTTP=true --set networkPolicy.enabled=false >/dev/null
	@# The NetworkPolicies the chart renders, and the manager configuration it passes (chart_test.go).
	HELM=$(HELM) go test -count=1 ./charts/klambda/
	$(HELM) template klambda charts/klambda --kube-version 1.37.2 --namespace klambda-system --set activator.enabled=true \
		--set activator.async.natsUrl=nats://nats.nats:4222 --set nats.enabled=false --set activator.tls.secretName=activator-tls >/dev/null
	HELM=$(HELM) go test -count=1 -run TestChart ./test/chart/
	$(HELM) template klambda charts/klambda --kube-version 1.37.2 --namespace klambda-system --set activator.enabled=true \
		--set activator.tls.secretName=activator-tls \
		--set activator.async.natsUrl=tls://nats.nats:4222 --set nats.enabled=false --set activator.async.nats.secretName=nats-client \
		--set activator.async.nats.user=klambda-activator --set activator.async.nats.passwordKey=password \
		--set activator.async.nats.tls.caKey=ca.crt --set activator.async.nats.destinations.credsKey=tenants.creds \
		| grep -q -- '--async-nats-tls-ca=/var/run/secrets/klambda/nats/ca.crt' || { echo "activator.async.nats.* not rendered"; exit 1; }
	@! $(HELM) template klambda charts/klambda --kube-version 1.37.2 --namespace klambda-system --set activator.enabled=true \
		--set activator.tls.secretName=activator-tls --set activator.async.nats.user=klambda-activator >/dev/null 2>&1 || { echo "activator.async.nats.* accepted without natsUrl"; exit 1; }

.PHONY: bench-coldstart
bench-coldstart: $(HELM) ## Cold start on the local cluster: first invocation from zero (a Zip function, an Image function) vs a plain pod becoming Ready, same run (ROUNDS=5).
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 30m -run '^$$' -bench ColdStart -benchtime 1x -v ./test/e2e/ -args -coldstart.rounds=$(or $(ROUNDS),5)

.PHONY: bench-coldstart-pool
bench-coldstart-pool: $(HELM) ## Cold start from a pre-warmed pool on the local cluster (a pool of one, helm upgrade, restored) vs a plain pod's Ready (ROUNDS=10).
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 40m -run '^$$' -bench PoolColdStart -benchtime 1x -v ./test/e2e/ -args -poolcoldstart.rounds=$(or $(ROUNDS),10)

.PHONY: bench-payload
bench-payload: $(HELM) ## A 5 MB response on the local cluster, end to end: 128 MB against 1,769 MB in the same run (ROUNDS=10).
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 30m -run '^$$' -bench Payload5MB -benchtime 1x -v ./test/e2e/ -args -payload.rounds=$(or $(ROUNDS),10)

.PHONY: bench-controlplane
bench-controlplane: $(HELM) ## CreateFunction/UpdateFunctionCode (3 MB zip, control-plane API) to realized on the local cluster vs kubectl apply of the same change (ROUNDS=5).
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 40m -run '^$$' -bench ControlPlane -benchtime 1x -v ./test/e2e/ -args -controlplane.rounds=$(or $(ROUNDS),5)

.PHONY: bench-eventsources-replicas
bench-eventsources-replicas: $(HELM) ## A Kafka mapping drained by one poller replica, then by two, on the local cluster: records/s, ratio to twice one, CPU per record of each part (ROUNDS=2, RECORDS=1000000, PARTITIONS=4; several counts: PARTITIONS=4,16).
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 45m -run '^$$' -bench KafkaPollerReplicas -benchtime 1x -v ./test/e2e/ -args -esmreplicas.rounds=$(or $(ROUNDS),2) \
		-esmreplicas.records=$(or $(RECORDS),1000000) -esmreplicas.partitions=$(or $(PARTITIONS),4)

.PHONY: bench-scale
bench-scale: test-assets ## The activator with 1,000 functions at zero against a real kube-apiserver: RSS, alias change to routing.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" go run ./bench/activatorscale

.PHONY: test-e2e
test-e2e: $(HELM) ## End-to-end tests (build tag e2e) against the local cluster; starts it when none is up.
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 60m -v ./test/e2e/...

.PHONY: test-e2e-install
test-e2e-install: $(HELM) ## The e2e tests that replace klambda's install (dist/install.yaml alone, make dev CLUSTER=existing, helm upgrade from the previous release under load); run after test-e2e.
	HELM=$(HELM) go test -tags e2e -count=1 -timeout 45m -v -run 'TestInstallFromDistAlone|TestDevOnAnExistingCluster|TestHelmUpgradeFromPreviousReleaseUnderLoad' ./test/e2e/ -args -e2e.install

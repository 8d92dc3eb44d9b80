# edgepool — see README.md. `make demo` runs the whole product locally; `make test` runs the tests.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
BIN := $(CURDIR)/bin
IMG ?= ghcr.io/edgepool/edgepool:dev
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

# envtest's kube-apiserver and etcd, built from the Go module proxy and cached outside the repo.
ENVTEST_ASSETS = $(shell ./hack/envtest-binaries.sh)

.PHONY: all
all: build

##@ Build

.PHONY: build
build: ## Build the edgepool binary into bin/.
	$(GO) build -o $(BIN)/edgepool ./cmd/edgepool

.PHONY: fmt
fmt: ## go fmt.
	$(GO) fmt ./...

.PHONY: vet
vet: ## go vet.
	$(GO) vet ./...

.PHONY: lint
lint: ## golangci-lint (pinned v2, built into bin/ on first use) on the whole module; see .golangci.yml.
	./hack/lint.sh

##@ Test

.PHONY: test-deps
test-deps: ## Install PostgreSQL and build envtest binaries and helm when missing.
	./hack/install-test-deps.sh
	./hack/envtest-binaries.sh >/dev/null
	./hack/helm.sh >/dev/null

.PHONY: test
test: test-deps ## Run every test (unit, envtest, real PostgreSQL) with the race detector, then a short fuzz run.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test $(GO_TEST_FLAGS) ./...
	# The pooler's tests once more with pool.relayLoop off: the goroutine relay that TLS clients and
	# the loop's hand-offs use then carries every plain client too.
	EDGEPOOL_TEST_RELAY_LOOP=0 $(GO) test $(GO_TEST_FLAGS) ./pooler/
	$(MAKE) fuzz FUZZTIME=50000x

.PHONY: flake-check
flake-check: test-deps ## Run the make test suite FLAKE_RUNS times (default 5; -count) and list every test that failed at least once (FLAKE_PKGS narrows, FLAKE_FUZZ=0 skips the fuzz runs).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" GO="$(GO)" ./hack/flake-check.sh

# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration-bounded run with a
# spurious "context deadline exceeded" at the deadline (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 500000x
.PHONY: fuzz
fuzz: ## Fuzz the client message decoder, the HTTP SQL request parsing the Prisma query plan parsing and its Json rewriting (FUZZTIME executions each; corpus in testdata/fuzz).
	$(GO) test ./pooler/session -run '^$$' -fuzz '^FuzzClientMessages$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pooler/edge -run '^$$' -fuzz '^FuzzParseBody$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pooler/edge -run '^$$' -fuzz '^FuzzArrayJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pooler/accelerate -run '^$$' -fuzz '^FuzzParseQueryRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pooler/accelerate -run '^$$' -fuzz '^FuzzReformatJSON$$' -fuzztime $(FUZZTIME)

.PHONY: test-node
test-node: ## End-to-end tests with real npm clients: @neondatabase/serverless (POST /sql, WebSocket, cache; test/node), then Prisma 7 (test-prisma).
	./hack/install-test-deps.sh
	./hack/install-node-deps.sh test/node
	$(GO) build -o $(BIN)/edgepool ./cmd/edgepool
	$(GO) build -o $(BIN)/edgepool-node-harness ./test/node/harness
	cd test/node && EDGEPOOL_HARNESS=$(BIN)/edgepool-node-harness node --test --test-concurrency=1 --test-timeout=120000
	$(MAKE) test-prisma

.PHONY: test-prisma
test-prisma: ## A real Prisma 7 client (accelerateUrl, withAccelerate(), http and https) against the pooler's Prisma Accelerate endpoint (test/prisma).
	./hack/install-test-deps.sh
	./hack/install-node-deps.sh test/prisma
	./hack/prisma-generate.sh test/prisma
	$(GO) build -o $(BIN)/edgepool ./cmd/edgepool
	$(GO) build -o $(BIN)/edgepool-node-harness ./test/node/harness
	cd test/prisma && EDGEPOOL_HARNESS=$(BIN)/edgepool-node-harness node --import tsx --test --test-concurrency=1 --test-timeout=180000

.PHONY: test-prisma-reference
test-prisma-reference: ## Development only (not in CI): test/prisma against Prisma's reference server (@prisma/query-plan-executor) to check the suite's own expectations.
	./hack/install-node-deps.sh test/prisma/reference
	PRISMA_REFERENCE_SERVER=$(CURDIR)/test/prisma/reference/serve.mjs $(MAKE) test-prisma

##@ Demo and end to end (local kubelet harness: internal/localkubelet; docs/e2e.md)

E2E_FLAGS ?= -count=1 -timeout 15m -v

.PHONY: demo
demo: build ## Run edgepool locally (PostgreSQL, control plane, operator, config/samples, poolers) and print how to connect. Ctrl-C stops everything.
	./hack/install-test-deps.sh
	$(GO) build -o $(BIN)/edgepool-demo ./hack/demo
	$(BIN)/edgepool-demo -repo $(CURDIR)

.PHONY: test-e2e
test-e2e: build ## The user's path end to end: apply, Ready, pgx/psql/HTTP, scale, rotate, disable, credentials, delete; the upstream budget under scaling; the Cloudflare Workers; 200 pools against envtest.
	./hack/install-test-deps.sh
	./hack/install-node-deps.sh examples/cloudflare-worker
	./hack/install-node-deps.sh examples/cloudflare-worker-prisma
	./hack/prisma-generate.sh examples/cloudflare-worker-prisma
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test -tags e2e $(E2E_FLAGS) ./test/e2e/
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test -tags scale -count=1 -timeout 10m -v -run '^TestTwoHundredPools$$' ./controllers/

.PHONY: test-worker
test-worker: build ## Only the Cloudflare Worker examples under wrangler dev against a local pool (pg over TCP, neon() over HTTP, Prisma 7 accelerateUrl).
	./hack/install-test-deps.sh
	./hack/install-node-deps.sh examples/cloudflare-worker
	./hack/install-node-deps.sh examples/cloudflare-worker-prisma
	./hack/prisma-generate.sh examples/cloudflare-worker-prisma
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test -tags e2e $(E2E_FLAGS) -run TestCloudflareWorker ./test/e2e/

##@ Benchmarks

.PHONY: bench
bench: ## pgbench through edgepool vs direct PostgreSQL vs PgBouncer, plus idle-client memory (BENCH_SECONDS=15). Root.
	./bench/run.sh

##@ Operator (CRD, RBAC, deepcopy, deploy)

CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(BIN)/controller-gen
KUBECTL ?= kubectl
# The generators the tree is checked against (test TestGeneratedFilesAreFresh runs the same).
CRD_RBAC_ARGS = rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..."

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen from the Go module proxy into bin/.
$(CONTROLLER_GEN):
	GOBIN=$(BIN) GOFLAGS=-mod=mod $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: manifests
manifests: controller-gen ## Generate the CRD (config/crd/bases) and the manager ClusterRole (config/rbac/role.yaml), and copy them (and the dashboard) into charts/edgepool.
	$(CONTROLLER_GEN) $(CRD_RBAC_ARGS) output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/pooling.edgepool.dev_connectionpools.yaml charts/edgepool/crds/
	cp config/rbac/role.yaml charts/edgepool/files/manager-role.yaml
	cp config/monitoring/grafana-dashboard.json charts/edgepool/files/dashboard.json

HELM = $(shell ./hack/helm.sh)

.PHONY: helm-template
helm-template: ## Render the Helm chart (helm built from its Go module by hack/helm.sh; HELM_ARGS for --set ...).
	$(HELM) template edgepool charts/edgepool --namespace edgepool-system --include-crds $(HELM_ARGS)

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods (api/v1alpha1/zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: verify-generated
verify-generated: controller-gen ## Fail when the committed CRD, RBAC or deepcopy differ from a fresh generation.
	$(GO) test -count=1 -run TestGeneratedFilesAreFresh ./api/...

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	$(KUBECTL) kustomize config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests ## Remove the CRD (and with it every ConnectionPool) from the cluster.
	$(KUBECTL) kustomize config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: run
run: manifests generate ## Run the operator against the current kubeconfig (pooler image: IMG).
	$(GO) run ./cmd/edgepool manager --pooler-image=$(IMG) --metrics-bind-address=:18080 --health-probe-bind-address=:18081

.PHONY: build-installer
build-installer: manifests generate ## Render the whole install (CRD, RBAC, manager with IMG) into dist/install.yaml.
	mkdir -p dist
	rm -rf $(BIN)/kustomize-work && mkdir -p $(BIN)/kustomize-work && cp -r config $(BIN)/kustomize-work/
	cd $(BIN)/kustomize-work/config/manager && printf 'resources:\n- manager.yaml\nimages:\n- name: controller\n  newName: %s\n  newTag: %s\n' "$(firstword $(subst :, ,$(IMG)))" "$(or $(word 2,$(subst :, ,$(IMG))),latest)" > kustomization.yaml
	$(KUBECTL) kustomize $(BIN)/kustomize-work/config/default > dist/install.yaml
	rm -rf $(BIN)/kustomize-work
	@echo "wrote dist/install.yaml (image $(IMG))"

.PHONY: deploy
deploy: build-installer ## Deploy the operator (dist/install.yaml) to the cluster of the current kubeconfig.
	$(KUBECTL) apply --server-side -f dist/install.yaml

.PHONY: undeploy
undeploy: ## Remove the operator deployed by `make deploy`.
	$(KUBECTL) delete --ignore-not-found -f dist/install.yaml

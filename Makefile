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
test-deps: ## Install PostgreSQL and build envtest binaries when missing.
	./hack/install-test-deps.sh
	./hack/envtest-binaries.sh >/dev/null

.PHONY: test
test: test-deps ## Run every test (unit, envtest, real PostgreSQL) with the race detector.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test $(GO_TEST_FLAGS) ./...

##@ Benchmarks

.PHONY: bench
bench: ## pgbench through edgepool vs direct PostgreSQL vs PgBouncer, plus idle-client memory (BENCH_SECONDS=15). Root.
	./bench/run.sh

# Remora build. Every tool the targets need is installed by this file at a
# pinned version into ./bin; generated code is committed, so `build` and
# `test` need only Go.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/remora-mesh/remora/internal/version.Version=$(VERSION)
# grpcnotrace leaves out grpc's golang.org/x/net/trace (its /debug/requests
# pages, which Remora never serves) and with it html/template: 3.5 MB less
# binary, i.e. less resident memory, since the kernel maps the text in full.
TAGS := grpcnotrace

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.1
STATICCHECK_VERSION        := v0.8.1

# A count, not a duration: a time-based -fuzztime can end in a spurious
# "context deadline exceeded" when the deadline hits a worker mid-input.
FUZZTIME ?= 1000x
BENCHTIME ?= 1s

.PHONY: all build build-sidecar demo test vet race sidecar fuzz-smoke fuzz lint proto bench bench-go clean

all: build

## build: compile the remora binary into ./bin/remora
build:
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/remora ./cmd/remora

## build-sidecar: the sidecar build into ./bin/remora-sidecar: the same
## proxy without the mixer server, OPA and the demo (smaller, less memory)
build-sidecar:
	$(GO) build -tags 'sidecar,$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/remora-sidecar ./cmd/remora

## demo: run mixer, sidecar and a sample upstream on loopback with sample traffic
## (DEMO_ARGS=--keep leaves them running until Ctrl-C)
demo: build
	$(BIN)/remora demo $(DEMO_ARGS)

## test: vet, the race-enabled test suite (and the sidecar build's command
## tests), and a short smoke run of every fuzz target
test: vet race sidecar fuzz-smoke

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

sidecar:
	$(GO) vet -tags 'sidecar,$(TAGS)' ./cmd/remora
	$(GO) test -race -count=1 -tags 'sidecar,$(TAGS)' ./cmd/remora

# fuzz-smoke runs each Fuzz target for FUZZTIME. Targets are found in the
# sources so that a new one is picked up without editing this file.
fuzz-smoke:
	@set -euo pipefail; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do \
	  for fn in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | sed 's/^func //' | sort -u); do \
	    echo "fuzz $$dir $$fn ($(FUZZTIME))"; \
	    out=$$($(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$dir 2>&1) || \
	      { echo "$$out"; exit 1; }; \
	  done; \
	done

## fuzz: longer fuzzing of every target (FUZZTIME=1m make fuzz)
fuzz: FUZZTIME = 1m
fuzz: fuzz-smoke

## lint: gofmt, go vet and staticcheck (pinned)
lint: $(BIN)/staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

## bench: whole-process benchmarks (bench/, its own Go module) against nginx,
## HAProxy, Caddy and OPA; writes docs/benchmarks.md and docs/img/*.png.
## BENCHFLAGS=-quick for a smoke run; see docs/benchmarks.md
bench: build build-sidecar
	cd bench && $(GO) run . -remora $(BIN)/remora -remora-sidecar $(BIN)/remora-sidecar $(BENCHFLAGS)

## bench-go: in-process Go benchmarks of the hot paths
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## proto: regenerate all generated code and fail if the committed code differs
proto: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	cd proto && protoc -I . -I /usr/include \
	  --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
	  mixer/v1/attributes.proto mixer/v1/mixer.proto \
	  envoy/type/v3/http_status.proto \
	  envoy/config/core/v3/address.proto envoy/config/core/v3/base.proto \
	  envoy/service/auth/v3/attribute_context.proto envoy/service/auth/v3/external_auth.proto \
	  envoy/data/accesslog/v3/accesslog.proto \
	  envoy/service/accesslog/v3/als.proto
	@if [ -n "$$(git status --porcelain -- 'proto/*.pb.go')" ]; then git status --short -- 'proto/*.pb.go'; echo "generated code differs from the committed code: commit it"; exit 1; fi

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean:
	rm -rf $(BIN)

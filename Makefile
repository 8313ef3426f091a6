# Berth developer entry points. `make run` serves a local registry,
# `make test` runs every suite CI runs (tests/run.sh does the work).
# Other parts of the build live in mk/*.mk (Lambda bundles, infrastructure).

SHELL := /usr/bin/env bash
GO ?= go

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# -trimpath keeps this machine's paths out of the binaries (reproducible
# builds); -buildvcs=auto stamps the commit `berth version` prints even
# where GOFLAGS turns stamping off, and stamps nothing outside a checkout.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto
ADDR ?= 127.0.0.1:5000
DATA ?= ./.berth

# Directories gofmt checks; node_modules trees hold Go templates that are not ours.
FMT_DIRS := $(wildcard cmd pkg internal functions tests infra/berth infra/main.go)

.DEFAULT_GOAL := help

.PHONY: help run berth credential-helper build test e2e fuzz bench live-check lint fmt clean

help:
	@echo 'make run    build bin/berth and serve a registry on $(ADDR) (data in $(DATA))'
	@echo 'make test   everything CI runs (installs tools, starts emulators)'
	@echo 'make build  bin/berth, bin/docker-credential-berth and the Lambda bundles'
	@echo 'make dist   release archives for linux/darwin x amd64/arm64 and SHA256SUMS in dist/release'
	@echo 'make e2e    the end-to-end suites only (tests/...)'
	@echo 'make lambda only the Lambda bundles (dist/<fn>/bootstrap, dist/<fn>.zip)'
	@echo 'make fuzz   fuzz every target for FUZZTIME (default 60s) each'
	@echo 'make bench  push/pull benchmark against the distribution registry'
	@echo 'make live-check REGISTRY=host  edge upload checks against a deployed registry'
	@echo 'make lint   gofmt check, go vet, staticcheck'
	@echo 'make fmt    gofmt -w'
	@echo 'make clean  remove bin/ and dist/'
	@echo 'make infra-test       CDK assertion, IAM, cdk-nag and parity tests (offline)'
	@echo 'make synth            cdk synth into infra/cdk.out (offline)'
	@echo 'make localstack-test  deploy the CDK stack to LocalStack and smoke-test it (Docker, LOCALSTACK_AUTH_TOKEN)'

# bin/berth is rebuilt every time: go build's cache makes that cheap and a
# stale binary is worse than a second of linking.
berth:
	$(GOBUILD) -ldflags '$(LDFLAGS)' -o bin/berth ./cmd/berth

# The credential helper every client runs on `get` (docs/auth.md); CI jobs
# need it next to berth (docs/ci.md).
credential-helper:
	$(GOBUILD) -o bin/docker-credential-berth ./cmd/docker-credential-berth

# mk/lambda.mk adds its own recipe to build (the Lambda bundles), mk/dist.mk
# the release archives (make dist).
build: berth credential-helper

run: berth
	./bin/berth serve --addr $(ADDR) --data $(DATA)

test:
	tests/run.sh all

e2e:
	tests/run.sh e2e

# make test runs each fuzz target for a fixed number of executions; this
# one fuzzes for a while (FUZZTIME=5m make fuzz, or 100000x).
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) tests/run.sh fuzz

lint:
	tests/run.sh lint

bench: berth
	tests/bench/push_pull.sh

# Against a deployed registry: what only AWS can settle about the edge path
# (large and slow uploads through CloudFront, S3 refusing wrong bytes).
live-check:
	@test -n "$(REGISTRY)" || { echo 'usage: make live-check REGISTRY=host [REPO=live-check/edge]'; exit 2; }
	tests/live/edge-check.sh $(REGISTRY) $(REPO)

fmt:
	gofmt -w $(FMT_DIRS)

clean:
	rm -rf bin dist

-include mk/*.mk

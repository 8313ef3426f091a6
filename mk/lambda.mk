# Lambda bundles (functions/*). Included by the main Makefile; paths are
# relative to the repository root.
#
#   make build     also builds every function: dist/<fn>/bootstrap and dist/<fn>.zip
#   make lambda    only the functions
#
# provided.al2023 on arm64 runs a static `bootstrap`. lambda.norpc drops the
# legacy go1.x RPC server (halves the binary); -s -w and -trimpath make it
# small and reproducible, so asset hashes only move when code does.

LAMBDA_FUNCS := $(filter-out internal,$(notdir $(patsubst %/main.go,%,$(wildcard functions/*/main.go))))
LAMBDA_GOFLAGS := -trimpath -tags lambda.norpc -ldflags='-s -w'

.PHONY: lambda $(addprefix lambda-,$(LAMBDA_FUNCS))

build: lambda

lambda: $(addprefix lambda-,$(LAMBDA_FUNCS))

# Always rebuilt (go build's cache makes it cheap); the zip is reproducible.
$(addprefix lambda-,$(LAMBDA_FUNCS)): lambda-%:
	@mkdir -p dist/$*
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_GOFLAGS) -o dist/$*/bootstrap ./functions/$*
	$(GO) run ./functions/internal/zipbundle dist/$*.zip dist/$*/bootstrap

# Infrastructure (infra/, localstack/). Included by the main Makefile
# (`include mk/*.mk`); paths are relative to the repository root.
#
#   make infra-test        CDK assertion, IAM, cdk-nag and parity tests (offline)
#   make synth             cdk synth into infra/cdk.out (offline; needs `make build`)
#   make localstack-test   deploy to LocalStack with cdklocal and smoke-test it
#                          (needs Docker and LOCALSTACK_AUTH_TOKEN; see localstack/README.md)

INFRA_DIR   := $(CURDIR)/infra
INFRA_CACHE := $(INFRA_DIR)/.cache
INFRA_TOOLS := $(INFRA_DIR)/tools
CDK         := $(INFRA_TOOLS)/node_modules/.bin/cdk
CDKLOCAL    := $(INFRA_TOOLS)/node_modules/.bin/cdklocal

# The jsii kernel (a Node child of every CDK Go program) writes scratch
# directories into TMPDIR and caches packages; keep both in infra/.cache.
INFRA_ENV := TMPDIR=$(INFRA_CACHE)/tmp \
	JSII_RUNTIME_PACKAGE_CACHE_ROOT=$(INFRA_CACHE)/jsii \
	CDK_HOME=$(INFRA_CACHE)/cdk \
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
	CDK_DISABLE_CLI_TELEMETRY=true

.PHONY: infra-test infra-tools synth localstack-up localstack-down localstack-test

$(INFRA_CACHE)/tmp:
	mkdir -p $@

# -count=1: the Go test cache cannot see files the jsii child process reads.
infra-test: | $(INFRA_CACHE)/tmp
	cd $(INFRA_DIR) && $(INFRA_ENV) go test -count=1 ./...

# The CDK CLI, pinned with a lockfile (npm's `latest` is an unusable 3.0.0).
$(CDK): $(INFRA_TOOLS)/package.json $(INFRA_TOOLS)/package-lock.json
	cd $(INFRA_TOOLS) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

infra-tools: $(CDK)

synth: build $(CDK) | $(INFRA_CACHE)/tmp
	cd $(INFRA_DIR) && $(INFRA_ENV) $(CDK) synth --quiet --no-notices

# LocalStack: docker compose with LOCALSTACK_AUTH_TOKEN from the environment.
LOCALSTACK_COMPOSE := docker compose -f $(CURDIR)/localstack/docker-compose.yml
LOCALSTACK_ENV := AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
	AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=http://localhost:4566

localstack-up:
	@test -n "$$LOCALSTACK_AUTH_TOKEN" || { echo "LOCALSTACK_AUTH_TOKEN is not set (localstack/README.md)"; exit 1; }
	$(LOCALSTACK_COMPOSE) up -d --wait

localstack-down:
	$(LOCALSTACK_COMPOSE) down

# Without the Lambda@Edge function: the smoke test does not reach it, and
# whether LocalStack accepts its us-east-1 association is not known.
localstack-test: build $(CDK) localstack-up | $(INFRA_CACHE)/tmp
	cd $(INFRA_DIR) && $(INFRA_ENV) $(LOCALSTACK_ENV) $(CDKLOCAL) bootstrap --no-notices aws://000000000000/us-east-1
	cd $(INFRA_DIR) && $(INFRA_ENV) $(LOCALSTACK_ENV) $(CDKLOCAL) deploy --no-notices --require-approval never \
		-c berth:stackName=BerthLocal -c berth:removalPolicy=destroy -c berth:deletionProtection=false -c berth:lambdaEdge=false \
		--outputs-file $(INFRA_CACHE)/localstack-outputs.json
	$(LOCALSTACK_ENV) $(CURDIR)/localstack/smoke.sh $(INFRA_CACHE)/localstack-outputs.json

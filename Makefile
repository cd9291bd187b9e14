GO ?= go
FUZZTIME ?= 30s
SOAK_STORE ?= ring

.PHONY: help build run test lint bench soak fuzz check-imports proto

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build bin/seer
	$(GO) build -o bin/seer ./cmd/seer

run: build ## Build and serve the quickstart (embedded store, no Redis needed)
	./bin/seer serve --config configs/quickstart.yaml

# Every test runs twice: with the race detector, then in the build that
# serves, where the tests that skip under it run (allocation budgets, which
# its random sync.Pool emptying breaks, and the collector's pauses while an
# artifact loads, which its instrumented allocation hides).
test: lint ## Lint, then run every test with the race detector, then without it
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 ./...

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

bench: ## Run the benchmarks once
	$(GO) test -run '^$$' -bench . -benchmem ./...

soak: ## The real binary under load and faults against real redis-servers (SOAK_STORE=ring or cluster), about 7 minutes (docs/soak.md)
	$(GO) build -o bin/seer ./cmd/seer
	$(GO) build -o bin/soak ./tools/soak
	./bin/soak -seer bin/seer -quickstart configs/quickstart -store $(SOAK_STORE)

fuzz: ## Every fuzz target for FUZZTIME each (default 30s), stopping at the first failure (tools/fuzz.sh)
	FUZZTIME=$(FUZZTIME) tools/fuzz.sh

check-imports: ## Check that package dependencies point one way
	$(GO) test -count=1 ./internal/layering

# The protobuf plugins, pinned; protoc is Debian's protobuf-compiler.
PROTOC_GEN_GO      = google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC = google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

proto: ## Regenerate api/seer/v1 from seer.proto (protoc from protobuf-compiler)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO_GRPC)
	protoc --plugin=protoc-gen-go=bin/protoc-gen-go --plugin=protoc-gen-go-grpc=bin/protoc-gen-go-grpc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		api/seer/v1/seer.proto

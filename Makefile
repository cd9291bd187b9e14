GO ?= go

.PHONY: help build run test lint bench check-imports

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build bin/seer
	$(GO) build -o bin/seer ./cmd/seer

run: build ## Build and serve the quickstart (embedded store, no Redis needed)
	./bin/seer serve --config configs/quickstart.yaml

test: lint ## Lint, then run every test with the race detector
	$(GO) test -race -count=1 ./...

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

bench: ## Run the benchmarks once
	$(GO) test -run '^$$' -bench . -benchmem ./...

check-imports: ## Check that package dependencies point one way
	$(GO) test -count=1 ./internal/layering

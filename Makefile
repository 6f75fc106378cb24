# txswitch — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/txswitch
# Every package but the scenario suite runs under the race detector: the
# whole product is concurrent. The scenarios run without it (they are
# whole clusters under load; the race detector would only slow them down).
UNIT_PKGS  := ./consensus/... ./storage/... ./providers/... ./switch/... ./cmd/... ./chaos/... ./internal/...
SMOKE_TAGS ?= smoke

.PHONY: all build demo test deps check-go check-postgres fmt vet unit smoke bench scenarios clean

all: build

## build: compile the txswitch binary into bin/
build: check-go
	$(GO) build -o $(BIN) ./cmd/txswitch

## demo: build and start a local 3-node cluster with simulated PSPs and live traffic
demo: build
	./$(BIN) demo $(DEMO_FLAGS)

## test: install what is missing, then vet, format-check and run every test
test: deps fmt vet unit smoke

deps: check-go check-postgres
	$(GO) mod download

check-go:
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/dl/"; exit 1; }

# The central-database tests need PostgreSQL server binaries (initdb,
# postgres). Install them when missing, unless a test database is given.
check-postgres:
	@if [ -n "$$TXSWITCH_TEST_PG_URL" ]; then echo "using TXSWITCH_TEST_PG_URL"; \
	elif [ -x "$$(pg_config --bindir 2>/dev/null)/initdb" ]; then echo "PostgreSQL: $$(pg_config --bindir)"; \
	elif ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then echo "PostgreSQL: $$(ls -d /usr/lib/postgresql/*/bin | tail -1)"; \
	else echo "PostgreSQL server binaries missing: installing with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -timeout 20m $(UNIT_PKGS)

## smoke: the scenario runner's own tests and the fast scenario subset
smoke:
	$(GO) test -timeout 10m ./scenarios/... -args -tags=$(SMOKE_TAGS)

## bench: the performance benchmarks (numbers, never pass/fail)
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./storage/... ./consensus/...
	./$(BIN) bench

## scenarios: the full scenario suite, the deploy gate (JUnit in bin/scenarios.xml)
scenarios: build
	./$(BIN) scenarios run --parallel 2 --junit bin/scenarios.xml --json bin/scenarios.json

clean:
	rm -rf bin

# Nimbus. `make run` starts the platform; `make test` runs every test,
# installing and starting what the tests need. See README.md.

GO       ?= go
BIN      := bin/nimbus
DATA_DIR ?= .nimbus
# How long each fuzz target runs in `make test` (and CI).
FUZZTIME ?= 10s

.PHONY: build run test test-deps vet unit fuzz bench clean

# Static (CGO_ENABLED=0): the Docker executor runs the binary itself as
# the first process of every container, whatever C library the image has.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/nimbus

# Starts the control plane and one local agent with embedded storage under
# $(DATA_DIR). Installs bubblewrap when run as root; otherwise says what to
# install.
run: build
	@scripts/run-deps.sh
	$(BIN) up --data-dir $(DATA_DIR)

test-deps:
	@scripts/test-deps.sh >/dev/null

vet:
	$(GO) vet ./...

# Every test: dependencies first (Debian packages, a PostgreSQL cluster, a
# ClickHouse server),
# then vet, the race-enabled test suite, and a short run of every fuzz
# target. With CI=true a test whose dependency is missing fails instead of
# skipping.
test:
	@eval "$$(scripts/test-deps.sh)" && \
		$(MAKE) --no-print-directory vet && \
		$(MAKE) --no-print-directory unit && \
		$(MAKE) --no-print-directory fuzz

unit:
	$(GO) test -race -timeout 30m ./...

fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

bench: build
	$(BIN) bench jobs

clean:
	rm -rf bin

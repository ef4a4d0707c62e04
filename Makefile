# gatehouse: 'make test' runs everything against real Redis (standalone and cluster, started here).
SHELL := bash
GO ?= go

TC_ENV := GATEHOUSE_TEST_BACKENDS=testcontainers TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=localhost

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: space test vet lint lean redis redis-sentinel chromium test-short test-containers redis-image docker bench bench-peers bench-why fuzz

## The modules of this repository. The root module is what users require; the others hold what has
## heavy dependencies of its own (gRPC, the integration suite's testcontainers and toxiproxy, the demo's
## exporters, the compared libraries) and reach the root through a replace directive.
MODULES := . limiter/limitgrpc integration examples bench
## The modules whose tests run with the race detector (bench's run the comparison harness in its
## quick mode and stay without -race, to keep them short).
RACE_MODULES := . limiter/limitgrpc integration examples

## test: gofmt, go vet, staticcheck and the lean-module check, then every test of every module with the
## race detector, against real Redis (standalone, cluster and Sentinel, started here) and a real
## browser (Chromium); then the tests of bench/.
test: space redis redis-sentinel chromium vet lint lean
	@set -e; for m in $(RACE_MODULES); do echo "test: $$m"; (cd $$m && $(GO) test -race -count=1 ./...); done
	cd bench && $(GO) test -count=1 ./...

## space: room on the disk for the race-enabled builds; empties Go's build cache when the disk is short
## (.ci/space.sh).
space:
	@bash .ci/space.sh

vet:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	@set -e; for m in $(MODULES); do echo "vet: $$m"; (cd $$m && $(GO) vet ./...); done

## lint: staticcheck, fetched through the Go module proxy at a pinned version.
lint:
	@set -e; for m in $(MODULES); do echo "lint: $$m"; (cd $$m && $(GO) run $(STATICCHECK) ./...); done

## lean: a user's module importing the limiter, its HTTP middleware and the session store sees no module
## beyond gatehouse and what go-redis, the OpenTelemetry API and msgpack bring (.ci/lean.sh).
lean:
	@bash .ci/lean.sh

## test-short: the tests that need no Redis.
test-short: space vet
	@set -e; for m in $(RACE_MODULES); do (cd $$m && $(GO) test -short -race -count=1 ./...); done
	cd bench && $(GO) test -short -count=1 ./...

## test-containers: the integration suite once more, against Redis in a container (testcontainers-go).
test-containers: space redis docker redis-image
	cd integration && $(TC_ENV) $(GO) test -race -count=1 ./...

## redis: make sure redis-server and redis-cli are on PATH; installs Debian's redis-server as root with apt-get.
redis:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "redis: installing redis-server with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server not found: install it (apt-get install redis-server, brew install redis)," >&2; \
	    echo "or point the tests at servers with REDIS_URL and REDIS_CLUSTER_ADDRS." >&2; exit 1; \
	  fi; \
	fi

## redis-sentinel: make sure redis-sentinel is on PATH; installs Debian's redis-sentinel as root with apt-get.
## The package holds no binary of its own (redis-sentinel is redis-server in Sentinel mode), so
## without it the Sentinel tests run 'redis-server --sentinel' instead.
redis-sentinel: redis
	@if ! command -v redis-sentinel >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "redis-sentinel: installing redis-sentinel with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-sentinel >/dev/null; \
	  else \
	    echo "redis-sentinel not found: the Sentinel tests run 'redis-server --sentinel' (the same binary)." >&2; \
	  fi; \
	fi

## chromium: make sure a Chromium for the browser tests is on PATH; installs Debian's chromium as root with
## apt-get. Where none can be installed the browser tests skip and say why (or point
## GATEHOUSE_CHROMIUM at a Chrome or Chromium binary).
chromium:
	@if [ -z "$$GATEHOUSE_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "chromium: installing Debian's chromium with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "chromium: not found and cannot be installed here (not root, or no apt-get): the browser tests will skip." >&2; \
	  fi; \
	fi

docker:
	@bash .ci/dockerd.sh

redis-image: redis docker
	@bash .ci/redis-image.sh

## bench: the benchmarks, against a private standalone server.
bench: redis
	@set -e; for m in $(RACE_MODULES); do (cd $$m && GATEHOUSE_TEST_BACKENDS=standalone $(GO) test -run '^$$' -bench . -benchmem ./...); done

## bench-peers: gatehouse against the other rate limiters and session stores on one private server, in one
## interleaved run (about 17 minutes); writes docs/benchmarks/peers.{json,md,svg} and puts the tables in
## docs/benchmarks.md between its bench:peers markers. PEERS_FLAGS passes flags
## (go run ./cmd/peers -h lists them), e.g. PEERS_FLAGS='-rounds 3 -round 1s -note "quiet machine"'.
## bench/ is a module of its own, so that the libraries compared never become gatehouse's dependencies.
PEERS_FLAGS ?=
bench-peers: redis
	cd bench && $(GO) run ./cmd/peers -out ../docs/benchmarks -doc ../docs/benchmarks.md $(PEERS_FLAGS)

## bench-why: what moves gatehouse's ratio to redis_rate at 64 goroutines (pool size, shared or separate
## clients, key count and order, limits, a busy core): docs/benchmarks/why.{json,md,svg} and the bench:why
## markers of docs/benchmarks.md, about 9 minutes.
bench-why: redis
	cd bench && $(GO) run ./cmd/peers -experiment why -out ../docs/benchmarks -doc ../docs/benchmarks.md $(PEERS_FLAGS)

## fuzz: each fuzz target for FUZZTIME (default 30s). Their seed corpora, and any failing inputs
## saved under testdata/fuzz, also run in every 'make test'.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in ./limiter ./session; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz: $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

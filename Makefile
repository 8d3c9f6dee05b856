# portwatch: build, test and demo. `make help` lists the targets.

GO        ?= go
# The pinned BPF compiler: Debian 12's clang-19. `make generate` and
# `make check-generated` use it; `go build` needs no clang at all, because the
# generated objects are committed.
BPF_CLANG ?= clang-19
BPF_STRIP ?= llvm-strip-19
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# -mcpu=v3: the tables' compare-and-exchange needs the v3 instruction set
# (32-bit atomics; kernel 5.12).
BPF_CFLAGS := -O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/$(MULTIARCH)

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/portwatch

# Fuzz targets run briefly by `make fuzz` (CI): package and target names.
FUZZTIME  ?= 20s
FUZZ_TARGETS ?= ./catalog/rpcbind:FuzzSnooper ./loader/capture:FuzzCaptureReader ./loader:FuzzDifferential ./probe:FuzzReplies

# Arguments for the demo: the firewall scenario (lab/scenarios/NAME.nft) and
# the number of compute nodes.
SCENARIO  ?= burst
NODES     ?= 8

# Debian packages the build and the tests need; the lab's own are in
# lab/packages.txt. `make deps` installs the missing ones when run as root
# (CI and the quick start do).
DEB_PACKAGES := clang-19 llvm-19 libbpf-dev linux-libc-dev gcc make git iproute2 nftables tcpdump

.PHONY: all build generate check-generated test bench fuzz lint demo cross help deps

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## install the Debian packages the tests and the lab need (as root; idempotent)
	@if [ "$$(id -u)" != 0 ]; then echo "deps: not root: skipping package installation (privileged tests will skip)"; exit 0; fi; \
	missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	sh lab/install-deps.sh

build: ## build bin/portwatch
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/portwatch

generate: ## rebuild the BPF objects and their Go bindings with the pinned clang
	BPF2GO_CC=$(BPF_CLANG) BPF2GO_STRIP=$(BPF_STRIP) BPF2GO_CFLAGS='$(BPF_CFLAGS)' $(GO) generate ./bpf

check-generated: generate ## regenerate, and fail if the committed objects differ
	git diff --exit-code -- bpf/ || { echo "bpf/: generated files are stale: run make generate and commit them" >&2; exit 1; }

test: deps ## run every test (as root, the BPF, lab and end-to-end tests too)
	$(GO) test -count=1 -timeout 60m ./...

bench: ## run the benchmarks (figures go in BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 60m ./...

fuzz: ## run each fuzz target briefly
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

cross: ## build for AIX (ppc64), linux/arm64 and linux/ppc64le
	GOOS=aix GOARCH=ppc64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/portwatch
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/portwatch
	GOOS=linux GOARCH=ppc64le CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/portwatch

demo: deps build ## the main job on the built-in lab, live (SCENARIO=burst|open|drop-tftp|tftp-no-helper|...)
	$(GO) build -o bin/portwatch-lab ./lab/cmd/portwatch-lab
	bin/portwatch-lab demo --portwatch $(BIN) --scenario $(SCENARIO) --nodes $(NODES)

# XDPFlow. As root on a fresh Debian machine:  make demo  and  make test.
SWIFT       ?= swift
CONFIG      ?= debug
# Test targets that need the kernel (BPF, XDP, netns); the rest are pure Swift.
KERNEL_TESTS ?= BPFKernelTests|FlowCompilerTests|FlowOffloadTests

# Extra arguments for xdpflow-bench, e.g. BENCH_ARGS='--json bench.json'; benchmarks are
# only meaningful optimised, so they always use the release build.
BENCH_ARGS  ?=
BENCH_BUILD_FLAGS ?=
BENCH_BUILD  = $(SWIFT) build -c release $(BENCH_BUILD_FLAGS)

# make fuzz: the differential tests with FUZZ_SCALE times the cases of make test.
FUZZ_SCALE  ?= 50

.PHONY: all deps build test fuzz demo bench-quick clean

all: build

deps:
	@scripts/install-deps

build: deps
	$(SWIFT) build -c $(CONFIG)

test: deps
	$(SWIFT) build --build-tests
	@KERNEL_TESTS='$(KERNEL_TESTS)' scripts/run-tests

fuzz: deps
	$(SWIFT) build --build-tests
	XDPFLOW_FUZZ_SCALE=$(FUZZ_SCALE) $(SWIFT) test --skip-build --filter DifferentialPropertyTests

# The demo measures rates: always a release build.
demo: deps
	$(SWIFT) build -c release
	@XDPFLOW=$$($(SWIFT) build -c release --show-bin-path)/xdpflow scripts/demo

bench-quick: deps
	$(BENCH_BUILD) --product xdpflow-bench
	$$($(BENCH_BUILD) --show-bin-path)/xdpflow-bench $(BENCH_ARGS)

clean:
	rm -rf .build

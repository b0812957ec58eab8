# XDPFlow. As root on a fresh Debian machine:  make demo  and  make test.
SWIFT       ?= swift
CONFIG      ?= debug
# Test targets that need the kernel (BPF, XDP, netns); the rest are pure Swift.
KERNEL_TESTS ?= BPFKernelTests|FlowCompilerTests
# make fuzz: the differential tests with FUZZ_SCALE times the cases of make test.
FUZZ_SCALE  ?= 50

.PHONY: all deps build test fuzz demo clean

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

demo: build
	@XDPFLOW=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/xdpflow scripts/demo

clean:
	rm -rf .build

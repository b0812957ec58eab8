# XDPFlow. As root on a fresh Debian machine:  make demo  and  make test.
SWIFT       ?= swift
CONFIG      ?= debug
# Test targets that need the kernel (BPF, XDP, netns); the rest are pure Swift.
KERNEL_TESTS ?= BPFKernelTests|FlowCompilerTests

.PHONY: all deps build test demo clean

all: build

deps:
	@scripts/install-deps

build: deps
	$(SWIFT) build -c $(CONFIG)

test: deps
	$(SWIFT) build --build-tests
	@KERNEL_TESTS='$(KERNEL_TESTS)' scripts/run-tests

# The demo measures rates: always a release build.
demo: deps
	$(SWIFT) build -c release
	@XDPFLOW=$$($(SWIFT) build -c release --show-bin-path)/xdpflow scripts/demo

clean:
	rm -rf .build

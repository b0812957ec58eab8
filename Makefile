# XDPFlow. As root on a fresh Debian machine:  make demo  and  make test.
SWIFT       ?= swift
CONFIG      ?= debug
# Test targets that need the kernel (BPF, XDP, netns); the rest are pure Swift.
KERNEL_TESTS ?= BPFKernelTests|FlowCompilerTests|FlowOffloadTests
# Of those, the ones that run alone, one after another: fault injection (kills, full
# disks) and the live-traffic suites that account for every frame (captures, nftables
# counters, the nftables differential's verdicts).
SOLO_TESTS   ?= CrashTests|StateFaultTests|LiveChangeTests|MarkTests|XSKTests|CaptureCommandTests|NFTOffloadTests

# Extra arguments for xdpflow-bench, e.g. BENCH_ARGS='--only packets,live'; benchmarks are
# only meaningful optimised, so they always use the release build (xdpflow-bench runs the
# xdpflow binary beside it).
BENCH_ARGS  ?=
# Release builds are static executables (the Swift runtime, FoundationEssentials, libbpf and
# libxdp from their archives, with the libraries pkg-config --static names): no dynamic
# loader, no relocations, no shared libraries to map. A command that hands its words to
# the command server then costs ~1.2 ms of CPU, not 3.4 ms (bench suite cli). xdpflow and
# its libraries import FoundationEssentials only, so neither Foundation proper nor ICU is
# in the binary.
RELEASE     ?= -c release -Xswiftc -static-executable \
               $(addprefix -Xlinker ,$(shell pkg-config --static --libs libbpf libxdp))
BENCH_BUILD_FLAGS ?=
BENCH_BUILD  = $(SWIFT) build $(RELEASE) $(BENCH_BUILD_FLAGS)
BENCH_RUN    = $$($(BENCH_BUILD) --show-bin-path)/xdpflow-bench --commit $$(git describe --always --dirty 2>/dev/null || echo unknown)

# make fuzz: the differential tests with FUZZ_SCALE times the cases of make test, then
# each libFuzzer harness of Fuzz/ for FUZZ_SECONDS; make test runs each harness for
# FUZZ_TEST_SECONDS (0: not at all). See scripts/fuzz-run.
FUZZ_SCALE  ?= 50
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 25

.PHONY: all deps build test fuzz demo bench bench-quick clean install uninstall

# make install: the release binary, the man page, a bash completion and the systemd unit
# of xdpflow nft watch under PREFIX; DESTDIR stages them elsewhere (packaging). make
# uninstall removes the four.
PREFIX      ?= /usr/local
DESTDIR     ?=
SBINDIR      = $(DESTDIR)$(PREFIX)/sbin
MAN8DIR      = $(DESTDIR)$(PREFIX)/share/man/man8
BASHCOMPDIR  = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
UNITDIR      = $(DESTDIR)$(PREFIX)/lib/systemd/system

all: build

deps:
	@scripts/install-deps

build: deps
	$(SWIFT) build -c $(CONFIG)

test: deps
	$(SWIFT) build --build-tests
	@KERNEL_TESTS='$(KERNEL_TESTS)' SOLO_TESTS='$(SOLO_TESTS)' FUZZ_SECONDS='$(FUZZ_TEST_SECONDS)' SWIFT='$(SWIFT)' \
		scripts/run-tests

fuzz: deps
	$(SWIFT) build --build-tests
	XDPFLOW_FUZZ_SCALE=$(FUZZ_SCALE) $(SWIFT) test --skip-build --filter 'DifferentialPropertyTests|ACLDifferentialTests|TablePlanChangeTests|ClassBenchTests|CrashTests|NFTOffloadTests'
	SWIFT='$(SWIFT)' scripts/fuzz-run $(FUZZ_SECONDS)

# The demo measures rates: always a release build.
demo: deps
	$(SWIFT) build $(RELEASE)
	@XDPFLOW=$$($(SWIFT) build $(RELEASE) --show-bin-path)/xdpflow scripts/demo

# Every measurement; writes bench/results/<date>-<host>.json, .md and .svg.
bench: deps
	$(BENCH_BUILD)
	$(BENCH_RUN) --results bench/results $(BENCH_ARGS)

# A reduced set in under two minutes, printing the same table.
bench-quick: deps
	$(BENCH_BUILD)
	$(BENCH_RUN) --quick $(BENCH_ARGS)

clean:
	rm -rf .build Fuzz/.build

install: deps
	$(SWIFT) build $(RELEASE) --product xdpflow
	install -d $(SBINDIR) $(MAN8DIR) $(BASHCOMPDIR) $(UNITDIR)
	install -m 0755 $$($(SWIFT) build $(RELEASE) --show-bin-path)/xdpflow $(SBINDIR)/xdpflow
	install -m 0644 docs/xdpflow.8 $(MAN8DIR)/xdpflow.8
	sed 's|@SBINDIR@|$(PREFIX)/sbin|' packaging/xdpflow-nft-watch.service > $(UNITDIR)/xdpflow-nft-watch.service
	chmod 0644 $(UNITDIR)/xdpflow-nft-watch.service
	$(SBINDIR)/xdpflow --generate-completion-script bash > $(BASHCOMPDIR)/xdpflow.tmp
	chmod 0644 $(BASHCOMPDIR)/xdpflow.tmp
	mv $(BASHCOMPDIR)/xdpflow.tmp $(BASHCOMPDIR)/xdpflow

uninstall:
	rm -f $(SBINDIR)/xdpflow $(MAN8DIR)/xdpflow.8 $(BASHCOMPDIR)/xdpflow $(UNITDIR)/xdpflow-nft-watch.service

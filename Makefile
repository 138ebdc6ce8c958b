# vmm_rs: `make` builds the library and header, `make check` runs every test.

CARGO   ?= cargo
CC      ?= cc
PREFIX  ?= /usr/local
LIBDIR  := target/release
BUILD   := c_tests/build
CFLAGS  ?= -O1 -g
# (override: a CFLAGS given on the command line keeps what the tests need)
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Ic_tests -pthread
# make's built-in default is g++; c++ is what CI installs and run.sh uses.
ifeq ($(origin CXX),default)
CXX     := c++
endif
LDLIBS  := $(LIBDIR)/libvmm_rs.a -lpthread -ldl -lm

C_SRCS  := $(filter-out c_tests/header_compat_%.c c_tests/header_reject_%.c,$(wildcard c_tests/*.c))
# C++ programs (the header's C linkage): c_tests/*.cc, built with $(CXX).
CXX_SRCS := $(wildcard c_tests/*.cc)
CXX_TEST_FLAGS := -O1 -g -std=c++11 -Wall -Wextra -Werror -pedantic -Iinclude -pthread
# The 2019 protocol (cargo feature legacy-rendezvous) must deadlock here.
LEGACY_DIR := target/legacy
LEGACY_BINS := $(BUILD)/legacy/rte_lockall_test
# Every ```c readme-NAME block of README.md becomes the program readme_NAME.
README_EX := $(shell sed -n 's/^```c readme-\([a-z]*\)$$/\1/p' README.md)
C_BINS  := $(patsubst c_tests/%.c,$(BUILD)/%,$(C_SRCS)) $(patsubst c_tests/%.cc,$(BUILD)/%,$(CXX_SRCS)) \
           $(README_EX:%=$(BUILD)/readme_%)
COMPAT  := $(wildcard c_tests/header_compat_*.c c_tests/header_reject_*.c)
# The shared library's version and its soname's (build.rs): MAJOR, or
# 0.MINOR before 1.0.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ABI     := $(shell echo $(VERSION) | awk -F. '{ print ($$1 == 0) ? $$1 "." $$2 : $$1 }')

# The test-only builds in their own target directories (stress, verify,
# lib-legacy, tsan, cross-check) leave out the header's generation
# (feature `header`): the committed header is what they test, and
# compiling cbindgen once per directory cost CI over a minute.
NO_HEADER := --no-default-features

.PHONY: all lib lib-legacy stress verify tsan cross-check cross-c-tests musl-check musl-c-tests bench bench-build check doc-check cargo-test c-tests header-check install install-check clean

all: lib

# Builds the static and shared library; build.rs regenerates the header.
# The soname link lets in-tree programs linked with -Ltarget/release run
# with LD_LIBRARY_PATH=target/release.
lib:
	$(CARGO) build --release
	ln -sf libvmm_rs.so $(LIBDIR)/libvmm_rs.so.$(ABI)

check: lib header-check doc-check cargo-test c-tests install-check bench-build stress verify

# The committed header must equal a fresh generation.
header-check: lib
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git diff --exit-code -- include/vmm_rs.h || \
	  { echo "include/vmm_rs.h differs from a fresh cbindgen run: commit it"; exit 1; }; \
	fi

cargo-test:
	$(CARGO) test

# The Rust API's documentation (the rlib's users read it with `cargo doc`)
# builds without warnings: no broken or private intra-doc links.
doc-check:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --lib

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/%: c_tests/%.c c_tests/test_util.h c_tests/apic_util.h c_tests/wired_util.h include/vmm_rs.h $(LIBDIR)/libvmm_rs.a | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/%: c_tests/%.cc include/vmm_rs.h $(LIBDIR)/libvmm_rs.a | $(BUILD)
	$(CXX) $(CXXFLAGS) $(CXX_TEST_FLAGS) -o $@ $< $(LDLIBS)

# The README's C examples are compiled and run exactly as printed there.
$(BUILD)/readme_%.c: README.md | $(BUILD)
	awk -v tag='```c readme-$*' '$$0 == tag {f=1; next} /^```/ {f=0} f' README.md > $@

$(BUILD)/readme_%: $(BUILD)/readme_%.c include/vmm_rs.h $(LIBDIR)/libvmm_rs.a
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# The stress test (tests/stress.rs), release build with parking_lot's
# deadlock detector (its own target dir, so the shipped library stays
# without it). VMM_RS_STRESS_SECS sets its length (default 60).
STRESS_DIR := target/stress
stress:
	$(CARGO) test --release $(NO_HEADER) --features deadlock-detection --target-dir $(STRESS_DIR) \
	  --test stress -- --ignored --nocapture

# Model checking (tests/loom_os7622.rs: the RTE-write protocol;
# tests/loom_merge.rs: the local APIC's lock-free merge;
# tests/loom_rendezvous.rs: rendezvous waits against destroy and suspend):
# the crate built with --cfg loom, every lock and atomic of the core
# replaced by loom's;
# prints the interleavings explored. LOOM_MAX_PREEMPTIONS=n changes the
# depth. The unit tests that need no lock (decoders, register rules,
# parsers) run there too, so the loom build of the tests keeps compiling.
LOOM_DIR := target/loom
verify:
	RUSTFLAGS="--cfg loom" $(CARGO) test --release $(NO_HEADER) --target-dir $(LOOM_DIR) \
	  --lib --test loom_os7622 --test loom_merge --test loom_rendezvous -- --nocapture

# ThreadSanitizer (not part of `check`: it needs a nightly toolchain with
# rust-src, `rustup toolchain install nightly --component rust-src`): the
# library's unit tests, then every C test, C and Rust both instrumented,
# linked with the nightly's TSan runtime. A report fails the run (exit 66).
# Skipped: tests of wired memory (TSan makes mlock a no-op; stats_test
# leaves out its check that wired pages are resident). The chaos
# test runs: it waits for enough guest progress, however slow.
TSAN_DIR    := target/tsan
TSAN_TARGET := x86_64-unknown-linux-gnu
TSAN_CARGO  := RUSTFLAGS=-Zsanitizer=thread $(CARGO) +nightly
TSAN_BUILD  := $(BUILD)/tsan
tsan:
	$(TSAN_CARGO) test $(NO_HEADER) -Zbuild-std --target $(TSAN_TARGET) --target-dir $(TSAN_DIR) --lib -- \
	  --skip wired_maps --skip reinit_unwires --skip wired_bytes_count --skip wired_memory_statistic
	$(TSAN_CARGO) build $(NO_HEADER) -Zbuild-std --target $(TSAN_TARGET) --target-dir $(TSAN_DIR) --release
	mkdir -p $(TSAN_BUILD)
	@rt=$$(rustc +nightly --print sysroot)/lib/rustlib/$(TSAN_TARGET)/lib/librustc-nightly_rt.tsan.a; \
	passed=0; failed=0; \
	for f in $(filter-out c_tests/wired_test.c c_tests/wired_limits_test.c,$(C_SRCS)); do \
	  t=$(TSAN_BUILD)/$$(basename $$f .c); \
	  $(CC) $(CFLAGS) -fsanitize=thread -c -o $$t.o $$f && \
	  $(CC) -o $$t $$t.o $(TSAN_DIR)/$(TSAN_TARGET)/release/libvmm_rs.a \
	    -Wl,--whole-archive $$rt -Wl,--no-whole-archive -lpthread -ldl -lm -lrt && \
	  TSAN_OPTIONS=report_signal_unsafe=0 $$t > $$t.log 2>&1 && \
	  { passed=$$((passed + 1)); echo "PASS tsan:$$(basename $$t)"; } || \
	  { failed=$$((failed + 1)); echo "FAIL tsan:$$(basename $$t)"; cat $$t.log; }; \
	done; \
	echo "$$passed passed, $$failed failed"; test $$failed -eq 0

# Other hosts (not part of `check`: it needs the targets' standard
# libraries, `rustup target add x86_64-unknown-freebsd aarch64-apple-darwin
# aarch64-unknown-linux-gnu`, and Debian's gcc-aarch64-linux-gnu,
# g++-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user). The library and its tests
# type-check for FreeBSD and macOS; on Linux aarch64 the unit tests and
# every C test run under qemu-user. Skipped there: the core-dump test
# (qemu-user ignores MADV_DONTDUMP) and the valgrind pass; the
# single-threaded IOAPIC/LAPIC model test runs 100 of its 900 sequences
# (all 900 take some 100 s of a debug build under qemu).
CROSS_DIR   := target/cross
CROSS_TYPES := x86_64-unknown-freebsd aarch64-apple-darwin
A64         := aarch64-unknown-linux-gnu
A64_CC      := aarch64-linux-gnu-gcc
A64_CXX     := aarch64-linux-gnu-g++
A64_RUN     := qemu-aarch64 -L /usr/aarch64-linux-gnu
A64_ENV     := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$(A64_CC) \
               CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$(A64_RUN)"
cross-check:
	set -e; for t in $(CROSS_TYPES); do \
	  $(CARGO) check $(NO_HEADER) --lib --tests --target $$t --target-dir $(CROSS_DIR); done
	$(A64_ENV) VMM_RS_MODEL_SEQS=100 $(CARGO) test $(NO_HEADER) --lib --target $(A64) --target-dir $(CROSS_DIR) -- \
	  --skip guest_memory_is_left_out_of_core_dumps
	$(A64_ENV) $(CARGO) build --release $(NO_HEADER) --target $(A64) --target-dir $(CROSS_DIR)
	$(MAKE) --no-print-directory cross-c-tests CC=$(A64_CC) CXX=$(A64_CXX) \
	  LIBDIR=$(CROSS_DIR)/$(A64)/release BUILD=$(BUILD)/$(A64)

# (run by cross-check, with CC, LIBDIR and BUILD set for the target)
cross-c-tests: $(C_BINS)
	VMM_RS_RUN_WITH="$(A64_RUN)" CC="$(CC)" CXX="$(CXX)" c_tests/run.sh $(BUILD) -- $(COMPAT)

# Linux x86-64 with musl, the C library of Alpine and of static builds
# (not part of `check`: it needs `rustup target add
# x86_64-unknown-linux-musl` and Debian's musl-tools): the unit tests,
# then every C test linked statically with musl-gcc and run. musl-gcc
# leaves the system's headers out, so the kernel's (linux/, asm/), which
# some tests include, come back through a directory of links; Debian's
# libgcc_eh is built for glibc, so Rust's libunwind for musl is linked
# before it. Left out: the C++ test and the header units (no C++ library
# for musl here) and valgrind (it cannot see a static binary's malloc).
MUSL        := x86_64-unknown-linux-musl
MUSL_KHDRS  := $(CROSS_DIR)/$(MUSL)/kernel-headers
MUSL_UNWIND  = $(shell rustc --print sysroot)/lib/rustlib/$(MUSL)/lib/self-contained/libunwind.a
musl-check:
	$(CARGO) test $(NO_HEADER) --lib --target $(MUSL) --target-dir $(CROSS_DIR)
	$(CARGO) build --release $(NO_HEADER) --target $(MUSL) --target-dir $(CROSS_DIR)
	mkdir -p $(MUSL_KHDRS)
	ln -sfn /usr/include/linux $(MUSL_KHDRS)/linux
	ln -sfn /usr/include/asm-generic $(MUSL_KHDRS)/asm-generic
	ln -sfn $(firstword $(wildcard /usr/include/x86_64-linux-gnu/asm /usr/include/asm)) $(MUSL_KHDRS)/asm
	$(MAKE) --no-print-directory musl-c-tests CC=musl-gcc CXX_SRCS= CFLAGS="-O1 -g -idirafter $(MUSL_KHDRS)" \
	  LIBDIR=$(CROSS_DIR)/$(MUSL)/release BUILD=$(BUILD)/$(MUSL) \
	  LDLIBS="$(CROSS_DIR)/$(MUSL)/release/libvmm_rs.a $(MUSL_UNWIND) -lpthread -lm"

# (run by musl-check, with CC, LIBDIR, BUILD and LDLIBS set for musl)
musl-c-tests: $(C_BINS)
	VMM_RS_NO_VALGRIND="static musl binaries" c_tests/run.sh $(BUILD)

# Benchmarks: the C program (C face, Linux KVM, syscall floor) writes
# target/bench/c.tsv; then criterion (benches/vmm.rs, its own package)
# runs the Rust-side figures and prints one table of everything, also
# written to target/bench/table.md.
BENCH_DIR := target/bench
bench: bench-build
	$(BENCH_DIR)/irq_bench $(BENCH_DIR)/c.tsv
	cd benches && CRITERION_HOME=../$(BENCH_DIR)/criterion $(CARGO) bench \
	  --target-dir ../target/bench-rs --bench vmm

# Both benchmarks built, not run: part of `check`, so an API change that
# breaks them fails there rather than at the next `make bench`.
bench-build: lib
	mkdir -p $(BENCH_DIR)
	$(CC) -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Ic_tests -pthread \
	  -o $(BENCH_DIR)/irq_bench benches/irq_bench.c $(LDLIBS)
	cd benches && $(CARGO) bench --no-run --target-dir ../target/bench-rs --bench vmm

# The library built with the 2019 protocol, to show the tests catch it.
lib-legacy:
	$(CARGO) build --release $(NO_HEADER) --features legacy-rendezvous --target-dir $(LEGACY_DIR)

$(BUILD)/legacy/%: c_tests/%.c c_tests/test_util.h include/vmm_rs.h lib-legacy
	mkdir -p $(BUILD)/legacy
	$(CC) $(CFLAGS) -o $@ $< $(LEGACY_DIR)/release/libvmm_rs.a -lpthread -ldl -lm

c-tests: lib $(C_BINS) $(LEGACY_BINS)
	CC="$(CC)" CXX="$(CXX)" c_tests/run.sh $(BUILD) --expect-deadlock $(LEGACY_BINS) -- $(COMPAT)

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(LIBDIR)/libvmm_rs.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBDIR)/libvmm_rs.so $(DESTDIR)$(PREFIX)/lib/libvmm_rs.so.$(VERSION)
	ln -sf libvmm_rs.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libvmm_rs.so.$(ABI)
	ln -sf libvmm_rs.so.$(ABI) $(DESTDIR)$(PREFIX)/lib/libvmm_rs.so
	install -m 644 include/vmm_rs.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' vmm_rs.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vmm_rs.pc

# `make install` into a scratch prefix, then a program linked against the
# installed shared library through pkg-config runs, loading it by soname.
INSTALL_CHECK := $(BUILD)/install-check
install-check: lib
	rm -rf $(INSTALL_CHECK)
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(INSTALL_CHECK)) >/dev/null
	test "$$(readlink $(INSTALL_CHECK)/lib/libvmm_rs.so)" = libvmm_rs.so.$(ABI)
	readelf -d $(INSTALL_CHECK)/lib/libvmm_rs.so.$(VERSION) | grep -q 'SONAME.*\[libvmm_rs.so.$(ABI)\]'
	sed -n '/^```c readme-registers$$/,/^```$$/p' README.md | sed '1d;$$d' > $(INSTALL_CHECK)/prog.c
	PKG_CONFIG_PATH=$(INSTALL_CHECK)/lib/pkgconfig; export PKG_CONFIG_PATH; \
	  test "$$(pkg-config --modversion vmm_rs)" = $(VERSION) && \
	  $(CC) -o $(INSTALL_CHECK)/prog $(INSTALL_CHECK)/prog.c $$(pkg-config --cflags --libs vmm_rs) -lpthread -ldl -lm
	readelf -d $(INSTALL_CHECK)/prog | grep -q 'NEEDED.*\[libvmm_rs.so.$(ABI)\]'
	LD_LIBRARY_PATH=$(INSTALL_CHECK)/lib $(INSTALL_CHECK)/prog > /dev/null
	# And in the tree, as the README's Example says.
	$(CC) -Iinclude -o $(INSTALL_CHECK)/prog-tree $(INSTALL_CHECK)/prog.c -L$(LIBDIR) -lvmm_rs -lpthread -ldl -lm
	LD_LIBRARY_PATH=$(LIBDIR) $(INSTALL_CHECK)/prog-tree > /dev/null
	@echo "install-check: libvmm_rs.so.$(VERSION), soname libvmm_rs.so.$(ABI): ok"

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

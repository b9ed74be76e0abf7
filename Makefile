# txdir — build, test and install.
#
#   make            build everything that has sources (into build/)
#   make check      deps + build + unit, mount and CLI tests, then the same
#                   unit and mount tests against an ASan/UBSan build
#   make asan       only the sanitizer pass (build-asan/)
#   make tsan       ThreadSanitizer: the engine and its unit suites (with the
#                   multi-threaded tests/unit/test_stress.c) in build-tsan/,
#                   no FUSE; a TSan report fails the suite (also in check)
#   make check-long the long loops: the stress suite with many
#                   rounds under TSan, ASan and plain, then check-loop N=$(LONG_N)
#                   (the mount suites at their full length: nsdiff's 60 and
#                   fsx's 20,000 operations under ASan too, txncrash's 36
#                   SIGKILL cycles; make check runs 20, 10,000 and 12)
#   make check-loop N=20  the mount suites N times in a row, plain then
#                   ASan, stopping at the first failure (flake hunts)
#   make demo       deps + build + tests/demo.sh
#   make bench      build + tests/bench/run.sh
#   make install    PREFIX=/usr/local, DESTDIR honoured
#
# Products are built from whatever sources exist, so a directory that is
# still empty builds nothing; any compile or link error fails the build.
# Each tests/unit/test_X.c, tests/mount/X.c and tests/bench/X.c is one
# program; shared test code lives in tests/support/*.c (linked into unit
# and mount tests).
#
# BUILD selects the output tree, SAN=1 adds the sanitizers: `make asan` is
# `make BUILD=build-asan SAN=1` plus running the tests.

BUILD ?= build
PREFIX ?= /usr/local
CC ?= cc
CFLAGS ?= -O2 -g
PKG_CONFIG ?= pkg-config

SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
ifeq ($(SAN),1)
EXTRA_FLAGS := $(SAN_FLAGS)
endif
CRITERION_LIB := -lcriterion
ifeq ($(SAN),tsan)
EXTRA_FLAGS := $(TSAN_FLAGS)
# Criterion cannot run under TSan (its fixed-address arena): the unit suites
# build against the stand-in in tests/support/tsan/criterion/criterion.h.
CRITERION_LIB :=
endif

# Always on, whatever CFLAGS the caller gives.
REQ_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -Iengine \
	-MMD -MP $(EXTRA_FLAGS)
ALL_CFLAGS = $(CFLAGS) $(REQ_CFLAGS)
ALL_LDFLAGS = $(LDFLAGS) -pthread $(EXTRA_FLAGS)
LIBS := -lxxhash -lcjson -lpthread
TEST_CFLAGS := $(if $(filter tsan,$(SAN)),-Itests/support/tsan) -Itests/support
# Lazily expanded: pkg-config runs only when a FUSE object is built, which
# is after `make deps` has installed libfuse3-dev.
FUSE_CFLAGS = $(shell $(PKG_CONFIG) --cflags fuse3)
FUSE_LIBS = $(shell $(PKG_CONFIG) --libs fuse3)

ENGINE_SRC := $(wildcard engine/*.c)
FUSEFS_SRC := $(wildcard fusefs/*.c)
MOUNTCTL_SRC := $(wildcard mountctl/*.c)
SUPPORT_SRC := $(wildcard tests/support/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
MOUNT_SRC := $(wildcard tests/mount/*.c)
BENCH_SRC := $(wildcard tests/bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
ENGINE_OBJ := $(call obj,$(ENGINE_SRC))
FUSEFS_OBJ := $(call obj,$(FUSEFS_SRC))
MOUNTCTL_OBJ := $(call obj,$(MOUNTCTL_SRC))
SUPPORT_OBJ := $(call obj,$(SUPPORT_SRC))

LIBA := $(BUILD)/libtxdir.a
LIBSO := $(BUILD)/libtxdir.so
TXDIRFS := $(if $(FUSEFS_SRC),$(BUILD)/txdirfs)
MOUNTCTL := $(if $(MOUNTCTL_SRC),$(BUILD)/mountctl)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
MOUNT_BIN := $(patsubst tests/mount/%.c,$(BUILD)/tests/mount/%,$(MOUNT_SRC))
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRC))

# The FUSE floor for the benchmarks: txdirfs's request loop without the engine.
FLOORFS := $(if $(FUSEFS_SRC),$(BUILD)/tests/bench/floorfs)
FLOORFS_OBJ := $(call obj,tests/bench/floorfs/floorfs.c fusefs/loop.c fusefs/proto.c)

PROGRAMS := $(TXDIRFS) $(MOUNTCTL) $(UNIT_BIN) $(MOUNT_BIN) $(BENCH_BIN) $(FLOORFS)
LIBRARIES := $(if $(ENGINE_SRC),$(LIBA) $(LIBSO))

DEPS_PKGS := build-essential pkg-config libfuse3-dev fuse3 libcjson-dev \
	libcriterion-dev libattr1-dev attr libxxhash-dev sqlite3 rsync hyperfine \
	fio valgrind util-linux procps git python3

MAN_PAGES := $(wildcard mountctl/man/*.[1-8])

.PHONY: all deps check asan asan-build tsan tsan-build unit-build check-long check-loop \
	bench demo install uninstall clean
.DEFAULT_GOAL := all

all: $(LIBRARIES) $(PROGRAMS)

# The engine and its unit suites only (the TSan build: no FUSE, no mount).
unit-build: $(LIBA) $(UNIT_BIN)

# ---- compiling ------------------------------------------------------------
# Engine objects are position independent: the same objects make the .a and
# the .so.
$(BUILD)/obj/engine/%.o: engine/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(BUILD)/obj/fusefs/%.o: fusefs/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(FUSE_CFLAGS) -c $< -o $@

$(BUILD)/obj/mountctl/%.o: mountctl/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -c $< -o $@

# ---- linking --------------------------------------------------------------
$(LIBA): $(ENGINE_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(LIBSO): $(ENGINE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,libtxdir.so -o $@ $^ $(LIBS)

$(BUILD)/txdirfs: $(FUSEFS_OBJ) $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $(FUSEFS_OBJ) $(LIBA) $(FUSE_LIBS) $(LIBS)

$(BUILD)/mountctl: $(MOUNTCTL_OBJ) $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $(MOUNTCTL_OBJ) $(LIBA) $(LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(SUPPORT_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LIBA) $(CRITERION_LIB) $(LIBS)

$(BUILD)/tests/mount/%: $(BUILD)/obj/tests/mount/%.o $(SUPPORT_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LIBA) -lcriterion -lattr $(LIBS)

$(BUILD)/obj/tests/bench/floorfs/floorfs.o: TEST_CFLAGS += $(FUSE_CFLAGS) -Ifusefs
# tests/unit/test_layers.c reads the engine's sources (its layering rules)
$(BUILD)/obj/tests/unit/test_layers.o: TEST_CFLAGS += -DTXD_SRCDIR='"$(CURDIR)"'

$(FLOORFS): $(FLOORFS_OBJ)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(FUSE_LIBS) -lpthread

$(BUILD)/tests/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBA) $(LIBS)

# Keep objects: they are the incremental build.
.SECONDARY:

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/tests/*/*.d $(BUILD)/obj/tests/*/*/*.d)

# ---- dependencies -----------------------------------------------------------
# No apt call at all when every package is installed.
deps:
	@missing=""; \
	installed=" $$(dpkg-query -W -f='$${Package}=$${Status}\n' $(DEPS_PKGS) 2>/dev/null \
		| sed -n 's/=install ok installed$$//p' | tr '\n' ' ')"; \
	for p in $(DEPS_PKGS); do \
		case "$$installed" in *" $$p "*) ;; *) missing="$$missing $$p";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		echo "deps: installing$$missing"; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y \
			--no-install-recommends $$missing; \
	fi

# ---- tests --------------------------------------------------------------------
# The normal pass (unit, mount, CLI tests) and the sanitizer pass (unit and
# mount tests against an ASan txdirfs) are aggregated into one final
# "N passed, N failed" line by tests/check.sh.
# The three builds run side by side, and check.sh runs CHECK_JOBS suites at
# once (default: the CPUs), the longest first; its summary gives every
# suite's wall and CPU time. Without -j on the command line the builds take
# -j$(NPROC).
NPROC := $(shell nproc 2>/dev/null || echo 2)
CHECK_J = $(if $(findstring -j,$(MAKEFLAGS)),,-j$(NPROC))
check: deps
	@$(MAKE) --no-print-directory $(CHECK_J) check-build
	timeout 1200 bash tests/check.sh full:$(BUILD) asan:build-asan tsan:build-tsan

.PHONY: check-build
check-build: all asan-build tsan-build

asan: deps
	@$(MAKE) --no-print-directory asan-build
	timeout 900 bash tests/check.sh asan:build-asan

asan-build:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all

tsan: deps
	@$(MAKE) --no-print-directory tsan-build
	timeout 900 bash tests/check.sh tsan:build-tsan

tsan-build:
	@$(MAKE) --no-print-directory BUILD=build-tsan SAN=tsan unit-build

# Long loops that do not fit in check's time: the stress suite with many
# rounds (TSan, ASan and plain), then the mount suites LONG_N times, plain and
# ASan (CI: once more, to fit its 90 minutes; `make check-loop N=20` for a hunt).
LONG_N ?= 1
LONG_STRESS_ROUNDS ?= 2000
check-long: deps
	@$(MAKE) --no-print-directory $(CHECK_J) check-build
	STRESS_ROUNDS=$(LONG_STRESS_ROUNDS) timeout 1200 bash tests/check.sh \
		stress:build-tsan stress:build-asan stress:$(BUILD)
	timeout 3000 bash tests/loop.sh $(LONG_N) $(BUILD) build-asan

N ?= 20
check-loop: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan-build
	timeout 14400 bash tests/loop.sh $(N) $(BUILD) build-asan

bench: all
	timeout 1800 bash tests/bench/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	timeout 120 bash tests/demo.sh

# ---- fuzzing (tests/fuzz) -----------------------------------------------------
# Each tests/fuzz/fuzz_X.c is a libFuzzer harness (LLVMFuzzerTestOneInput)
# with seeds in tests/fuzz/corpus/fuzz_X/.
#   make fuzz     deps + clang: builds build-fuzz/ with libFuzzer, ASan and
#                 UBSan and runs each harness FUZZ_SECONDS (default 60) on a
#                 scratch copy of its corpus (new finds stay in
#                 build-fuzz/corpus/; crashes in build-fuzz/crash/)
#   make all      also links each harness with tests/fuzz/replay.c (a plain
#                 main that replays files), which `make check` runs over the
#                 committed corpora in the normal and the ASan pass
#                 (tests/fuzz/run.sh)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/tests/fuzz/replay-%,$(FUZZ_SRC))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/tests/fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 60
# clang, and libclang-rt-dev for libFuzzer and the sanitizer runtimes (only
# recommended by clang, and deps installs no recommends)
FUZZ_DEPS_PKGS := clang libclang-rt-dev
FUZZ_SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=undefined -fno-omit-frame-pointer
ifeq ($(FUZZ),1)
REQ_CFLAGS += $(FUZZ_SAN_FLAGS)
endif

.PHONY: fuzz fuzz-build fuzz-deps fuzz-seeds
all: $(FUZZ_REPLAY_BIN)

$(BUILD)/tests/fuzz/replay-%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay.o \
		$(SUPPORT_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/fuzz/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(SUPPORT_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS)

# The seed corpora: tests/fuzz/mkseeds.sh cuts them out of a store that
# mkseeds makes (run by hand; the seeds are committed).
$(BUILD)/tests/fuzz/mkseeds: $(BUILD)/obj/tests/fuzz/mkseeds.o $(SUPPORT_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

fuzz-seeds: $(BUILD)/tests/fuzz/mkseeds
	bash tests/fuzz/mkseeds.sh $(BUILD)/tests/fuzz/mkseeds

fuzz-deps:
	@$(MAKE) --no-print-directory DEPS_PKGS="$(DEPS_PKGS) $(FUZZ_DEPS_PKGS)" deps

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang FUZZ=1 \
		build-fuzz/libtxdir.a $(patsubst $(BUILD)/%,build-fuzz/%,$(FUZZ_BIN))

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh --libfuzzer build-fuzz

# ---- install ------------------------------------------------------------------
# txdirfs goes to bin/ so mount.fuse3 finds it on PATH: an fstab line
# "STORE MNT fuse.txdirfs defaults 0 0" then works.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man7 $(DESTDIR)$(PREFIX)/share/man/man8
	$(if $(TXDIRFS),install -m 755 $(TXDIRFS) $(DESTDIR)$(PREFIX)/bin/txdirfs)
	$(if $(MOUNTCTL),install -m 755 $(MOUNTCTL) $(DESTDIR)$(PREFIX)/bin/mountctl)
	$(if $(LIBRARIES),install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libtxdir.a)
	$(if $(LIBRARIES),install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libtxdir.so)
	install -m 644 engine/txdir.h $(DESTDIR)$(PREFIX)/include/txdir.h
	$(foreach m,$(MAN_PAGES),install -m 644 $(m) \
		$(DESTDIR)$(PREFIX)/share/man/man$(subst .,,$(suffix $(m)))/$(notdir $(m));)
	install -D -m 644 mountctl/completion/mountctl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/mountctl

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/txdirfs $(DESTDIR)$(PREFIX)/bin/mountctl \
		$(DESTDIR)$(PREFIX)/lib/libtxdir.a $(DESTDIR)$(PREFIX)/lib/libtxdir.so \
		$(DESTDIR)$(PREFIX)/include/txdir.h \
		$(foreach m,$(MAN_PAGES),$(DESTDIR)$(PREFIX)/share/man/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/mountctl

clean:
	rm -rf build build-asan build-tsan build-fuzz

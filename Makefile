# txdir — build, test and install.
#
#   make            build everything that has sources (into build/)
#   make products   only what running and installing need: libtxdir,
#                   txdirfs, mountctl (no test program)
#   make deps       install the packages building and running need
#   make check      deps + its test tools + build + unit, mount and CLI tests,
#                   then the same unit and mount tests against an ASan/UBSan build
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
#   make demo       deps + products + tests/demo.sh
#   make bench      deps + the benchmarks' tools + build + tests/bench/run.sh
#   make install    products into PREFIX (/usr/local), DESTDIR honoured;
#                   make uninstall removes exactly what it installed
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
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
# systemd reads units from /usr/local/lib/systemd/system and
# /usr/lib/systemd/system (PREFIX /usr), among others
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
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

# libtxdir.so.$(VERSION) is the file, libtxdir.so.$(SOVERSION) its soname
# (what programs record and ld.so looks for), libtxdir.so the linker name
# (-ltxdir). engine/libtxdir.map says when each changes.
VERSION := 2.1.0
SOVERSION := 2
LIBA := $(BUILD)/libtxdir.a
LIBSO_FILE := libtxdir.so.$(VERSION)
LIBSO_SONAME := libtxdir.so.$(SOVERSION)
LIBSO := $(BUILD)/$(LIBSO_FILE)
LIBSO_LINKS := $(BUILD)/$(LIBSO_SONAME) $(BUILD)/libtxdir.so
LIBMAP := engine/libtxdir.map
TXDIRFS := $(if $(FUSEFS_SRC),$(BUILD)/txdirfs)
MOUNTCTL := $(if $(MOUNTCTL_SRC),$(BUILD)/mountctl)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
MOUNT_BIN := $(patsubst tests/mount/%.c,$(BUILD)/tests/mount/%,$(MOUNT_SRC))
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRC))

# The FUSE floor for the benchmarks: txdirfs's request loop without the engine.
FLOORFS := $(if $(FUSEFS_SRC),$(BUILD)/tests/bench/floorfs)
FLOORFS_OBJ := $(call obj,tests/bench/floorfs/floorfs.c fusefs/loop.c fusefs/proto.c)

PROGRAMS := $(TXDIRFS) $(MOUNTCTL) $(UNIT_BIN) $(MOUNT_BIN) $(BENCH_BIN) $(FLOORFS)
LIBRARIES := $(if $(ENGINE_SRC),$(LIBA) $(LIBSO) $(LIBSO_LINKS))

# What each command needs, and nothing more (each package checked against
# what uses it; `make deps` installs the first list):
#   build and run (make, make demo, make install): the compiler, the FUSE
#     library and fusermount3/mount.fuse3, the JSON and checksum libraries;
#     attr for the demo's getfattr
#   make check adds: Criterion (unit and mount suites), libattr (mount suites
#     link -lattr), python3 (nsdiff.py and the JSON checks of the mount and
#     CLI suites), rsync, git and sqlite3 (real programs on the mount),
#     procps (pgrep/pkill), util-linux (setpriv: the non-root cases),
#     binutils (nm/readelf: tests/cli/install.sh)
#   make bench adds: fio (m5; it Depends on ceph, gluster and pmem libraries,
#     so only the benchmarks pull them in), sqlite3 and libsqlite3-dev (m9
#     compares commits with SQLite's), python3 (m10), e2fsprogs (mkfs.ext4
#     for the native baseline's scratch ext4)
# Nothing uses valgrind or hyperfine: they are no longer installed.
BUILD_PKGS := gcc make libc6-dev pkg-config libfuse3-dev fuse3 libcjson-dev \
	libxxhash-dev attr
CHECK_PKGS := $(BUILD_PKGS) libcriterion-dev libattr1-dev python3 rsync git sqlite3 \
	procps util-linux binutils strace
BENCH_PKGS := $(BUILD_PKGS) fio sqlite3 libsqlite3-dev python3 e2fsprogs
DEPS_PKGS := $(BUILD_PKGS)

MAN_PAGES := $(wildcard mountctl/man/*.[1-8])

.PHONY: FORCE all products deps check asan asan-build tsan tsan-build unit-build check-long check-loop \
	bench demo install uninstall clean
.DEFAULT_GOAL := all

all: $(LIBRARIES) $(PROGRAMS)

# What running and installing need: the libraries, txdirfs and mountctl (no
# test program, so no test tool or library).
products: $(LIBRARIES) $(TXDIRFS) $(MOUNTCTL)

# The engine and its unit suites only (the TSan build: no FUSE, no mount).
unit-build: $(LIBA) $(UNIT_BIN)

# ---- compiling ------------------------------------------------------------
# Engine objects are position independent: the same objects make the .a and
# the .so. Hidden by default: only what txdir.h declares (between its
# visibility pragmas) is exported from the .so.
# A change of these flags rebuilds the engine (as git's GIT-CFLAGS): an
# object left from before -fvisibility=hidden would export its symbols.
# INSTALL_AS_BUILT=1 (tests/cli/install.sh, systemd.sh) installs the build
# as it is, without the flags of the build at hand (make check may have
# built it with other CFLAGS or SAN): no rebuild under the running suites.
ENGINE_CFLAGS = $(ALL_CFLAGS) -fPIC -fvisibility=hidden
ENGINE_FLAGS_STAMP := $(if $(INSTALL_AS_BUILT),,$(BUILD)/obj/engine/.cflags)
ifneq ($(ENGINE_FLAGS_STAMP),)
$(ENGINE_FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(CC) $(ENGINE_CFLAGS)' ]; then \
		echo '$(CC) $(ENGINE_CFLAGS)' >$@; fi
endif

$(BUILD)/obj/engine/%.o: engine/%.c $(ENGINE_FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ENGINE_CFLAGS) -c $< -o $@

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

$(LIBSO): $(ENGINE_OBJ) $(LIBMAP)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,$(LIBSO_SONAME) \
		-Wl,--version-script=$(LIBMAP) -o $@ $(ENGINE_OBJ) $(LIBS)

$(LIBSO_LINKS): $(LIBSO)
	ln -sfn $(LIBSO_FILE) $@

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
# apt_install_missing PACKAGES: installs those not installed yet, without
# recommends, with sudo when not root; no apt call at all when every one is
# installed.
define apt_install_missing
	@missing=""; \
	installed=" $$(dpkg-query -W -f='$${Package}=$${Status}\n' $(1) 2>/dev/null \
		| sed -n 's/=install ok installed$$//p' | tr '\n' ' ')"; \
	for p in $(1); do \
		case "$$installed" in *" $$p "*) ;; *) missing="$$missing $$p";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		echo "deps: installing$$missing"; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y \
			--no-install-recommends $$missing; \
	fi
endef

.PHONY: check-deps bench-deps
deps:
	$(call apt_install_missing,$(DEPS_PKGS))

check-deps:
	$(call apt_install_missing,$(CHECK_PKGS))

bench-deps:
	$(call apt_install_missing,$(BENCH_PKGS))

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
check: check-deps
	@$(MAKE) --no-print-directory $(CHECK_J) check-build
	timeout 1200 bash tests/check.sh full:$(BUILD) asan:build-asan tsan:build-tsan

.PHONY: check-build
check-build: all asan-build tsan-build

asan: check-deps
	@$(MAKE) --no-print-directory asan-build
	timeout 900 bash tests/check.sh asan:build-asan

asan-build:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all

tsan: check-deps
	@$(MAKE) --no-print-directory tsan-build
	timeout 900 bash tests/check.sh tsan:build-tsan

tsan-build:
	@$(MAKE) --no-print-directory BUILD=build-tsan SAN=tsan unit-build

# Long loops that do not fit in check's time: the stress suite with many
# rounds (TSan, ASan and plain), then the mount suites LONG_N times, plain and
# ASan (CI: once more, to fit its 90 minutes; `make check-loop N=20` for a hunt).
LONG_N ?= 1
LONG_STRESS_ROUNDS ?= 2000
check-long: check-deps
	@$(MAKE) --no-print-directory $(CHECK_J) check-build
	STRESS_ROUNDS=$(LONG_STRESS_ROUNDS) timeout 1200 bash tests/check.sh \
		stress:build-tsan stress:build-asan stress:$(BUILD)
	timeout 3000 bash tests/loop.sh $(LONG_N) $(BUILD) build-asan

N ?= 20
check-loop: check-deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan-build
	timeout 14400 bash tests/loop.sh $(N) $(BUILD) build-asan

bench: bench-deps
	@$(MAKE) --no-print-directory all
	timeout 1800 bash tests/bench/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory products
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
	$(call apt_install_missing,$(BUILD_PKGS) $(FUZZ_DEPS_PKGS))

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang FUZZ=1 \
		build-fuzz/libtxdir.a $(patsubst $(BUILD)/%,build-fuzz/%,$(FUZZ_BIN))

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh --libfuzzer build-fuzz

# ---- install ------------------------------------------------------------------
# txdirfs goes to $(BINDIR) so mount.fuse3 finds it on PATH: an fstab line
# "STORE MNT fuse.txdirfs defaults 0 0" then works (mount(8) runs
# mount.fuse3, which runs "txdirfs STORE MNT -o OPTS"). DESTDIR stages a
# package: nothing of it is recorded in the installed files (libtxdir.pc and
# txdirfs@.service name the final paths). Without DESTDIR, as root, ldconfig
# updates ld.so's cache so the new soname is found at once.
# tests/cli/install.sh installs into a DESTDIR, links a program against it
# with pkg-config and uninstalls.
COMPLETION := $(wildcard mountctl/completion/mountctl.bash)
UNIT := $(wildcard mountctl/systemd/txdirfs@.service)
man_dest = $(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(1)))/$(notdir $(1))
INSTALLED := $(if $(TXDIRFS),$(BINDIR)/txdirfs) $(if $(MOUNTCTL),$(BINDIR)/mountctl) \
	$(if $(LIBRARIES),$(LIBDIR)/libtxdir.a $(LIBDIR)/$(LIBSO_FILE) \
		$(LIBDIR)/$(LIBSO_SONAME) $(LIBDIR)/libtxdir.so $(PKGCONFIGDIR)/libtxdir.pc) \
	$(INCLUDEDIR)/txdir.h $(if $(COMPLETION),$(COMPLETIONDIR)/mountctl) \
	$(if $(UNIT),$(SYSTEMDUNITDIR)/txdirfs@.service)

install: products
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR) $(sort $(dir $(foreach m,$(MAN_PAGES),$(call man_dest,$(m)))))
	$(if $(TXDIRFS),install -m 755 $(TXDIRFS) $(DESTDIR)$(BINDIR)/txdirfs)
	$(if $(MOUNTCTL),install -m 755 $(MOUNTCTL) $(DESTDIR)$(BINDIR)/mountctl)
	$(if $(LIBRARIES),install -m 644 $(LIBA) $(DESTDIR)$(LIBDIR)/libtxdir.a)
	$(if $(LIBRARIES),install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)/$(LIBSO_FILE))
	$(if $(LIBRARIES),ln -sfn $(LIBSO_FILE) $(DESTDIR)$(LIBDIR)/$(LIBSO_SONAME))
	$(if $(LIBRARIES),ln -sfn $(LIBSO_SONAME) $(DESTDIR)$(LIBDIR)/libtxdir.so)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
		engine/libtxdir.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/libtxdir.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/libtxdir.pc
	install -m 644 engine/txdir.h $(DESTDIR)$(INCLUDEDIR)/txdir.h
	$(foreach m,$(MAN_PAGES),install -m 644 $(m) $(call man_dest,$(m));)
	$(if $(COMPLETION),install -D -m 644 $(COMPLETION) $(DESTDIR)$(COMPLETIONDIR)/mountctl)
	$(if $(UNIT),install -d $(DESTDIR)$(SYSTEMDUNITDIR))
	$(if $(UNIT),sed 's|/usr/local/bin/txdirfs|$(BINDIR)/txdirfs|g' $(UNIT) \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/txdirfs@.service)
	$(if $(UNIT),chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/txdirfs@.service)
	$(if $(DESTDIR),,$(if $(filter 0,$(shell id -u)),-ldconfig))

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED)) \
		$(foreach m,$(MAN_PAGES),$(call man_dest,$(m)))
	$(if $(DESTDIR),,$(if $(filter 0,$(shell id -u)),-ldconfig))

clean:
	rm -rf build build-asan build-tsan build-fuzz

#!/usr/bin/env bash
# tests/cli/deps.sh — what `make deps` (make demo, make install), `make
# check-deps` (make check) and `make bench-deps` (make bench) install:
#   - each list fits its command: building and running need no test or
#     benchmark tool; check adds its tools, bench its own (fio only there);
#   - no apt call at all when every package is installed;
#   - a missing package: apt-get update, then apt-get install -y
#     --no-install-recommends of the missing ones only, with sudo when not
#     root.
# apt-get and sudo are stand-ins on PATH that only record their arguments:
# nothing is installed.
source "$(dirname "$0")/lib.bash"

FAKE=$T/fakebin
mkdir -p "$FAKE"
cat >"$FAKE/apt-get" <<EOF
#!/bin/sh
echo "apt-get \$*" >>"$T/calls"
EOF
cat >"$FAKE/sudo" <<EOF
#!/bin/sh
echo "sudo" >>"$T/calls"
exec "\$@"
EOF
chmod 755 "$FAKE/apt-get" "$FAKE/sudo" "$T"
: >"$T/calls"
chmod 666 "$T/calls"

mk() { # make ARGS... with the stand-ins first on PATH
	OUT=$(PATH="$FAKE:$PATH" timeout -k 5 60 make -C "$ROOT" -s --no-print-directory "$@" 2>&1)
	RC=$?
}
# pkgs VAR: the value of a Makefile variable
pkgs() {
	printf 'print-var:\n\t@echo $(%s)\n' "$1" >"$T/print.mk"
	timeout 30 make -C "$ROOT" -s --no-print-directory -f Makefile -f "$T/print.mk" print-var 2>/dev/null
}
has() { grep -qw -- "$2" <<<" $1 "; }

# ---- the lists ---------------------------------------------------------------
build=$(pkgs BUILD_PKGS)
check_l=$(pkgs CHECK_PKGS)
bench=$(pkgs BENCH_PKGS)
deps=$(pkgs DEPS_PKGS)
if [ -n "$build" ] && [ "$deps" = "$build" ]; then
	ok "make deps installs the build-and-run list ($build)"
else
	not_ok "make deps installs the build-and-run list" "DEPS_PKGS '$deps', BUILD_PKGS '$build'"
fi
for p in libfuse3-dev fuse3 libcjson-dev libxxhash-dev pkg-config gcc make; do
	if has "$build" "$p"; then ok "build needs $p"; else not_ok "build needs $p"; fi
done
bad=""
for p in libcriterion-dev fio hyperfine valgrind sqlite3 rsync git python3 libsqlite3-dev; do
	has "$build" "$p" && bad="$bad $p"
done
if [ -z "$bad" ]; then ok "build and run need no test or benchmark tool"; else not_ok "build and run need no test or benchmark tool" "$bad"; fi
miss=""
for p in $build libcriterion-dev libattr1-dev python3 rsync git sqlite3; do
	has "$check_l" "$p" || miss="$miss $p"
done
if [ -z "$miss" ]; then ok "check adds its tools to the build list"; else not_ok "check adds its tools to the build list" "missing:$miss"; fi
if has "$bench" fio && ! has "$check_l" fio && ! has "$build" fio; then
	ok "fio (and its ceph, gluster, pmem libraries) only for bench"
else
	not_ok "fio only for bench" "check: $check_l; bench: $bench"
fi
if ! has "$check_l $bench" valgrind && ! has "$check_l $bench" hyperfine; then
	ok "nothing installs valgrind or hyperfine (nothing uses them)"
else
	not_ok "nothing installs valgrind or hyperfine"
fi

# ---- apt calls ----------------------------------------------------------------
installed_all() { # whether every package of the list is installed
	local p
	for p in $1; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}
for t in deps check-deps; do
	list=$build
	[ "$t" = check-deps ] && list=$check_l
	if installed_all "$list"; then
		: >"$T/calls"
		mk "$t"
		if [ "$RC" -eq 0 ] && [ ! -s "$T/calls" ]; then
			ok "make $t: everything installed, no apt call"
		else
			not_ok "make $t: everything installed, no apt call" "exit $RC; calls: $(cat "$T/calls")"
		fi
	else
		skip "make $t with everything installed" "some of its packages are not installed here"
	fi
done

if ! command -v dpkg-query >/dev/null; then
	skip "apt calls for missing packages" "no dpkg-query here"
	finish
	exit
fi
: >"$T/calls"
mk deps DEPS_PKGS="make txdir-test-no-such-package"
want=$'apt-get update\napt-get install -y --no-install-recommends txdir-test-no-such-package'
if [ "$(id -u)" = 0 ]; then
	if [ "$RC" -eq 0 ] && [ "$(cat "$T/calls")" = "$want" ]; then
		ok "a missing package (as root): apt-get update, then install --no-install-recommends of it alone"
	else
		not_ok "a missing package (as root): apt-get update, then install of it alone" "exit $RC; calls: $(cat "$T/calls")"
	fi
fi
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
	setpriv --reuid=nobody --regid=nogroup --clear-groups test -r "$ROOT/Makefile"; then
	: >"$T/calls"
	OUT=$(PATH="$FAKE:$PATH" timeout -k 5 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env HOME=/ make -C "$ROOT" -s --no-print-directory deps \
		DEPS_PKGS="make txdir-test-no-such-package" 2>&1)
	RC=$?
	if [ "$RC" -eq 0 ] && [ "$(cat "$T/calls")" = $'sudo\n'"${want%%$'\n'*}"$'\nsudo\n'"${want#*$'\n'}" ]; then
		ok "a missing package (not root): the same through sudo"
	else
		not_ok "a missing package (not root): the same through sudo" "exit $RC; $OUT; calls: $(cat "$T/calls")"
	fi
else
	skip "make deps as a non-root user (sudo)" "needs root, setpriv and a tree nobody can read"
fi

finish

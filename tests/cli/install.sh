#!/usr/bin/env bash
# tests/cli/install.sh — `make install` / `make uninstall` into a DESTDIR
# (PREFIX=/usr, as a package would), and what a packager and a user of the
# library rely on:
#   - every product lands where it should: binaries, libtxdir.so.VERSION with
#     its soname link libtxdir.so.SOVERSION (Makefile) and linker name libtxdir.so, libtxdir.a,
#     txdir.h, libtxdir.pc, the man pages, the bash completion and
#     txdirfs@.service when their sources exist;
#   - the shared library exports exactly the txd_* calls txdir.h declares,
#     versioned LIBTXDIR_SOVERSION (or LIBTXDIR_SOVERSION.N, calls added since), nothing internal (not the fault-injection table
#     txd_os_*): a program that names an internal symbol does not link;
#   - its soname is libtxdir.so.SOVERSION and a program linked with
#     `pkg-config --cflags --libs libtxdir` records it (NEEDED) and runs
#     against the installed copy (LD_LIBRARY_PATH);
#   - the installed txdirfs works as fstab runs it: mount.fuse3 STORE MNT
#     -t fuse.txdirfs finds it on PATH and returns once mounted (root only);
#   - uninstall leaves no file or link behind.
# The build is the one under test (TXDIR_BUILD), complete (make check
# builds before it runs the suites): make only installs it.
source "$(dirname "$0")/lib.bash"

BUILD_DIR=${TXDIR_BUILD:-$ROOT/build}
case $BUILD_DIR in "$ROOT"/*) BUILD_DIR=${BUILD_DIR#"$ROOT"/} ;; esac
D=$T/dest
PREFIX=/usr
# the soname's number, as the Makefile says (a release that breaks the ABI bumps it)
SOV=$(sed -n 's/^SOVERSION := *//p' "$ROOT/Makefile")
P=$D$PREFIX
export LC_ALL=C

mk() { # make ARGS... in the repo, output in $OUT, status in $RC
	OUT=$(timeout -k 5 120 make -C "$ROOT" -s --no-print-directory INSTALL_AS_BUILT=1 BUILD="$BUILD_DIR" \
		PREFIX="$PREFIX" DESTDIR="$D" "$@" 2>&1)
	RC=$?
}

mk install
expect "make install DESTDIR=… PREFIX=/usr" 0

# ---- the layout ----------------------------------------------------------------
for f in bin/txdirfs bin/mountctl lib/libtxdir.a include/txdir.h lib/pkgconfig/libtxdir.pc \
	share/man/man1/mountctl.1 share/man/man7/txdir.7 share/man/man8/txdirfs.8; do
	if [ -f "$P/$f" ]; then ok "installed $f"; else not_ok "installed $f"; fi
done
real=$(cd "$P/lib" && ls libtxdir.so.*.*.* 2>/dev/null)
if [[ $real =~ ^libtxdir\.so\.$SOV\.[0-9]+\.[0-9]+$ ]] && [ -f "$P/lib/$real" ] && [ ! -L "$P/lib/$real" ]; then
	ok "the library file is libtxdir.so.$SOV.MINOR.PATCH ($real)"
else
	not_ok "the library file is libtxdir.so.$SOV.MINOR.PATCH" "$(ls -l "$P/lib")"
fi
if [ "$(readlink "$P/lib/libtxdir.so.$SOV")" = "$real" ] && [ "$(readlink "$P/lib/libtxdir.so")" = "libtxdir.so.$SOV" ]; then
	ok "links: libtxdir.so -> libtxdir.so.$SOV -> $real (relative)"
else
	not_ok "links: libtxdir.so -> libtxdir.so.$SOV -> $real" "$(ls -l "$P/lib")"
fi
if [ -f "$ROOT/mountctl/completion/mountctl.bash" ]; then
	check "installed the bash completion (share/bash-completion/completions/mountctl)" \
		test -f "$P/share/bash-completion/completions/mountctl"
else
	skip "the bash completion is installed" "mountctl/completion/mountctl.bash does not exist yet"
fi
if [ -f "$ROOT/mountctl/systemd/txdirfs@.service" ]; then
	u="$P/lib/systemd/system/txdirfs@.service"
	if [ -f "$u" ] && grep -q "^ExecStart=$PREFIX/bin/txdirfs " "$u"; then
		ok "installed txdirfs@.service, running $PREFIX/bin/txdirfs"
	else
		not_ok "installed txdirfs@.service, running $PREFIX/bin/txdirfs" "$(grep ExecStart "$u" 2>&1)"
	fi
else
	not_ok "mountctl/systemd/txdirfs@.service exists"
fi
if grep -rqF "$D" "$P/lib/pkgconfig" "$P/lib/systemd" 2>/dev/null; then
	not_ok "no installed file names the DESTDIR"
else
	ok "no installed file names the DESTDIR"
fi

# ---- exports and soname -----------------------------------------------------------
so=$P/lib/${real:-libtxdir.so}
exported=$(nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort)
declared=$(grep -oE '\btxd_[a-z0-9_]+\(' "$ROOT/engine/txdir.h" | tr -d '(' | sort -u)
if [ -n "$exported" ] && ! grep -qv '^txd_' <<<"$exported"; then
	ok "the .so exports only txd_* names ($(wc -l <<<"$exported") of them)"
else
	not_ok "the .so exports only txd_* names" "$(grep -v '^txd_' <<<"$exported" | head -n 10 | tr '\n' ' ')"
fi
if [ "$exported" = "$declared" ]; then
	ok "exported names are exactly the calls txdir.h declares"
else
	not_ok "exported names are exactly the calls txdir.h declares" \
		"$(diff <(echo "$declared") <(echo "$exported") | grep '^[<>]' | head -n 10 | tr '\n' ' ')"
fi
if ! grep -q '^txd_os' <<<"$exported"; then
	ok "the fault-injection table (txd_os_*) is not exported"
else
	not_ok "the fault-injection table (txd_os_*) is not exported"
fi
unversioned=$(nm -D --defined-only "$so" | awk -v sov="$SOV" '$2 != "A" && $3 !~ "@@LIBTXDIR_" sov "(\\.[0-9]+)?$" { print $3 }')
if [ -z "$unversioned" ]; then
	ok "every export carries a version LIBTXDIR_$SOV or LIBTXDIR_$SOV.N"
else
	not_ok "every export carries a version LIBTXDIR_$SOV or LIBTXDIR_$SOV.N" "$unversioned"
fi
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" = "libtxdir.so.$SOV" ]; then ok "soname libtxdir.so.$SOV"; else not_ok "soname libtxdir.so.$SOV" "soname '$soname'"; fi

# ---- a program built against the installed library ---------------------------------
pc() { PKG_CONFIG_PATH="$P/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D" timeout 10 pkg-config "$@"; }
flags=$(pc --cflags --libs libtxdir 2>&1)
if [ $? -eq 0 ] && grep -qF -- "-I$P/include" <<<"$flags" && grep -qF -- "-L$P/lib" <<<"$flags" &&
	grep -qw -- -ltxdir <<<"$flags"; then
	ok "pkg-config --cflags --libs libtxdir: $flags"
else
	not_ok "pkg-config --cflags --libs libtxdir" "$flags"
fi
if [ "$(pc --modversion libtxdir 2>&1)" = "${real#libtxdir.so.}" ]; then
	ok "pkg-config --modversion is the library's version"
else
	not_ok "pkg-config --modversion is the library's version" "$(pc --modversion libtxdir 2>&1)"
fi
cat >"$T/prog.c" <<'EOF'
/* A user of libtxdir: make a store, open it, read its status, close it. */
#include <stdio.h>
#include <txdir.h>

int main(int argc, char **argv)
{
	struct txd_fs *fs;
	struct txd_status st;
	pid_t holder = 0;
	int rc;

	if (argc != 2)
		return 2;
	rc = txd_store_init(argv[1]);
	if (rc == 0)
		rc = txd_fs_open(argv[1], NULL, &fs, &holder);
	if (rc) {
		fprintf(stderr, "prog: %s\n", txd_strerror(rc));
		return 1;
	}
	txd_get_status(fs, &st);
	printf("opened, durability %s\n", txd_durability_name(st.durability));
	txd_fs_close(fs);
	return 0;
}
EOF
# shellcheck disable=SC2086 # pkg-config's words
OUT=$(cd "$T" && timeout 60 cc -o prog prog.c $flags 2>&1)
RC=$?
expect "cc prog.c \$(pkg-config --cflags --libs libtxdir) links" 0
needed=$(readelf -d "$T/prog" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(libtxdir[^]]*\)\].*/\1/p')
if [ "$needed" = "libtxdir.so.$SOV" ]; then
	ok "the program records NEEDED libtxdir.so.$SOV (dynamic, by soname)"
else
	not_ok "the program records NEEDED libtxdir.so.$SOV" "NEEDED '$needed'"
fi
OUT=$(LD_LIBRARY_PATH="$P/lib" timeout 30 "$T/prog" "$T/libstore" 2>&1)
RC=$?
expect "the program runs against the installed library" 0 "^opened, durability fsync$"
lib_used=$(LD_LIBRARY_PATH="$P/lib" timeout 10 ldd "$T/prog" 2>/dev/null | awk -v lib="libtxdir.so.$SOV" '$1 == lib { print $3 }')
if [ "$lib_used" = "$P/lib/libtxdir.so.$SOV" ]; then
	ok "ld.so loads the installed libtxdir.so.$SOV"
else
	not_ok "ld.so loads the installed libtxdir.so.$SOV" "ldd says '$lib_used'"
fi
# an internal engine symbol (the OS table) and the fault-injection setter
cat >"$T/internal.c" <<'EOF'
struct txd_os_ops;
void txd_os_set(const struct txd_os_ops *ops);
int main(void) { txd_os_set(0); return 0; }
EOF
# shellcheck disable=SC2086
OUT=$(cd "$T" && timeout 60 cc -o internal internal.c $flags 2>&1)
RC=$?
if [ "$RC" -ne 0 ] && grep -q 'undefined reference to .txd_os_set' <<<"$OUT"; then
	ok "a program naming an internal call (txd_os_set) does not link against the .so"
else
	not_ok "a program naming an internal call (txd_os_set) does not link against the .so" "exit $RC: $OUT"
fi

# ---- fstab's way in: mount.fuse3 finds the installed txdirfs on PATH -----------------
MF=$(command -v mount.fuse3 || ls /sbin/mount.fuse3 /usr/sbin/mount.fuse3 2>/dev/null | head -n 1)
if [ "$(id -u)" != 0 ] || [ -z "$MF" ] || ! can_mount; then
	skip "mount.fuse3 runs the installed txdirfs (the fstab path)" "needs root, mount.fuse3 and /dev/fuse"
else
	S=$T/fstore
	M=$T/fmnt
	mkdir -p "$M"
	"$P/bin/mountctl" init "$S" >/dev/null 2>&1
	MOUNTS+=("$M")
	# as mount(8) runs it for "S M fuse.txdirfs defaults,nofail,x-systemd.automount 0 0"
	# (x-* words reach txdirfs when mount.fuse3 is run by hand: it ignores them)
	OUT=$(PATH="$P/bin:/usr/sbin:/usr/bin:/sbin:/bin" timeout -k 5 30 "$MF" "$S" "$M" \
		-t fuse.txdirfs -o defaults,rw,nofail,x-systemd.automount,x-systemd.mount-timeout=30 2>&1)
	RC=$?
	expect "mount.fuse3 STORE MNT -t fuse.txdirfs -o defaults,nofail,x-systemd.* runs \$PATH's txdirfs and returns once mounted" 0
	pid=""
	# mount.fuse3 runs it through sh, as "txdirfs STORE MNT -o ..."
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/exe" 2>/dev/null)" = "$P/bin/txdirfs" ] &&
			tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF " $S $M "; then
			pid=${p#/proc/}
		fi
	done
	[ -n "$pid" ] && SERVERS+=("$pid")
	if [ -n "$pid" ] && timeout 10 stat "$M/.txdir" >/dev/null 2>&1 &&
		grep -qs " $M fuse.txdirfs " /proc/self/mounts; then
		ok "the mount answers, type fuse.txdirfs, served by $P/bin/txdirfs"
	else
		not_ok "the mount answers, served by the installed txdirfs" "pid '$pid'; $(grep -s " $M " /proc/self/mounts)"
	fi
	timeout 10 sh -c "echo fstab > '$M/f'"
	timeout 10 fusermount3 -u "$M"
	for ((i = 0; i < 1000; i++)); do
		[ -n "$pid" ] && [ -d "/proc/$pid" ] || break
		sleep 0.01
	done
	if [ -n "$pid" ] && [ ! -d "/proc/$pid" ]; then
		ok "txdirfs exits once unmounted"
	else
		not_ok "txdirfs exits once unmounted"
	fi
fi

# ---- uninstall ------------------------------------------------------------------
mk uninstall
expect "make uninstall" 0
left=$(cd "$D" && find . \( -type f -o -type l \) | sort)
if [ -z "$left" ]; then
	ok "uninstall leaves no file or link"
else
	not_ok "uninstall leaves no file or link" "$(tr '\n' ' ' <<<"$left")"
fi

finish

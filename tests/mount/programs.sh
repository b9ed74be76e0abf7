#!/usr/bin/env bash
# tests/mount/programs.sh — unmodified programs on a txdirfs mount, each run
# the same way in a native temp dir and the results compared:
#   git      init/add/commit/mv/rm/gc: clean status, fsck, the same commit ids
#   tar      extract /usr/include/linux (+ links): diff -r, same metadata
#   make     -j2 of a generated C project: same output; then up to date,
#            and an edit rebuilds (mtimes make sense)
#   sqlite3  WAL mode (shared mmap of -shm), thousands of rows in
#            transactions, a concurrent reader: integrity ok, same dump
#   editor   vim save (and a scripted tmp+fsync+rename save) over a file that
#            a reader holds open: new content, reader keeps the old
#   cp -a    a tree with symlinks, hard links, modes, ns mtimes, xattrs
#   rsync    -aHX of the same tree, then a second rsync finds nothing to do
#
# Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD (as tests/mount/run.sh). The last
# line is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"

CASE_TIMEOUT=${CASE_TIMEOUT:-120}

# ---- helpers, run inside each case's bash -------------------------------

# Everything about a tree (below its root) that cp -a / rsync -aHX / tar -xp
# keep, one line per entry, sorted; then link counts and hard-link groups by
# name; then user.* xattrs. A directory's size is the file system's own
# (ext4 counts blocks), so it is left out.
listing() { # dir
	(
		cd "$1" || exit 1
		find . -mindepth 1 \( -type d -printf '%P|d|%m|-|%U|%G|%T@|\n' \) -o \
			-printf '%P|%y|%m|%s|%U|%G|%T@|%l\n' | LC_ALL=C sort
		find . ! -type d -printf '%n|%P\n' | LC_ALL=C sort -t'|' -k2
		find . ! -type d -links +1 -printf '%i %P\n' | LC_ALL=C sort -k2 |
			awk '{ g[$1] = g[$1] " " $2 } END { for (i in g) print "link:" g[i] }' | LC_ALL=C sort
		find . -print0 | LC_ALL=C sort -z |
			xargs -0 getfattr -h -d -m '^user\.' --absolute-names 2>/dev/null
	)
}

same_listing() { # a b what
	if ! diff <(listing "$1") <(listing "$2") >"$W/listing.diff"; then
		echo "# $3: metadata differs (< native/source, > mount):"
		head -n 20 "$W/listing.diff" | sed 's/^/#   /'
		return 1
	fi
}

same_tree() { # a b what
	# (diff reports every pair of fifos; their metadata is in the listing)
	diff -r --no-dereference "$1" "$2" 2>&1 | grep -v ' is a fifo while file .* is a fifo$' >"$W/tree.diff"
	if [ -s "$W/tree.diff" ]; then
		echo "# $3: diff -r differs:"
		head -n 20 "$W/tree.diff" | sed 's/^/#   /'
		return 1
	fi
	same_listing "$@"
}

# A source tree with what cp -a and rsync must carry: modes, ns mtimes,
# symlinks (relative, absolute, dangling, to a dir), hard links, an empty
# and a 1 MiB file, a fifo, user.* xattrs.
make_src() { # dir
	local s=$1 i
	mkdir -p "$s/d1/d2/d3" "$s/empty-dir"
	for i in $(seq 1 40); do
		printf 'file %d\n%0*d\n' "$i" $((i * 37)) 0 >"$s/d1/f$i"
	done
	head -c 1048576 /dev/urandom >"$s/d1/d2/big"
	: >"$s/d1/empty"
	printf 'secret\n' >"$s/d1/private" && chmod 600 "$s/d1/private"
	printf '#!/bin/sh\necho hi\n' >"$s/d1/d2/run.sh" && chmod 755 "$s/d1/d2/run.sh"
	printf 'linked\n' >"$s/d1/hl-a"
	ln "$s/d1/hl-a" "$s/d1/d2/hl-b"
	ln "$s/d1/hl-a" "$s/d1/d2/d3/hl-c"
	ln -s f1 "$s/d1/rel-link"
	ln -s ../d1/d2 "$s/d1/d2/d3/dir-link"
	ln -s /etc/hostname "$s/abs-link"
	ln -s does-not-exist "$s/dangling"
	mkfifo "$s/d1/fifo"
	setfattr -n user.color -v blue "$s/d1/f1"
	setfattr -n user.empty -v '' "$s/d1/f2"
	setfattr -n user.dir -v yes "$s/d1/d2"
	find "$s" -mindepth 1 -exec touch -h -d '2021-03-04 05:06:07.123456789' {} +
	touch -d '2020-01-02 03:04:05.5' "$s/d1/f3"
	for d in "$s/d1/d2/d3" "$s/d1/d2" "$s/d1" "$s/empty-dir" "$s"; do
		touch -d '2019-05-06 07:08:09.987654321' "$d" # parents last
	done
}

# ---- cases: each runs as `bash -c` with M (mount dir), N (native dir), W
# (scratch outside both) exported; exits non-zero with "# " lines on failure.

t_git() {
	export HOME=$W GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
		GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org \
		GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'
	local d i st
	for d in "$N" "$M"; do
		mkdir "$d/repo" && cd "$d/repo" || return 1
		git init -q -b main . || return 1
		mkdir -p src/a/b
		for i in $(seq 1 60); do printf 'line %d\n' $(seq 1 "$i") >"src/a/f$i.txt"; done
		printf '#!/bin/sh\n' >src/run && chmod +x src/run
		ln -s a/f1.txt src/link
		git add -A && git commit -q -m one || return 1
		for i in $(seq 1 60 3); do printf 'changed %d\n' "$i" >>"src/a/f$i.txt"; done
		git rm -q src/a/f2.txt && git mv src/a/f5.txt src/a/b/moved.txt || return 1
		git add -A && git commit -q -m two || return 1
		st=$(git status --porcelain)
		[ -z "$st" ] || { echo "# git status not clean in $d:"; echo "$st" | head | sed 's/^/#   /'; return 1; }
		git fsck --full --strict --no-progress || { echo "# git fsck failed in $d"; return 1; }
		git gc -q && git fsck --full --strict --no-progress || { echo "# git gc/fsck failed in $d"; return 1; }
		git update-index --refresh -q >/dev/null
		git diff-files --quiet || { echo "# git diff-files after gc not clean in $d"; return 1; }
		[ "$(git rev-list --count HEAD)" = 2 ] || { echo "# history length in $d"; return 1; }
		git rev-parse HEAD >"$W/head.$(basename "$d")"
	done
	cmp -s "$W/head.native" "$W/head.mnt" ||
		{ echo "# HEAD differs: native $(cat "$W/head.native") mount $(cat "$W/head.mnt")"; return 1; }
}

t_tar() {
	local d
	mkdir "$W/tsrc" && cp -a /usr/include/linux "$W/tsrc/linux" && make_src "$W/tsrc/extra" || return 1
	tar -C "$W/tsrc" -cf "$W/t.tar" linux extra || return 1
	for d in "$N" "$M"; do
		mkdir "$d/tar" && tar -C "$d/tar" -xpf "$W/t.tar" || { echo "# tar x into $d failed"; return 1; }
	done
	same_tree "$N/tar" "$M/tar" "tar x" || return 1
	(cd "$M/tar" && tar -df "$W/t.tar") || { echo "# tar --compare against the mount failed"; return 1; }
}

t_make() {
	local d i
	mkdir "$W/proj" || return 1
	for i in $(seq 1 12); do
		printf '#include "lib.h"\nint f%d(int x) { return x * %d + %d; }\n' "$i" "$i" $((i * i)) >"$W/proj/f$i.c"
		printf 'int f%d(int x);\n' "$i" >>"$W/proj/lib.h"
	done
	{
		printf '#include <stdio.h>\n#include "lib.h"\nint main(void) {\n\tlong s = 0;\n'
		for i in $(seq 1 12); do printf '\ts += f%d(%d);\n' "$i" "$i"; done
		printf '\tprintf("sum %%ld\\n", s);\n\treturn 0;\n}\n'
	} >"$W/proj/main.c"
	printf 'SRC := $(wildcard *.c)\nOBJ := $(SRC:.c=.o)\nprog: $(OBJ)\n\t$(CC) -o $@ $(OBJ)\n%%.o: %%.c\n\t$(CC) -O1 -MMD -MP -c $< -o $@\n-include $(OBJ:.o=.d)\n' \
		>"$W/proj/Makefile"
	for d in "$N" "$M"; do
		cp -r "$W/proj" "$d/proj" && make -s -j2 -C "$d/proj" >"$W/make.log" 2>&1 ||
			{ echo "# make -j2 in $d failed:"; sed 's/^/#   /' "$W/make.log" | head; return 1; }
		"$d/proj/prog" >"$W/out.$(basename "$d")" || { echo "# $d/proj/prog failed"; return 1; }
	done
	cmp -s "$W/out.native" "$W/out.mnt" || { echo "# outputs differ"; return 1; }
	make -q -C "$M/proj" || { echo "# make -q: not up to date right after a build (mtimes)"; return 1; }
	# An edit newer than its object rebuilds exactly that object and the link.
	printf 'int f7(int x) { return x + 1000; }\n' >"$M/proj/f7.c"
	touch -d "@$(($(stat -c %Y "$M/proj/prog") + 5))" "$M/proj/f7.c"
	make -q -C "$M/proj" && { echo "# make -q: edited f7.c not seen as newer"; return 1; }
	make -s -j2 -C "$M/proj" && "$M/proj/prog" >"$W/out2" || { echo "# rebuild failed"; return 1; }
	cmp -s "$W/out.mnt" "$W/out2" && { echo "# rebuilt program prints the old result"; return 1; }
	return 0
}

t_sqlite() {
	local d i n prev=0 reader_bad
	for d in "$N" "$M"; do
		[ "$(sqlite3 "$d/db" 'PRAGMA journal_mode=WAL;')" = wal ] ||
			{ echo "# journal_mode=WAL not accepted in $d"; return 1; }
		sqlite3 "$d/db" 'CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);' || return 1
		# The writer holds the database open across 20 transactions while
		# another process reads through the shared -shm mapping.
		{
			for i in $(seq 0 19); do
				printf 'BEGIN;\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<250)\n'
				printf "INSERT INTO t(k, v) SELECT 'k%d-' || x, zeroblob(100 + x %% 300) FROM c;\nCOMMIT;\n" "$i"
			done
			printf 'CREATE INDEX tk ON t(k);\nUPDATE t SET v = zeroblob(7) WHERE id %% 5 = 0;\nDELETE FROM t WHERE id %% 7 = 0;\n'
		} | sqlite3 "$d/db" &
		reader_bad=
		for i in $(seq 1 20); do
			# (SQLITE_BUSY while the writer checkpoints is fine: skip)
			n=$(sqlite3 "$d/db" 'SELECT count(*) FROM t;' 2>/dev/null) && [ -n "$n" ] || continue
			# 250 rows a transaction, 4286 after the final DELETE
			if [ "$n" -lt "$prev" ] && [ "$n" != 4286 ]; then
				reader_bad="count went back $prev -> $n"
			elif [ $((n % 250)) -ne 0 ] && [ "$n" != 4286 ]; then
				reader_bad="saw a partial transaction: $n rows"
			fi
			prev=$n
		done
		wait $! || { echo "# sqlite3 writer failed in $d"; return 1; }
		[ -z "$reader_bad" ] || { echo "# concurrent reader in $d: $reader_bad"; return 1; }
		[ "$(sqlite3 "$d/db" 'PRAGMA integrity_check;')" = ok ] ||
			{ echo "# integrity_check in $d: $(sqlite3 "$d/db" 'PRAGMA integrity_check;' 2>&1 | head -n 3)"; return 1; }
		sqlite3 "$d/db" 'SELECT count(*), sum(length(v)), max(id) FROM t;' >"$W/sum.$(basename "$d")"
		sqlite3 "$d/db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
		sqlite3 "$d/db" .dump | md5sum >"$W/dump.$(basename "$d")"
		prev=0
	done
	cmp -s "$W/sum.native" "$W/sum.mnt" ||
		{ echo "# sums differ: native $(cat "$W/sum.native") mount $(cat "$W/sum.mnt")"; return 1; }
	cmp -s "$W/dump.native" "$W/dump.mnt" || { echo "# .dump differs"; return 1; }
}

t_editor() {
	local d f
	for d in "$N" "$M"; do
		mkdir "$d/ed" && f=$d/ed/notes.txt
		seq -f 'line %g' 1 2000 >"$f" || return 1
		exec 9<"$f" # a reader that holds the old version
		timeout 30 vim -u NONE -N -n -es -c 'set fsync' -c '%s/^line/LINE/' -c 'wq' "$f" </dev/null ||
			{ echo "# vim save in $d failed"; return 1; }
		[ "$(head -n 1 "$f")" = "LINE 1" ] && [ "$(wc -l <"$f")" = 2000 ] ||
			{ echo "# after vim save in $d: $(head -c 40 "$f")"; return 1; }
		# vim may rewrite in place; then on ext4 the reader sees the new
		# bytes, on txdir (SPEC §3 snapshots) it keeps the version it opened.
		if [ "$d" = "$M" ] && [ "$(head -n 1 <&9)" != "line 1" ]; then
			echo "# a reader opened before the vim save lost its version (SPEC §3)"
			return 1
		fi
		exec 9<&-
		# The same by hand: write a temp file, fsync it, rename it over.
		exec 9<"$f"
		seq -f 'saved %g' 1 3000 >"$d/ed/.notes.tmp" && sync "$d/ed/.notes.tmp" &&
			mv -f "$d/ed/.notes.tmp" "$f" && sync "$d/ed" || { echo "# scripted save in $d failed"; return 1; }
		[ "$(tail -n 1 "$f")" = "saved 3000" ] || { echo "# after scripted save in $d: $(tail -n 1 "$f")"; return 1; }
		[ "$(head -n 1 <&9)" = "LINE 1" ] || { echo "# reader of the vim version in $d lost it"; return 1; }
		exec 9<&-
		ls -A "$d/ed" >"$W/ls.$(basename "$d")"
		cp "$f" "$W/final.$(basename "$d")"
	done
	cmp -s "$W/ls.native" "$W/ls.mnt" ||
		{ echo "# leftover files differ: native [$(cat "$W/ls.native")] mount [$(cat "$W/ls.mnt")]"; return 1; }
	cmp -s "$W/final.native" "$W/final.mnt" || { echo "# final contents differ"; return 1; }
}

t_cp() {
	make_src "$W/src" || return 1
	cp -a "$W/src" "$N/cp" || { echo "# cp -a native failed"; return 1; }
	cp -a "$W/src" "$M/cp" || { echo "# cp -a into the mount failed"; return 1; }
	same_tree "$N/cp" "$M/cp" "cp -a" || return 1
	[ "$(stat -c %i "$M/cp/d1/hl-a")" = "$(stat -c %i "$M/cp/d1/d2/d3/hl-c")" ] ||
		{ echo "# hard links do not share an inode"; return 1; }
}

t_rsync() {
	local out
	make_src "$W/src" || return 1
	rsync -aHX "$W/src/" "$N/rs/" || { echo "# rsync native failed"; return 1; }
	rsync -aHX "$W/src/" "$M/rs/" || { echo "# rsync into the mount failed"; return 1; }
	same_tree "$N/rs" "$M/rs" "rsync -aHX" || return 1
	out=$(rsync -aHXi "$W/src/" "$M/rs/") && [ -z "$out" ] ||
		{ echo "# a second rsync still finds work:"; echo "$out" | head | sed 's/^/#   /'; return 1; }
	out=$(rsync -aHXi --checksum "$W/src/" "$M/rs/") && [ -z "$out" ] ||
		{ echo "# rsync --checksum finds differences:"; echo "$out" | head | sed 's/^/#   /'; return 1; }
}

# ---- driver ----------------------------------------------------------------

export -f listing same_listing same_tree make_src

run_case() { # name function
	local name=$1 fn=$2 out rc
	export W=$TM_DIR/work.$name M=$TM_MNT/$name N=$TM_NATIVE/$name
	mkdir -p "$W" "$M" "$N" || { not_ok "$name: setup"; return; }
	export -f "$fn"
	# N and M end in "native"/"mnt" for the per-side file names above.
	N=$N/native M=$M/mnt
	mkdir -p "$N" "$M"
	out=$(cd "$W" && timeout -k 5 "$CASE_TIMEOUT" bash -c "$fn" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		ok "$name"
	else
		not_ok "$name$([ "$rc" -eq 124 ] && echo ' (timeout)')"
		printf '%s\n' "$out" | tail -n 25 | sed '/^#/!s/^/#   /'
	fi
}

MOUNT_OPTS=allow_other,default_permissions
if tm_mount "$MOUNT_OPTS"; then
	run_case git t_git
	run_case tar t_tar
	run_case make t_make
	run_case sqlite-wal t_sqlite
	run_case editor-save t_editor
	run_case cp-a t_cp
	run_case rsync t_rsync
	if tm_umount; then ok "programs: clean unmount and server exit"; else not_ok "programs: unmount/server exit"; fi
else
	not_ok "programs: mount"
	tm_umount >/dev/null
fi

tm_summary

#!/usr/bin/env bash
# tests/mount/txncrash.sh — transactions under readers, SIGKILL of the
# program in a run, and SIGKILL of txdirfs around commits (SPEC §1, §4).
#
#   concurrent runs   75 `mountctl run -- true`, three at a time: all exit 0.
#   atomic deploy     a tree of 2,000 files (40 dirs x 50, each file "v1
#                     PATH") is replaced by `mountctl run MNT -- rsync -a
#                     --delete V2/ MNT/app/` (every file rewritten, 200
#                     removed, 250 added in a new dir and the old ones) while
#                     two readers loop: `mountctl run --read-only -- sh -c
#                     'find | sort | xargs cat | sha256sum'` and `txnwork
#                     snapreader` (read-only transactions through the file
#                     interface, XXH64 of paths and contents). Every hash is
#                     the v1 or the v2 one, never another; no reader goes
#                     back from v2 to v1; a read begun after the run returned
#                     is v2; the tree then equals V2. Two read-only
#                     transactions begun before the deploy (txnwork snaphold
#                     and a `mountctl run --read-only` waiting on a barrier)
#                     read all-v1 after its commit. Then a deploy that
#                     removes a whole directory (rsync --delete of d00).
#   SIGKILL of rsync  a run whose CMD is a wrapper that records its pid and
#                     execs a slow rsync; once the transaction's view shows
#                     rsync's files, kill -9: mountctl exits 137 and the tree
#                     is exactly as before, no record left.
#   SIGKILL of        the same deploy, but txdirfs is killed once rsync has
#   txdirfs mid-run   written files in the view; remount: the tree is
#                     exactly as before.
#   SIGKILL around    rounds of one transaction (txnwork round) that
#   the commit        rewrites 200 files with version k; txdirfs is killed
#                     before the commit (after a random number of the
#                     files), while the commit write(2) is blocked in the
#                     server (a random 0-4 ms after it is seen blocked), or
#                     just after it returned; remount: every file is k-1 or
#                     every file is k, and k if the write had returned
#                     success. Rounds alternate durability fsync and full.
#   concurrent        10 processes (txnwork proc) each loop transactions
#   transactions      rewriting their own 5 files, a marker file and a shared
#                     counter (first committer wins; EBUSY is retried),
#                     logging each acknowledged commit outside the mount;
#                     SIGKILL of txdirfs at a random moment, remount,
#                     `txnwork check4`: all or nothing per transaction, the
#                     counter equals the number of transactions on disk,
#                     nothing acknowledged lost. Three rounds on one store.
#
# Barrier files and bounded polls synchronise; nothing sleeps to wait for
# something. Every mount is torn down by lib.sh's EXIT trap even on failure.
# TXNCRASH_SEED makes the random choices repeatable (the seed is printed).
#
# Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD (as tests/mount/run.sh). The last
# line is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

TW=$TXDIR_BUILD/tests/mount/txnwork
SEED=${TXNCRASH_SEED:-$((($$ * 7919 + $(date +%s)) % 32768))}
RANDOM=$SEED
ROUNDS3=${TXNCRASH_ROUNDS:-36}
NFILES3=200
NPROC4=10

lines_at_least() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }

# detach + start_server; says why on failure.
remount() { # label [opts]
	if ! detach; then
		not_ok "$1: the dead mount could not be detached"
		return 1
	fi
	if ! start_server "${2:-}"; then
		not_ok "$1: remount after SIGKILL (recovery) failed"
		tail -n 20 "$TM_LOG" | sed 's/^/#   /'
		return 1
	fi
}

stop_bg() { # pid...: TERM, bounded wait, KILL
	kill -TERM "$@" 2>/dev/null
	wait_for 100 all_dead "$@" || kill -KILL "$@" 2>/dev/null
	wait "$@" 2>/dev/null
	BG=() # one group runs at a time: all of it is stopped now
}

# ---- trees -----------------------------------------------------------------

# v1: d00..d39 x f00..f49 ("v1 dNN/fMM"), mtimes in 2020; v2: d00..d40 x
# f05..f54 ("v2 dNN/fMM (new)": every file rewritten with another size, so
# rsync's quick check never skips one; f00-f04 removed, f50-f54 and d40
# added); v3: v2 without d00.
make_trees() { # base
	local b=$1 d f dn fn
	mkdir -p "$b/v1" "$b/v2" || return 1
	for ((d = 0; d <= 40; d++)); do
		printf -v dn 'd%02d' "$d"
		if ((d < 40)); then
			mkdir "$b/v1/$dn"
			for ((f = 0; f < 50; f++)); do
				printf -v fn 'f%02d' "$f"
				echo "v1 $dn/$fn" >"$b/v1/$dn/$fn"
			done
		fi
		mkdir "$b/v2/$dn"
		for ((f = 5; f < 55; f++)); do
			printf -v fn 'f%02d' "$f"
			echo "v2 $dn/$fn (new)" >"$b/v2/$dn/$fn"
		done
	done
	find "$b/v1" -exec touch -h -d 2020-01-01T00:00:00 {} + &&
		cp -a "$b/v2" "$b/v3" && rm -r "$b/v3/d00"
}

READ_PIPE='find . -type f | sort | xargs cat | sha256sum | cut -d" " -f1'

shahash() { # dir: what the mountctl readers compute
	(cd "$1" && sh -c "$READ_PIPE")
}

# Checks one reader's output: every read that worked is $2 (old) or $3
# (new), no old after a new, and the last one (begun after the deploy
# returned) is new. Failed reads ("ERROR ...") are reported on their own.
check_reads() { # label file old new
	local label=$1 file=$2 old=$3 new=$4 bad nold nnew back last nerr
	nerr=$(grep -c '^ERROR' "$file")
	if [ "$nerr" -eq 0 ]; then
		ok "atomic deploy: every read of the $label worked ($(wc -l <"$file"))"
	else
		not_ok "atomic deploy: $nerr of $(wc -l <"$file") reads of the $label failed:" \
			"$(grep -m1 '^ERROR' "$file")"
	fi
	grep -v '^ERROR' "$file" >"$file.ok"
	bad=$(grep -cvxF -e "$old" -e "$new" "$file.ok")
	nold=$(grep -cxF -e "$old" "$file.ok")
	nnew=$(grep -cxF -e "$new" "$file.ok")
	back=$(awk -v o="$old" -v n="$new" '$0 == n { s = 1 } $0 == o && s { b++ } END { print b + 0 }' "$file.ok")
	last=$(tail -n 1 "$file.ok")
	if [ "$bad" -eq 0 ] && [ "$back" -eq 0 ] && [ "$last" = "$new" ] && [ "$nold" -gt 0 ]; then
		ok "atomic deploy: the $label saw only all-old ($nold) or all-new ($nnew), never back"
	else
		not_ok "atomic deploy: the $label: $nold old, $nnew new, $bad other, $back old after new," \
			"last $([ "$last" = "$new" ] && echo new || echo "not new: $last")"
		grep -vxF -e "$old" -e "$new" "$file.ok" | sort | uniq -c | head -n 5 | sed 's/^/#   /'
	fi
}

# A `mountctl run --read-only` that reads the tree, creates $B/rohold.ready,
# waits for $B/go and reads it again (both hashes into $B/rohold.out). Up to
# three attempts when mountctl itself fails (exit 125) before CMD ran.
start_ro_holder() { # B
	local B=$1 try
	for ((try = 1; try <= 3; try++)); do
		rm -f "$B/rohold.ready"
		timeout -k 5 90 "$MOUNTCTL" run "$TM_MNT" --read-only -- sh -c "cd '$TM_MNT/app' &&
			a=\$($READ_PIPE) && touch '$B/rohold.ready' &&
			until [ -e '$B/go' ]; do sleep 0.01; done && b=\$($READ_PIPE) &&
			echo \"\$a \$b\" > '$B/rohold.out'" >"$B/rohold.err" 2>&1 &
		ROHOLD=$!
		BG+=("$ROHOLD")
		wait_for 300 test -e "$B/rohold.ready" -o ! -d "/proc/$ROHOLD" || true
		[ -e "$B/rohold.ready" ] && return 0
		wait "$ROHOLD"
		not_ok "atomic deploy: the held read-only run (attempt $try) failed: exit $?: $(cat "$B/rohold.err")"
	done
	ROHOLD=
	return 1
}

# Three loops of 25 `mountctl run -- true` each (one --read-only),
# concurrently: every run must start its CMD and exit 0.
concurrent_runs() { # B
	local B=$1 a b fails
	: >"$B/cr.out"
	for a in "--read-only" "" ""; do
		(
			for ((i = 0; i < 25; i++)); do
				out=$(timeout -k 5 30 "$MOUNTCTL" run "$TM_MNT" $a -- true 2>&1) ||
					echo "exit $?: $out" >>"$B/cr.out"
			done
		) &
		b+=" $!"
	done
	wait $b
	fails=$(wc -l <"$B/cr.out")
	if [ "$fails" -eq 0 ]; then
		ok "concurrent runs: 75 mountctl runs, three at a time, all exit 0"
	else
		not_ok "concurrent runs: $fails of 75 mountctl runs (three at a time) failed: $(head -n 1 "$B/cr.out")"
	fi
}

# ---- 1. atomic deploy with snapshot readers -------------------------------

scenario_deploy() {
	local W B h1 h2 x1 x2 x3 rc r1 r2 c1 c2 n1 n2 out try hold t0=$SECONDS
	mount_killable "" || { not_ok "deploy: mount"; tm_umount >/dev/null; return; }
	W=$TM_DIR/trees
	B=$TM_DIR/barriers
	mkdir -p "$B"
	make_trees "$W" || { not_ok "deploy: native trees"; tm_umount >/dev/null; return; }
	h1=$(shahash "$W/v1")
	h2=$(shahash "$W/v2")
	x1=$("$TW" hash "$W/v1")
	x2=$("$TW" hash "$W/v2")
	x3=$("$TW" hash "$W/v3")
	out=$(timeout -k 5 60 "$MOUNTCTL" run "$TM_MNT" -- cp -a "$W/v1" "$TM_MNT/app" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] || [ "$("$TW" hash "$TM_MNT/app")" != "$x1" ]; then
		not_ok "deploy: initial v1 tree (run -- cp -a: exit $rc $out)"
		tm_umount >/dev/null
		return
	fi

	concurrent_runs "$B"

	# Two snapshots held across the deploy's commit (deterministic), then two
	# readers looping through it.
	timeout -k 5 90 "$TW" snaphold "$TM_MNT" app "$B/hold.ready" "$B/go" >"$B/hold.out" 2>"$B/hold.err" &
	hold=$!
	BG+=("$hold")
	ROHOLD=
	start_ro_holder "$B"
	: >"$B/r1" && : >"$B/r2"
	(
		for ((i = 0; i < 400; i++)); do
			h=$(timeout -k 5 30 "$MOUNTCTL" run "$TM_MNT" --read-only -- \
				sh -c "cd '$TM_MNT/app' && $READ_PIPE" 2>&1)
			rc=$?
			if [ "$rc" -eq 0 ]; then
				echo "$h"
			else
				echo "ERROR exit $rc: $h" | tr '\n' ' ' && echo
			fi >>"$B/r1"
			[ -e "$B/stop" ] && break
		done
	) &
	r1=$!
	timeout -k 5 90 "$TW" snapreader "$TM_MNT" app "$B/stop" "$B/r2" 2>>"$B/r2.err" &
	r2=$!
	BG+=("$r1" "$r2")
	if ! wait_for 200 lines_at_least "$B/r1" 1 || ! wait_for 200 lines_at_least "$B/r2" 1 ||
		! wait_for 200 test -e "$B/hold.ready"; then
		not_ok "deploy: readers did not start: $(head -c 300 "$B/r1" "$B/r2.err" "$B/hold.err")"
		touch "$B/stop" "$B/go"
		stop_bg "$r1" "$r2" "$hold" $ROHOLD
		tm_umount >/dev/null
		return
	fi
	c1=$(wc -l <"$B/r1")
	c2=$(wc -l <"$B/r2")
	for ((try = 1; try <= 3; try++)); do
		out=$(timeout -k 5 60 "$MOUNTCTL" run "$TM_MNT" -- rsync -a --delete "$W/v2/" "$TM_MNT/app/" 2>&1)
		rc=$?
		# Exit 125 is mountctl's own failure: nothing ran. Say so, and try
		# again so that the readers still meet a deploy.
		[ "$rc" -eq 125 ] || break
		not_ok "atomic deploy: run -- rsync (attempt $try) failed before running CMD: $out"
	done
	n1=$(wc -l <"$B/r1")
	n2=$(wc -l <"$B/r2")
	touch "$B/go"
	# Each reader finishes one more read begun after the deploy returned.
	wait_for 300 lines_at_least "$B/r1" $((n1 + 2))
	wait_for 300 lines_at_least "$B/r2" $((n2 + 2))
	touch "$B/stop"
	wait_for 300 all_dead "$r1" "$r2" "$hold" $ROHOLD || echo "# readers did not stop by themselves"
	stop_bg "$r1" "$r2" "$hold" $ROHOLD
	if [ "$rc" -eq 0 ]; then
		ok "atomic deploy: run -- rsync -a --delete of 2,000 files under readers: exit 0"
	else
		not_ok "atomic deploy: run -- rsync -a --delete: exit $rc: $out"
	fi
	if [ "$(cat "$B/hold.out")" = "$x1 $x1" ]; then
		ok "atomic deploy: a read-only transaction begun before the deploy reads all-old after its commit"
	else
		not_ok "atomic deploy: a read-only transaction held across the commit read" \
			"'$(cat "$B/hold.out" "$B/hold.err")', want v1 twice ($x1)"
	fi
	if [ -n "$ROHOLD" ]; then
		if [ "$(cat "$B/rohold.out" 2>/dev/null)" = "$h1 $h1" ]; then
			ok "atomic deploy: a mountctl run --read-only begun before the deploy reads all-old after its commit"
		else
			not_ok "atomic deploy: a mountctl run --read-only held across the commit read" \
				"'$(cat "$B/rohold.out" "$B/rohold.err" 2>/dev/null)', want v1 twice"
		fi
	fi
	[ -s "$B/r2.err" ] && sed 's/^/#   snapreader: /' "$B/r2.err" | head -n 5
	echo "# reads that ended while the deploy ran: $((n1 - c1)) by mountctl run --read-only," \
		"$((n2 - c2)) by snapreader"
	check_reads "mountctl run --read-only reader (sha256)" "$B/r1" "$h1" "$h2"
	check_reads "snapreader (read-only transactions via the file interface)" "$B/r2" "$x1" "$x2"
	if [ "$("$TW" hash "$TM_MNT/app")" = "$x2" ] && timeout 30 diff -r "$W/v2" "$TM_MNT/app" >/dev/null; then
		ok "atomic deploy: the tree equals v2 afterwards"
	else
		not_ok "atomic deploy: the tree differs from v2 afterwards:" \
			"$(timeout 30 diff -rq "$W/v2" "$TM_MNT/app" 2>&1 | head -n 3 | tr '\n' ';')"
	fi

	# A deploy that removes a whole directory (d00) with everything in it.
	out=$(timeout -k 5 60 "$MOUNTCTL" run "$TM_MNT" -- rsync -a --delete "$W/v3/" "$TM_MNT/app/" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && [ "$("$TW" hash "$TM_MNT/app")" = "$x3" ]; then
		ok "atomic deploy: run -- rsync --delete that removes a directory commits; tree equals v3"
	else
		not_ok "atomic deploy: run -- rsync --delete that removes a directory (app/d00, 50 files, all" \
			"committed before the run began): exit $rc: $out"
	fi
	scenario_kill_rsync
	scenario_kill_server_in_run
	if tm_umount; then ok "deploy: clean unmount ($((SECONDS - t0)) s)"; else not_ok "deploy: unmount"; fi
}

# The view of run NAME has rsync's progress: v1 files it wrote (f00 is only
# in v1; rsync renames each finished temp file to its name).
run_progress() { # name
	local v=$TM_MNT/.txdir/txn/$1/root/app
	[ -e "$v/d00/f00" ] && [ -e "$v/d01/f00" ] && [ -e "$v/d02/f00" ]
}

# ---- 2. SIGKILL of rsync inside a run ---------------------------------------

scenario_kill_rsync() {
	local W=$TM_DIR/trees B=$TM_DIR/barriers before tpid rc left
	before=$("$TW" hash "$TM_MNT/app")
	rm -f "$B/rsync.pid"
	# The wrapper records its pid, then is rsync (slowed so it is mid-way).
	timeout -k 5 60 "$MOUNTCTL" run "$TM_MNT" --name deploy-kill -- \
		sh -c "echo \$\$ > '$B/rsync.pid'; exec rsync -a --delete --bwlimit=30 '$W/v1/' '$TM_MNT/app/'" \
		>"$B/kill.out" 2>&1 &
	tpid=$!
	BG+=("$tpid")
	if ! wait_for 200 test -s "$B/rsync.pid" || ! wait_for 300 run_progress deploy-kill; then
		not_ok "SIGKILL of rsync: rsync did not start or make progress: $(cat "$B/kill.out")"
		stop_bg "$tpid"
		return
	fi
	kill -KILL "$(cat "$B/rsync.pid")"
	wait "$tpid"
	rc=$?
	BG=()
	if [ "$rc" -eq 137 ]; then
		ok "SIGKILL of rsync mid-way: mountctl run exits 137"
	else
		not_ok "SIGKILL of rsync mid-way: mountctl run exit $rc, want 137: $(cat "$B/kill.out")"
	fi
	if [ "$("$TW" hash "$TM_MNT/app")" = "$before" ]; then
		ok "SIGKILL of rsync mid-way: the tree is exactly the old one (nothing applied)"
	else
		not_ok "SIGKILL of rsync mid-way: the tree changed"
	fi
	left=$(ls -A "$TM_MNT/.txdir/txn")
	if [ -z "$left" ]; then ok "SIGKILL of rsync: no transaction record left"; else not_ok "SIGKILL of rsync: records left: $left"; fi
}

# ---- 2b. SIGKILL of txdirfs during a run --------------------------------------

scenario_kill_server_in_run() {
	local W=$TM_DIR/trees B=$TM_DIR/barriers before tpid rc
	before=$("$TW" hash "$TM_MNT/app")
	timeout -k 5 60 "$MOUNTCTL" run "$TM_MNT" --name deploy-crash -- \
		rsync -a --delete --bwlimit=30 "$W/v1/" "$TM_MNT/app/" >"$B/crash.out" 2>&1 &
	tpid=$!
	BG+=("$tpid")
	if ! wait_for 300 run_progress deploy-crash; then
		not_ok "SIGKILL of txdirfs in a run: rsync made no progress: $(cat "$B/crash.out")"
		stop_bg "$tpid"
		return
	fi
	kill_server || { not_ok "SIGKILL of txdirfs in a run: kill"; stop_bg "$tpid"; return; }
	if ! wait_for 300 all_dead "$tpid"; then
		echo "# mountctl run still running 30 s after the server died: SIGTERM"
		kill -TERM "$tpid"
	fi
	wait "$tpid"
	rc=$?
	BG=()
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
		ok "SIGKILL of txdirfs in a run: mountctl run fails (exit $rc: $(tail -n 1 "$B/crash.out"))"
	else
		not_ok "SIGKILL of txdirfs in a run: mountctl run exit $rc: $(tail -n 3 "$B/crash.out")"
	fi
	remount "SIGKILL of txdirfs in a run" "" || return
	if [ "$("$TW" hash "$TM_MNT/app")" = "$before" ]; then
		ok "SIGKILL of txdirfs mid-run + remount: the tree is exactly the old one"
	else
		not_ok "SIGKILL of txdirfs mid-run + remount: the tree changed"
	fi
	echo "# transaction records after recovery: $(ls -A "$TM_MNT/.txdir/txn" | tr '\n' ' ')"
}

# ---- 3. SIGKILL of txdirfs around the commit --------------------------------

scenario_commit_kill() {
	local modes=(before inflight after) opts=("" "durability=full") r k cur=0 mode opt spid out v
	local good=0 t0=$SECONDS
	declare -A seen=()
	mount_killable "" || { not_ok "commit kill: mount"; tm_umount >/dev/null; return; }
	mkdir "$TM_MNT/r3"
	out=$(timeout 60 "$TW" round "$TM_MNT" r3 0 "$NFILES3" commit 0 "$SEED" 2>&1)
	v=$(timeout 60 "$TW" version "$TM_MNT" r3 "$NFILES3" 2>&1)
	if [ "$out" != acked ] || [ "$v" != 0 ]; then
		not_ok "commit kill: initial version 0 ($out; $v)"
		tm_umount >/dev/null
		return
	fi
	for ((r = 0; r < ROUNDS3; r++)); do
		mode=${modes[r % 3]}
		opt=${opts[(r / 3) % 2]}
		k=$((cur + 1))
		spid=$(server_pid)
		out=$(timeout 60 "$TW" round "$TM_MNT" r3 "$k" "$NFILES3" "$mode" "$spid" $((SEED + r)) 2>&1)
		if ! wait_for 100 all_dead "$spid"; then
			not_ok "commit kill round $r ($mode): server not killed: $out"
			break
		fi
		remount "commit kill round $r" "$opt" || { tm_umount >/dev/null; return; }
		v=$(timeout 60 "$TW" version "$TM_MNT" r3 "$NFILES3" 2>&1)
		local res=${out%% *}
		seen["$mode $res"]=$((${seen["$mode $res"]:-0} + 1))
		if ! [[ $v =~ ^[0-9]+$ ]]; then
			not_ok "commit kill round $r ($mode, ${opt:-fsync}; $out): not one version after remount:"
			printf '%s\n' "$v"
			tm_umount >/dev/null
			return
		elif [ "$res" = acked ] && [ "$v" != "$k" ]; then
			not_ok "commit kill round $r ($mode, ${opt:-fsync}): commit write returned success," \
				"then SIGKILL: version $v after remount, want $k"
		elif [ "$mode" = before ] && [ "$v" != "$cur" ]; then
			not_ok "commit kill round $r (before, $out): never committed, version $v, want $cur"
		elif [ "$v" != "$cur" ] && [ "$v" != "$k" ]; then
			not_ok "commit kill round $r ($mode; $out): version $v, want $cur or $k"
		else
			good=$((good + 1))
			echo "# round $r: $mode ${opt:-fsync}: $out -> all files at version $v"
		fi
		cur=$v
	done
	if [ "$good" -eq "$ROUNDS3" ]; then
		ok "SIGKILL around the commit: $ROUNDS3 rounds of $NFILES3 files, each all-old or all-new," \
			"acknowledged ones new ($(for s in "${!seen[@]}"; do printf '%s: %s, ' "$s" "${seen[$s]}"; done | sed 's/, $//'); $((SECONDS - t0)) s)"
	fi
	if [ -z "${seen["inflight unacked"]:-}" ]; then
		echo "# note: no in-flight kill landed before the commit returned"
	fi
	if tm_umount; then ok "commit kill: clean unmount"; else not_ok "commit kill: unmount"; fi
}

# ---- 4. concurrent transactions, SIGKILL, recovery -------------------------------

all_ready() { # dir
	local p
	for ((p = 0; p < NPROC4; p++)); do
		[ -e "$1/ready.$p" ] || return 1
	done
}

scenario_concurrent() {
	local r p log pids base target at_kill out t0=$SECONDS
	mount_killable "" || { not_ok "concurrent: mount"; tm_umount >/dev/null; return; }
	log=$TM_DIR/commits.log
	: >"$log"
	if ! out=$(timeout 60 "$TW" setup4 "$TM_MNT" "$NPROC4" 2>&1); then
		not_ok "concurrent: setup: $out"
		tm_umount >/dev/null
		return
	fi
	for ((r = 0; r < 3; r++)); do
		rm -f "$TM_DIR"/ready.*
		pids=()
		for ((p = 0; p < NPROC4; p++)); do
			timeout -k 2 60 "$TW" proc "$TM_MNT" "$p" "$log" "$TM_DIR/ready.$p" \
				2>>"$TM_DIR/workers.err" &
			pids+=($!)
		done
		BG+=("${pids[@]}")
		if ! wait_for 300 all_ready "$TM_DIR"; then
			not_ok "concurrent round $r: workers did not all commit once"
			sed 's/^/#   /' "$TM_DIR/workers.err" | tail -n 10
			stop_bg "${pids[@]}"
			tm_umount >/dev/null
			return
		fi
		base=$(wc -l <"$log")
		target=$((base + 20 + RANDOM % 600))
		wait_for 150 lines_at_least "$log" "$target" # a random moment, bounded
		at_kill=$(wc -l <"$log")
		if ! kill_server; then
			not_ok "concurrent round $r: SIGKILL of txdirfs"
			stop_bg "${pids[@]}"
			tm_umount >/dev/null
			return
		fi
		wait_for 100 all_dead "${pids[@]}"
		stop_bg "${pids[@]}"
		echo "# round $r: workers stopped by: $(sed -n 's/^txnwork [0-9]*: \([a-z]*\) .*: /\1: /p' \
			"$TM_DIR/workers.err" | sort | uniq -c | tr -s ' \n' ' ')"
		: >"$TM_DIR/workers.err"
		remount "concurrent round $r" "" || { tm_umount >/dev/null; return; }
		out=$(timeout 60 "$TW" check4 "$TM_MNT" "$NPROC4" "$log" 2>&1)
		if [ $? -eq 0 ]; then
			ok "concurrent transactions round $r: killed after $((at_kill - base)) log lines;" \
				"every transaction all or nothing, none acknowledged lost ($(sed -n 's/^# checked //p' <<<"$out"))"
		else
			not_ok "concurrent transactions round $r: killed after $((at_kill - base)) log lines"
			printf '%s\n' "$out"
			cp "$log" "${TMPDIR:-/tmp}/txdir-txncrash-failed-commits.log" 2>/dev/null &&
				echo "#   commit log kept as ${TMPDIR:-/tmp}/txdir-txncrash-failed-commits.log"
		fi
	done
	if tm_umount; then ok "concurrent: clean unmount ($((SECONDS - t0)) s)"; else not_ok "concurrent: unmount"; fi
}

echo "# seed $SEED (TXNCRASH_SEED=$SEED repeats the random choices)"
if [ ! -x "$TW" ]; then
	not_ok "txncrash: $TW not built"
elif [ ! -x "${MOUNTCTL:-}" ]; then
	not_ok "txncrash: \$MOUNTCTL ($MOUNTCTL) not built"
else
	scenario_deploy
	scenario_commit_kill
	scenario_concurrent
fi

tm_summary

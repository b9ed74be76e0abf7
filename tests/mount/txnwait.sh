#!/usr/bin/env bash
# tests/mount/txnwait.sh — a commit that waits for its view's writers, and
# transaction records across a server SIGKILL (SPEC §4, §5; issue 9).
#
#   commit after the close   a holder keeps root/f open for writing; `echo
#                            commit > ctl` is seen blocked in the server; the
#                            holder closes: the commit returns 0 and the file
#                            is in the main tree.
#   killed waiter            the same wait, but the committing process gets
#                            SIGKILL: it is gone well inside the 2 s bound
#                            (the server answers FUSE_INTERRUPT instead of
#                            holding the request), the transaction is still
#                            active and, after the holder closes, nothing is
#                            applied until a new commit; the mount still
#                            answers.
#   bound                    a holder that never closes: the commit fails
#                            EBUSY, status stays "active", info.json's
#                            last_error names the open file.
#   records after SIGKILL    one committed, one aborted and one active
#                            transaction; SIGKILL of txdirfs; remount:
#                            dtc/transactions/ lists all three (from disk),
#                            the active one as "aborted restart"; a second
#                            restart keeps them.
#
# Barrier files and bounded polls synchronise. The last line is
# "N passed, N failed". Environment: TXDIRFS, MOUNTCTL, TXDIR_BUILD.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TXDIR_BUILD=${TXDIR_BUILD:-$(dirname "$TXDIRFS")}
export TXDIRFS MOUNTCTL TXDIR_BUILD
. "$HERE/lib.sh"
export LC_ALL=C

# A process blocked in a FUSE request (its wchan names the wait).
in_fuse_wait() { # pid
	local w
	w=$(cat "/proc/$1/wchan" 2>/dev/null) || return 1
	case $w in *request_wait_answer* | *fuse*) return 0 ;; esac
	return 1
}

# Keeps FILE open for writing until BARRIER exists; touches READY once open.
start_holder() { # file ready barrier
	(exec 3>>"$1" && touch "$2" && until [ -e "$3" ]; do sleep 0.02; done) &
	HOLDER=$!
	BG+=("$HOLDER")
	wait_for 100 test -e "$2"
}

status_of() { cat "$TM_MNT/.txdir/txn/$1/status" 2>&1; }

scenario_wait() {
	local B=$TM_DIR/b T=$TM_MNT/.txdir/txn cpid rc t0 el st
	mkdir -p "$B"

	# 1. the commit returns after the close, and what it replaced is gone
	# from the kernel's caches by then (stat(2) shows the committed size)
	local k bad=0
	for ((k = 0; k < 10; k++)); do
		echo short >"$TM_MNT/f"
		stat -c %s "$TM_MNT/f" >/dev/null # cache its dentry and attributes
		mkdir "$T/w1" && echo "one, longer than short $k" >"$T/w1/root/f" ||
			{ not_ok "wait: begin w1"; return; }
		rm -f "$B/h1.ready" "$B/h1.go"
		start_holder "$T/w1/root/f" "$B/h1.ready" "$B/h1.go" || { not_ok "wait: holder 1"; return; }
		(echo commit >"$T/w1/ctl") 2>"$B/c1.err" &
		cpid=$!
		BG+=("$cpid")
		if ! wait_for 50 in_fuse_wait "$cpid"; then
			not_ok "commit after the close: the commit did not wait in the server (status: $(status_of w1))"
		fi
		touch "$B/h1.go"
		wait "$HOLDER"
		wait_for 50 all_dead "$cpid"
		wait "$cpid"
		rc=$?
		st=$(stat -c %s "$TM_MNT/f")
		if [ "$rc" -ne 0 ] || [ "$(cat "$TM_MNT/f" 2>&1)" != "one, longer than short $k" ] ||
			[ "$st" -ne 25 ] || [[ $(status_of w1) != committed\ * ]]; then
			bad=$((bad + 1))
			echo "# round $k: exit $rc ($(cat "$B/c1.err")), status $(status_of w1), size $st," \
				"main f: $(cat "$TM_MNT/f" 2>&1)"
		fi
		rmdir "$T/w1"
	done
	if [ "$bad" -eq 0 ]; then
		ok "a commit waiting for the view's writer returns 0 after the close; the file is" \
			"committed and stat shows its size at once (10 rounds)"
	else
		not_ok "commit after the close: $bad of 10 rounds wrong"
	fi

	# 2. SIGKILL of the waiting committer
	mkdir "$T/w2" && echo two >"$T/w2/root/g" || { not_ok "wait: begin w2"; return; }
	start_holder "$T/w2/root/g" "$B/h2.ready" "$B/h2.go" || { not_ok "wait: holder 2"; return; }
	# the committer is a grandchild, so the shell reaping it (and saying
	# "Killed") is this subshell, whose stderr is /dev/null
	rm -f "$B/c2.pid"
	( (echo commit >"$T/w2/ctl") & echo $! >"$B/c2.pid"; wait ) 2>/dev/null &
	BG+=("$!")
	wait_for 50 test -s "$B/c2.pid"
	cpid=$(cat "$B/c2.pid")
	BG+=("$cpid")
	if wait_for 50 in_fuse_wait "$cpid"; then
		t0=$(date +%s%N)
		kill -KILL "$cpid"
		wait_for 50 all_dead "$cpid"
		el=$((($(date +%s%N) - t0) / 1000000))
		if [ "$el" -lt 1000 ]; then
			ok "a committer killed while waiting for the view's writer is gone in $el ms (bound 2 s)"
		else
			not_ok "killed waiting committer took $el ms to go (the request was held, not interrupted)"
		fi
	else
		not_ok "killed waiter: the commit did not wait in the server (status: $(status_of w2))"
	fi
	touch "$B/h2.go"
	wait "$HOLDER"
	st=$(status_of w2)
	if [ "$st" = active ] && [ ! -e "$TM_MNT/g" ] && echo commit >"$T/w2/ctl" &&
		[ "$(cat "$TM_MNT/g" 2>&1)" = two ]; then
		ok "the withdrawn commit applied nothing, the transaction stayed active and commits later"
	else
		not_ok "after the killed waiter: status '$st', main g: $(cat "$TM_MNT/g" 2>&1)"
	fi
	rmdir "$T/w2"

	# 3. the bound: EBUSY, still active, last_error names the file
	mkdir "$T/w3" && echo three >"$T/w3/root/open me" || { not_ok "wait: begin w3"; return; }
	start_holder "$T/w3/root/open me" "$B/h3.ready" "$B/h3.go" || { not_ok "wait: holder 3"; return; }
	st=$( (echo commit >"$T/w3/ctl") 2>&1)
	rc=$?
	touch "$B/h3.go"
	wait "$HOLDER"
	if [ "$rc" -ne 0 ] && [[ $st == *"Device or resource busy"* ]] && [ "$(status_of w3)" = active ] &&
		grep -q '"last_error":"busy reason=open-in-view path=/open me"' "$T/w3/info.json"; then
		ok "a writer open past the bound: EBUSY, still active, last_error names the file"
	else
		not_ok "bound: exit $rc ($st), status $(status_of w3), info $(cat "$T/w3/info.json")"
	fi
	rmdir "$T/w3"
}

# dtc/transactions/ID's JSON field (string fields only).
rec_field() { # id field
	sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p" "$TM_MNT/.txdir/dtc/transactions/$1" 2>/dev/null
}

txid() { sed -n 's/.*"txid":\([0-9]*\).*/\1/p' "$TM_MNT/.txdir/txn/$1/info.json"; }

scenario_records() {
	local T=$TM_MNT/.txdir/txn D=$TM_MNT/.txdir/dtc/transactions c a r n k
	mkdir "$T/kept-c" && echo c >"$T/kept-c/root/c" && echo commit >"$T/kept-c/ctl" &&
		mkdir "$T/kept-a" && echo abort >"$T/kept-a/ctl" &&
		mkdir "$T/running" && echo r >"$T/running/root/r" || { not_ok "records: set-up"; return; }
	c=$(txid kept-c)
	a=$(txid kept-a)
	r=$(txid running)
	kill_server || { not_ok "records: SIGKILL of txdirfs"; return; }
	for k in 1 2; do
		detach || { not_ok "records: detach ($k)"; return; }
		start_server "" || { not_ok "records: remount ($k)"; return; }
		n=$(ls "$D" | grep -cxF -e "$c" -e "$a" -e "$r")
		if [ "$n" -eq 3 ] && [ "$(rec_field "$c" status)" = "committed $(rec_field "$c" commit)" -o \
			"$(rec_field "$c" state)" = committed ] && [ "$(rec_field "$a" status)" = "aborted request" ] &&
			[ "$(rec_field "$r" status)" = "aborted restart" ] && [ "$(rec_field "$r" state)" = aborted ]; then
			ok "after restart $k: dtc/transactions lists the committed, the aborted and the" \
				"active-at-the-crash transaction, the last as 'aborted restart'"
		else
			not_ok "after restart $k: $n of 3 in dtc/transactions ($(ls "$D" | tr '\n' ' '));" \
				"$c: $(rec_field "$c" state), $a: $(rec_field "$a" status), $r: $(rec_field "$r" status)"
		fi
		[ "$k" -eq 1 ] && { kill_server || { not_ok "records: second SIGKILL"; return; }; }
	done
	if [ ! -e "$TM_MNT/r" ] && [ "$(cat "$TM_MNT/c" 2>&1)" = c ]; then
		ok "records: the committed file is there, the interrupted transaction's is not"
	else
		not_ok "records: main tree after restarts: c=$(cat "$TM_MNT/c" 2>&1), r exists: $([ -e "$TM_MNT/r" ] && echo yes)"
	fi
}

if mount_killable ""; then
	scenario_wait
	scenario_records
	if tm_umount; then ok "txnwait: clean unmount"; else not_ok "txnwait: unmount"; fi
else
	not_ok "txnwait: mount"
	tm_umount >/dev/null
fi

tm_summary

# bash completion for mountctl(1) — txdir's command-line front end.
#
# Completes the commands, each command's options, mount points (the
# fuse.txdirfs mounts in /proc/mounts; other directories too, for a mount
# still to be made), stores (directories), and, read from a mounted store:
# transaction names (.txdir/txn/), lease names (.txdir/leases/by-name/),
# proposal names (.txdir/consensus/proposals/) and a proposal's
# participants. Reading a mount never blocks for long: every look is a
# `timeout 2` child, so a hung server cannot hang the shell.
#
# Install: /usr/share/bash-completion/completions/mountctl (make install
# puts it there), or `source` it.

_mountctl_cmds="init mount umount status check sync stats top run lease propose vote decision txn state fsck scrub inspect help"

# Mount points of txdirfs servers, one per line (octal escapes undone).
_mountctl_mounts() {
	local src mnt type rest
	while read -r src mnt type rest; do
		[ "$type" = fuse.txdirfs ] || continue
		printf '%b\n' "${mnt//\\/\\0}"
	done </proc/mounts 2>/dev/null
}

# Entries of MNT/.txdir/REL (a control directory), bounded in time.
_mountctl_names() {
	local dir=$1/.txdir/$2
	[ -d "$1" ] || return 0
	timeout 2 ls -1A -- "$dir" 2>/dev/null
}

# Participants of proposal P on MNT: its participants file, else votes/P/.
_mountctl_participants() {
	local p=$1/.txdir/consensus/proposals/$2/participants out
	[ -d "$1" ] || return 0
	out=$(timeout 2 cat -- "$p" 2>/dev/null)
	if [ -n "$out" ]; then
		tr ', \t' '\n\n\n' <<<"$out" | sed '/^$/d'
	else
		_mountctl_names "$1" "consensus/votes/$2"
	fi
}

# COMPREPLY from a word list (one per line, may hold spaces) matching $cur.
_mountctl_reply() {
	local IFS=$'\n' w
	COMPREPLY=()
	for w in $1; do
		[[ $w == "$cur"* ]] && COMPREPLY+=("$w")
	done
}

_mountctl_mnt_or_dir() {
	_mountctl_reply "$(_mountctl_mounts)"
	local IFS=$'\n'
	COMPREPLY+=($(compgen -d -- "$cur"))
}

_mountctl() {
	local cur prev cmd sub i
	local -a pos=() # positional words after the command (options skipped)
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}

	if ((COMP_CWORD == 1)); then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_mountctl_cmds" -- "$cur"))
		fi
		return 0
	fi
	cmd=${COMP_WORDS[1]}

	# after "--": CMD and its arguments
	for ((i = 2; i < COMP_CWORD; i++)); do
		if [ "${COMP_WORDS[i]}" = -- ]; then
			if ((i == COMP_CWORD - 1)); then
				COMPREPLY=($(compgen -c -- "$cur"))
			else
				COMPREPLY=($(compgen -f -- "$cur"))
			fi
			return 0
		fi
	done

	# options that take a value
	case $prev in
	--payload)
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	--log)
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	-o | --timeout | --ttl | -w | --wait | -E | --conflict-exit-code | --retry | --name | \
		--participants | --if-version | --as | --interval | --rate)
		return 0
		;;
	esac

	# the positional words so far (skipping options and their values)
	for ((i = 2; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-o | --timeout | --ttl | -w | --wait | -E | --conflict-exit-code | --retry | --name | \
			--participants | --if-version | --as | --prepare | --payload | --log | --interval | \
			--rate)
			((i++))
			;;
		-*) ;;
		*) pos+=("${COMP_WORDS[i]}") ;;
		esac
	done

	if [ "$prev" = --prepare ]; then
		# run MNT --prepare P: P is a proposal of MNT
		[ ${#pos[@]} -ge 1 ] && _mountctl_reply "$(_mountctl_names "${pos[0]}" consensus/proposals)"
		return 0
	fi

	if [[ $cur == -* ]]; then
		local opts="--help"
		case $cmd in
		mount) opts="-o --timeout --log --help" ;;
		umount) opts="--lazy --help" ;;
		status) opts="--json --watch --interval --help" ;;
		check | stats) opts="--json --help" ;;
		top) opts="--once --interval --json --help" ;;
		run) opts="--read-only --name --retry --conflict-exit-code --prepare --as --help --" ;;
		lease)
			case ${pos[0]} in
			list) opts="--json --help" ;;
			break) opts="--help" ;;
			*) opts="-n --nonblock -w --wait -E --conflict-exit-code --ttl --help --" ;;
			esac
			;;
		propose) opts="--participants --payload --timeout --help" ;;
		decision) opts="--wait --wait= --json --help" ;;
		scrub) opts="--rate --json -n --help" ;;
		txn) [ "${pos[0]}" = list ] && opts="--json --help" ;;
		state)
			case ${pos[0]} in
			get) opts="--json --help" ;;
			set) opts="--if-version --help" ;;
			esac
			;;
		esac
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return 0
	fi

	local n=${#pos[@]}
	case $cmd in
	help)
		((n == 0)) && COMPREPLY=($(compgen -W "$_mountctl_cmds" -- "$cur"))
		;;
	init | fsck | inspect)
		((n == 0)) && COMPREPLY=($(compgen -d -- "$cur"))
		;;
	mount)
		((n <= 1)) && COMPREPLY=($(compgen -d -- "$cur"))
		;;
	umount | status | check | sync | stats | top | scrub)
		((n == 0)) && _mountctl_mounts_reply
		;;
	run)
		((n == 0)) && _mountctl_mounts_reply
		;;
	lease)
		case ${pos[0]} in
		list) ((n == 1)) && _mountctl_mounts_reply ;;
		break)
			if ((n == 1)); then
				_mountctl_mounts_reply
			elif ((n == 2)); then
				_mountctl_reply "$(_mountctl_names "${pos[1]}" leases/by-name)"
			fi
			;;
		*)
			if ((n == 0)); then
				_mountctl_reply "$(printf '%s\n' list break; _mountctl_mounts)"
				local IFS=$'\n'
				COMPREPLY+=($(compgen -d -- "$cur"))
			elif ((n == 1)); then
				_mountctl_reply "$(_mountctl_names "${pos[0]}" leases/by-name)"
			fi
			;;
		esac
		;;
	propose)
		((n == 0)) && _mountctl_mounts_reply
		;;
	vote)
		case $n in
		0) _mountctl_mounts_reply ;;
		1) _mountctl_reply "$(_mountctl_names "${pos[0]}" consensus/proposals)" ;;
		2) _mountctl_reply "$(_mountctl_participants "${pos[0]}" "${pos[1]}")" ;;
		3) COMPREPLY=($(compgen -W "yes no" -- "$cur")) ;;
		esac
		;;
	decision)
		case $n in
		0) _mountctl_mounts_reply ;;
		1) _mountctl_reply "$(_mountctl_names "${pos[0]}" consensus/proposals)" ;;
		esac
		;;
	txn)
		case $n in
		0) COMPREPLY=($(compgen -W "list abort" -- "$cur")) ;;
		1) _mountctl_mounts_reply ;;
		2) [ "${pos[0]}" = abort ] && _mountctl_reply "$(_mountctl_names "${pos[1]}" txn)" ;;
		esac
		;;
	state)
		case $n in
		0) COMPREPLY=($(compgen -W "get set" -- "$cur")) ;;
		1) _mountctl_mounts_reply ;;
		2) [ "${pos[0]}" = set ] && COMPREPLY=($(compgen -f -- "$cur") $(compgen -W - -- "$cur")) ;;
		esac
		;;
	esac
	return 0
}

_mountctl_mounts_reply() {
	_mountctl_mnt_or_dir
}

complete -o filenames -F _mountctl mountctl

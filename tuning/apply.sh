#!/usr/bin/env bash
# apply.sh: apply, preview or revert ringway's sysctl tuning (tuning/sysctl.conf).
#
#   apply.sh [--dry-run | --revert] [--file FILE] [--state-dir DIR]
#
#   (default)   save the current values of every key in FILE to DIR/sysctl.saved (only
#               keys not saved yet: a second run keeps the first run's originals), then
#               write the new values to /proc/sys. Needs root.
#   --dry-run   print key, current value, wanted value and what would happen; change
#               nothing (root not needed).
#   --revert    write back exactly the values in DIR/sysctl.saved, then delete it. Needs root.
#
# FILE defaults to sysctl.conf next to this script. DIR defaults to $RINGWAY_TUNING_STATE,
# else /var/lib/ringway. Unknown keys (not in /proc/sys on this kernel, e.g.
# nf_conntrack_max without the module) are skipped with a warning. Pure limits are only
# ever raised (see RAISE_ONLY). Exit status: 0 ok, 1 failure, 2 usage error.
set -euo pipefail

prog=apply.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$here/sysctl.conf"
state_dir="${RINGWAY_TUNING_STATE:-/var/lib/ringway}"
mode=apply
proc=/proc/sys

# Keys whose every field is a ceiling (bigger = more allowed): never lowered. If the
# machine already has a higher value it is kept; multi-field values (tcp_mem) are raised
# field by field.
RAISE_ONLY=" fs.file-max fs.nr_open net.core.somaxconn net.ipv4.tcp_max_syn_backlog
 net.core.netdev_max_backlog net.ipv4.tcp_mem net.ipv4.tcp_max_orphans
 net.netfilter.nf_conntrack_max vm.max_map_count "

die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
usage_err() { printf '%s: %s\nusage: %s [--dry-run | --revert] [--file FILE] [--state-dir DIR]\n' "$prog" "$*" "$prog" >&2; exit 2; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }

while (($#)); do
    case $1 in
        --dry-run) [[ $mode == apply ]] || usage_err "--dry-run and --revert exclude each other"; mode=dry-run ;;
        --revert) [[ $mode == apply ]] || usage_err "--dry-run and --revert exclude each other"; mode=revert ;;
        --file) (($# >= 2)) || usage_err "--file needs a path"; conf=$2; shift ;;
        --file=*) conf=${1#--file=} ;;
        --state-dir) (($# >= 2)) || usage_err "--state-dir needs a directory"; state_dir=$2; shift ;;
        --state-dir=*) state_dir=${1#--state-dir=} ;;
        -h | --help) sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) usage_err "unknown argument: $1" ;;
    esac
    shift
done
[[ -n $state_dir ]] || usage_err "--state-dir must not be empty"
state_file="$state_dir/sysctl.saved"

# Collapse runs of whitespace (the kernel prints tabs between fields) to single spaces.
norm() {
    local -a f
    read -r -a f <<<"$1" || true
    printf '%s' "${f[*]}"
}

key_path() { printf '%s/%s' "$proc" "${1//.//}"; }

# Current value of key $1 on stdout; fails if the key does not exist or cannot be read.
read_cur() {
    local p v
    p=$(key_path "$1")
    [[ -f $p && -r $p ]] || return 1
    v=$(<"$p") || return 1
    norm "$v"
}

# Write value $2 to key $1; on failure print the kernel's reason and fail.
write_key() {
    local key=$1 val=$2 p err got
    p=$(key_path "$key")
    if [[ ! -w $p ]]; then
        printf '%s: error: %s: read-only here (container or network namespace?)\n' "$prog" "$key" >&2
        return 1
    fi
    if ! err=$({ printf '%s\n' "$val" >"$p"; } 2>&1); then
        printf '%s: error: %s: cannot write "%s": %s\n' "$prog" "$key" "$val" "${err##*: }" >&2
        return 1
    fi
    got=$(read_cur "$key") || got="?"
    if [[ $got != "$val" ]]; then
        printf '%s: error: %s: wrote "%s" but the kernel holds "%s"\n' "$prog" "$key" "$val" "$got" >&2
        return 1
    fi
}

is_uint_list() { [[ $1 =~ ^[0-9]+( [0-9]+)*$ ]]; }

# The value apply would write for key $1 (conf value $2, current $3).
target() {
    local key=$1 want=$2 cur=$3
    if [[ $RAISE_ONLY == *" $key "* ]] && is_uint_list "$want" && is_uint_list "$cur"; then
        local -a w c
        read -r -a w <<<"$want"
        read -r -a c <<<"$cur"
        if ((${#w[@]} == ${#c[@]})); then
            local i
            for i in "${!w[@]}"; do
                # Compare as decimal strings of digits, safe beyond 64 bits too.
                if ((${#c[i]} > ${#w[i]})) || { ((${#c[i]} == ${#w[i]})) && [[ ${c[i]} > ${w[i]} ]]; }; then
                    w[i]=${c[i]}
                fi
            done
            printf '%s' "${w[*]}"
            return
        fi
    fi
    printf '%s' "$want"
}

# Parse the conf file into KEYS / WANT (in file order).
KEYS=()
WANT=()
parse_conf() {
    [[ -f $conf && -r $conf ]] || die "cannot read sysctl file: $conf"
    local line key val n=0 k
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line#"${line%%[![:space:]]*}"}
        [[ -z $line || $line == \#* || $line == \;* ]] && continue
        [[ $line == *=* ]] || die "$conf:$n: not 'key = value': $line"
        key=${line%%=*}
        val=${line#*=}
        key=$(norm "$key")
        key=${key#-}
        val=$(norm "$val")
        [[ $key =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || die "$conf:$n: bad key: $key"
        [[ -n $val ]] || die "$conf:$n: empty value for $key"
        for k in "${KEYS[@]}"; do
            [[ $k != "$key" ]] || die "$conf:$n: $key appears twice"
        done
        KEYS+=("$key")
        WANT+=("$val")
    done <"$conf"
    ((${#KEYS[@]})) || die "no settings in $conf"
}

# Load the state file into SAVED_KEYS / SAVED_VALS (in file order).
SAVED_KEYS=()
SAVED_VALS=()
load_state() {
    SAVED_KEYS=()
    SAVED_VALS=()
    [[ -e $state_file ]] || return 0
    [[ -r $state_file ]] || die "cannot read saved state: $state_file"
    local line n=0
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        [[ -z $line || $line == \#* ]] && continue
        [[ $line == *=* ]] || die "$state_file:$n: corrupt line: $line"
        SAVED_KEYS+=("${line%%=*}")
        SAVED_VALS+=("${line#*=}")
    done <"$state_file"
}

saved_index() {
    local i
    for i in "${!SAVED_KEYS[@]}"; do
        [[ ${SAVED_KEYS[i]} != "$1" ]] || { printf '%s' "$i"; return 0; }
    done
    return 1
}

require_root() {
    ((EUID == 0)) || die "must run as root to $1 (it writes /proc/sys); use sudo, or --dry-run to preview"
    [[ -d $proc ]] || die "$proc not found (is /proc mounted?)"
}

row() { printf '%-32s %-26s %-26s %s\n' "$@"; }

do_dry_run() {
    parse_conf
    load_state
    local i key cur want tgt action
    row KEY CURRENT WANTED ACTION
    for i in "${!KEYS[@]}"; do
        key=${KEYS[i]}
        want=${WANT[i]}
        if ! cur=$(read_cur "$key"); then
            row "$key" "-" "$want" "skip: unknown key on this kernel"
            continue
        fi
        tgt=$(target "$key" "$want" "$cur")
        if [[ $tgt == "$cur" ]]; then
            if [[ $want == "$cur" ]]; then action="ok"; else action="ok (already higher, kept)"; fi
        elif [[ ! -w $(key_path "$key") ]] && ((EUID == 0)); then
            action="change (but read-only here: would fail)"
        else
            action="change"
        fi
        row "$key" "$cur" "$tgt" "$action"
    done
    if ((${#SAVED_KEYS[@]})); then
        echo "dry run: nothing changed; originals already saved in $state_file (apply keeps them)"
    else
        echo "dry run: nothing changed; apply would save the current values to $state_file"
    fi
}

do_apply() {
    require_root "apply settings"
    parse_conf
    load_state
    local i key cur tgt added=0 changed=0 same=0 skipped=0 failed=0
    local -a cur_vals=()
    for i in "${!KEYS[@]}"; do
        key=${KEYS[i]}
        if ! cur=$(read_cur "$key"); then
            warn "$key: unknown key on this kernel (no $(key_path "$key")): skipped"
            cur_vals+=("")
            skipped=$((skipped + 1))
            continue
        fi
        cur_vals+=("$cur")
        if ! saved_index "$key" >/dev/null; then
            SAVED_KEYS+=("$key")
            SAVED_VALS+=("$cur")
            added=$((added + 1))
        fi
    done
    # Save originals before touching anything; keys saved by an earlier run keep their
    # first value, so applying twice never loses the machine's real defaults.
    if ((added)); then
        mkdir -p -- "$state_dir" || die "cannot create state directory $state_dir"
        local tmp="$state_file.tmp.$$"
        {
            printf '# ringway tuning/apply.sh: values before ringway tuning (first saved %s).\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
            printf '# Restore with: tuning/apply.sh --revert --state-dir %s\n' "$state_dir"
            for i in "${!SAVED_KEYS[@]}"; do
                printf '%s=%s\n' "${SAVED_KEYS[i]}" "${SAVED_VALS[i]}"
            done
        } >"$tmp" 2>/dev/null || { rm -f -- "$tmp"; die "cannot write saved state to $state_file"; }
        mv -f -- "$tmp" "$state_file" || { rm -f -- "$tmp"; die "cannot write saved state to $state_file"; }
    fi
    for i in "${!KEYS[@]}"; do
        key=${KEYS[i]}
        cur=${cur_vals[i]}
        [[ -n $cur ]] || continue
        tgt=$(target "$key" "${WANT[i]}" "$cur")
        if [[ $tgt == "$cur" ]]; then
            same=$((same + 1))
            continue
        fi
        if write_key "$key" "$tgt"; then
            printf 'set %s: %s -> %s\n' "$key" "$cur" "$tgt"
            changed=$((changed + 1))
        else
            failed=$((failed + 1))
        fi
    done
    printf '%s: %d changed, %d already fine, %d skipped, %d failed; originals saved in %s\n' \
        "$prog" "$changed" "$same" "$skipped" "$failed" "$state_file"
    if ((failed)); then
        die "$failed setting(s) could not be applied; undo the rest with: $prog --revert --state-dir $state_dir"
    fi
    printf 'undo with: %s --revert --state-dir %s\n' "$0" "$state_dir"
}

do_revert() {
    require_root "revert settings"
    if [[ ! -e $state_file ]]; then
        printf '%s: nothing to revert: no saved state at %s\n' "$prog" "$state_file" >&2
        return 0
    fi
    load_state
    local i key cur want restored=0 same=0 failed=0
    for i in "${!SAVED_KEYS[@]}"; do
        key=${SAVED_KEYS[i]}
        want=${SAVED_VALS[i]}
        if ! cur=$(read_cur "$key"); then
            warn "$key: no longer exists on this kernel: cannot restore \"$want\""
            continue
        fi
        if [[ $cur == "$want" ]]; then
            same=$((same + 1))
            continue
        fi
        if write_key "$key" "$want"; then
            printf 'restored %s: %s -> %s\n' "$key" "$cur" "$want"
            restored=$((restored + 1))
        else
            failed=$((failed + 1))
        fi
    done
    if ((failed)); then
        die "$failed setting(s) not restored; kept $state_file so you can retry --revert"
    fi
    rm -f -- "$state_file" || die "restored all values but cannot remove $state_file"
    printf '%s: %d restored, %d already at the saved value; removed %s\n' "$prog" "$restored" "$same" "$state_file"
}

case $mode in
    dry-run) do_dry_run ;;
    apply) do_apply ;;
    revert) do_revert ;;
esac

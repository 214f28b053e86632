#!/usr/bin/env bash
# install.sh: install ringway under a prefix, or remove exactly what it installed.
#
#   scripts/install.sh [--prefix DIR] [--no-build] [--binary FILE]
#   scripts/install.sh --uninstall [--prefix DIR]
#
# Installs (default prefix /usr/local):
#   PREFIX/bin/ringway                         the release binary
#   PREFIX/etc/ringway/nginx.conf              scripts/nginx.conf, only if no file is there:
#                                              an existing config is never overwritten
#   PREFIX/lib/systemd/system/ringway.service  tuning/ringway.service, ExecStart rewritten to
#                                              PREFIX/bin/ringway -c PREFIX/etc/ringway/nginx.conf
#   PREFIX/share/doc/ringway/                  README.md, tuning/README.md (the unit's
#                                              Documentation= points here)
#   PREFIX/share/ringway/install-manifest      what this script installed, for --uninstall
#
# The unit always goes to PREFIX/lib/systemd/system: for /usr/local that is on systemd's
# search path ("units installed by the administrator", systemd.unit(5)), so after
# `systemctl daemon-reload` it is `systemctl enable --now ringway`; for any other prefix
# the script prints the `systemctl link` line that makes systemd see it. The script never
# runs systemctl itself and changes no sysctl (tuning/ is separate).
#
# Build: `cargo build --release -p ringway` first, unless --no-build (or --binary FILE,
# which installs FILE instead of target/release/ringway; CARGO_TARGET_DIR is honoured).
# As root for /usr/local: build as yourself, then `sudo scripts/install.sh --no-build`.
#
# --uninstall removes the files listed in the manifest, then the directories the install
# created (if empty), then the manifest. The config is removed only if unchanged since
# the install; an edited one is kept and named. Installing again over an install updates
# the binary, unit and docs and keeps the config; the manifest keeps what both installed.
#
# Exit status: 0 done, 1 failed (says why), 2 usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

usage() { sed -n '2,35s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}
say() { printf 'install.sh: %s\n' "$*"; }

prefix=/usr/local
uninstall=0
build=1
binary=""
while (($#)); do
    case $1 in
        --prefix)
            (($# >= 2)) || { usage >&2; exit 2; }
            prefix=$2
            shift
            ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        --uninstall) uninstall=1 ;;
        --no-build) build=0 ;;
        --binary)
            (($# >= 2)) || { usage >&2; exit 2; }
            binary=$2
            build=0
            shift
            ;;
        --binary=*)
            binary=${1#--binary=}
            build=0
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf 'install.sh: error: unknown argument: %s (see scripts/install.sh --help)\n' "$1" >&2
            exit 2
            ;;
    esac
    shift
done

# The prefix goes verbatim into the unit's ExecStart=: keep it to characters systemd takes
# without quoting (no whitespace, no % specifiers, no quotes or backslashes).
[[ -n $prefix ]] || die "--prefix is empty"
[[ $prefix != *[[:space:]%\"\'\\\|\&]* ]] || die "--prefix '$prefix': whitespace, %, |, &, quotes and backslashes are not supported"
[[ $prefix == /* ]] || prefix=$PWD/$prefix
prefix=${prefix%/}
[[ -n $prefix ]] || die "--prefix / is not supported (use /usr/local or a directory of its own)"

manifest=$prefix/share/ringway/install-manifest

# ---------------------------------------------------------------------------------------
# --uninstall
# ---------------------------------------------------------------------------------------
if ((uninstall)); then
    [[ -f $manifest ]] || die "no $manifest: nothing was installed under $prefix by this script"
    dirs=()
    while read -r kind a b; do
        case $kind in
            file)
                if [[ -e $a || -L $a ]]; then rm -f -- "$a" && say "removed $a"; fi
                ;;
            conf)
                # conf SHA256 PATH: removed only if nobody changed it.
                if [[ -f $b ]]; then
                    if [[ $(sha256sum "$b" | cut -d' ' -f1) == "$a" ]]; then
                        rm -f -- "$b" && say "removed $b"
                    else
                        say "kept $b: it was changed after the install (delete it yourself if you mean to)"
                    fi
                fi
                ;;
            dir) dirs+=("$a") ;;
            *) die "$manifest: unknown line '$kind $a $b'" ;;
        esac
    done <"$manifest"
    rm -f -- "$manifest"
    # Deepest first: each directory the install created, if nothing else is in it.
    for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
        d=${dirs[i]}
        [[ -d $d ]] || continue
        if rmdir -- "$d" 2>/dev/null; then
            say "removed $d/"
        else
            say "kept $d/: not empty"
        fi
    done
    say "uninstalled from $prefix (if the unit was enabled: systemctl disable --now ringway; systemctl daemon-reload)"
    exit 0
fi

# ---------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------
if ((build)); then
    say "cargo build --release -p ringway"
    (cd "$root" && cargo build --release -p ringway)
fi
[[ -n $binary ]] || binary=${CARGO_TARGET_DIR:-$root/target}/release/ringway
[[ -x $binary ]] || die "no executable $binary (build it: cargo build --release -p ringway)"
"$binary" --version >/dev/null 2>&1 || die "$binary --version failed: is it ringway, built for this machine?"

# Refuse early and in one line when the prefix is not writable (e.g. /usr/local as a user).
probe=$prefix
while [[ ! -e $probe ]]; do probe=$(dirname "$probe"); done
[[ -w $probe ]] || die "cannot write under $probe: run as root (sudo scripts/install.sh --no-build) or pick --prefix DIR"

# What an earlier install recorded stays recorded (merged, deduplicated, at the end).
entries=()
if [[ -f $manifest ]]; then
    mapfile -t entries <"$manifest"
fi
record() {
    local e=$* x
    for x in "${entries[@]}"; do
        [[ $x != "$e" ]] || return 0
    done
    entries+=("$e")
}

# mkdir -p that records every directory it creates, top-down, so uninstall can remove
# them bottom-up.
make_dir() {
    local d=$1 parts=() p i
    while [[ ! -d $d ]]; do
        parts+=("$d")
        d=$(dirname "$d")
    done
    for ((i = ${#parts[@]} - 1; i >= 0; i--)); do
        p=${parts[i]}
        mkdir -- "$p"
        record dir "$p"
    done
}

put() { # put MODE SRC DEST: install one file and record it
    make_dir "$(dirname "$3")"
    install -m "$1" -- "$2" "$3"
    record file "$3"
    say "installed $3"
}

bin=$prefix/bin/ringway
conf=$prefix/etc/ringway/nginx.conf
unit=$prefix/lib/systemd/system/ringway.service
doc=$prefix/share/doc/ringway

put 0755 "$binary" "$bin"

if [[ -e $conf ]]; then
    say "kept $conf: a config is already there (never overwritten; the seed is scripts/nginx.conf)"
else
    make_dir "$(dirname "$conf")"
    # World-readable: the unit runs ringway as a transient user (DynamicUser=yes).
    install -m 0644 -- "$root/scripts/nginx.conf" "$conf"
    record conf "$(sha256sum "$conf" | cut -d' ' -f1)" "$conf"
    say "installed $conf (from scripts/nginx.conf)"
fi

# The unit, with this prefix's paths: ExecStart, the config, the documentation.
tmp_unit=$(mktemp)
trap 'rm -f "$tmp_unit"' EXIT
sed -e "s|^ExecStart=.*|ExecStart=$bin -c $conf|" \
    -e "s|^Documentation=.*|Documentation=file://$doc/tuning/README.md|" \
    -e "/^#/s|PREFIX/|$prefix/|g" \
    "$root/tuning/ringway.service" >"$tmp_unit"
grep -qx "ExecStart=$bin -c $conf" "$tmp_unit" || die "could not rewrite ExecStart in tuning/ringway.service"
put 0644 "$tmp_unit" "$unit"

put 0644 "$root/README.md" "$doc/README.md"
put 0644 "$root/tuning/README.md" "$doc/tuning/README.md"

make_dir "$(dirname "$manifest")"
printf '%s\n' "${entries[@]}" >"$manifest"
say "manifest: $manifest (scripts/install.sh --uninstall --prefix $prefix removes what it lists)"

"$bin" -t -c "$conf" >/dev/null 2>&1 || say "warning: $bin -t -c $conf failed; check the config"
say "next: $bin -t -c $conf"
if [[ $prefix == /usr/local ]]; then
    say "then: systemctl daemon-reload && systemctl enable --now ringway"
else
    say "then: systemctl link $unit && systemctl daemon-reload && systemctl enable --now ringway"
    say "      ($prefix/lib/systemd/system is not on systemd's search path; link makes it so)"
fi

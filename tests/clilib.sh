# Sourced by tests/cli/*.sh. $PARE is the binary under test, $T a scratch folder.
set -u
SHARED="${PARE_SHARED:-../shared}"
fail() { echo "FAIL: $*"; exit 1; }
# need_shared PATH: exit 77 (skip) when ../shared is absent, fail under CI.
need_shared() {
    [ -e "$SHARED/$1" ] && return 0
    [ "${CI:-}" = "true" ] && fail "$SHARED/$1 missing under CI"
    echo "$SHARED/$1 not present"; exit 77
}
# expect_exit CODE CMD...: runs CMD, checks its exit status, keeps stderr in $T/stderr.
expect_exit() {
    want=$1; shift
    "$@" >"$T/stdout" 2>"$T/stderr"; got=$?
    [ "$got" -eq "$want" ] || { cat "$T/stderr"; fail "'$*' exited $got, expected $want"; }
}
# need_numpy: sets PY to a python3 that has numpy (make deps installs Debian's python3-numpy;
# a python3 earlier on PATH, e.g. pyenv's, may lack it).
need_numpy() {
    for PY in python3 /usr/bin/python3; do
        "$PY" -c 'import numpy' 2>/dev/null && return 0
    done
    fail "no python3 with numpy (make deps installs python3-numpy)"
}

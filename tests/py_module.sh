# tests/py_module.sh — sourced by the tests that check parlm against a Python reference:
# `py_module MODULE PACKAGE NAME` sets $py to a python3 that imports MODULE, installing
# Debian's PACKAGE with apt-get when run as root; without one (not root, offline) it
# prints NAME: SKIP and exits 77 (automake's skip). Debian's packages are for Debian's
# python3, which need not be the first on PATH.
py_find() {
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null && "$p" -c "import $1" 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
}
py_module() {
    if ! py=$(py_find "$1"); then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq \
                --no-install-recommends "$2" >/dev/null 2>&1 || true
        fi
        if ! py=$(py_find "$1"); then
            echo "$3: SKIP: no python3 $1 (apt-get install $2)"
            exit 77
        fi
    fi
}

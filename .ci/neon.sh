#!/usr/bin/env bash
# .ci/neon.sh — the aarch64/NEON build tested on an x86-64 Debian 12 machine: cross
# compiler + qemu-user + arm64 libraries from Debian multiarch, an out-of-tree
# --host=aarch64-linux-gnu build in $BUILD (default build-neon/), and every test under
# qemu-aarch64. Idempotent; exits non-zero if anything fails.
#   BUILD=/tmp/build-neon CONFIGURE_FLAGS=--enable-werror .ci/neon.sh
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
start=$(date +%s)
BUILD=${BUILD:-build-neon}
CONFIGURE_FLAGS=${CONFIGURE_FLAGS:---enable-werror}
HOST=aarch64-linux-gnu
say() { echo "neon.sh: $*"; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# ---- packages -----------------------------------------------------------------------
# arm64 libraries come from Debian multiarch; their Multi-Arch: same dependencies must
# match the amd64 versions exactly, so apt may upgrade a few amd64 libraries to the
# current point release (nothing is removed). --no-install-recommends keeps the arm64
# side to ~30 small packages (no X11/OpenCL hwloc plugins). The programs run on the
# multiarch loader and libc (libc6:arm64, /lib/ld-linux-aarch64.so.1), so QEMU_LD_PREFIX
# stays unset: pointing it at the cross toolchain's libc would pair that loader with the
# multiarch libc found through ld.so.cache. pkgconf:arm64 provides aarch64-linux-gnu-pkg-config.
host_pkgs="make autoconf automake libtool pkg-config gcc-aarch64-linux-gnu qemu-user
           qemu-user-binfmt"
arm_pkgs="libc6:arm64 libgomp1:arm64 libhwloc-dev:arm64 check:arm64 pkgconf:arm64
          libjansson-dev:arm64 libmicrohttpd-dev:arm64"
missing=""
for p in $host_pkgs $arm_pkgs; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        say "adding the arm64 architecture to dpkg"
        $sudo dpkg --add-architecture arm64
    fi
    say "installing$missing"
    apt update -qq
    # shellcheck disable=SC2086
    apt install -y -qq --no-install-recommends $missing > /dev/null
fi

# ---- binfmt_misc: lets a test exec() an aarch64 program (best effort) -----------------
# The Check programs run under qemu-aarch64 explicitly; binfmt is for what they start
# themselves (test_dispatch and test_gemm_setup re-execute themselves) and for script tests that run apps/.
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/qemu-aarch64" ]; then
    [ -e "$binfmt/register" ] || $sudo mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || true
    if [ -w "$binfmt/register" ] || [ -n "$sudo" ]; then
        conf=/usr/lib/binfmt.d/qemu-aarch64.conf
        if [ -f "$conf" ]; then $sudo sh -c "cat $conf > $binfmt/register" 2>/dev/null || true; fi
    fi
fi
if [ -e "$binfmt/qemu-aarch64" ]; then
    say "binfmt_misc: aarch64 binaries run through qemu transparently"
else
    say "binfmt_misc not available: only the test programs themselves run under qemu"
fi

# ---- configure (out of tree) and build -----------------------------------------------------
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
    say "autoreconf"
    autoreconf -fi > /dev/null
fi
mkdir -p "$BUILD"
stamp="$BUILD/.configure-flags"
# MPI is left out: the arm64 Open MPI stack is large and its tests need mpirun under qemu.
want="--host=$HOST --without-mpi $CONFIGURE_FLAGS"
if [ ! -f "$BUILD/config.status" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "configuring $BUILD ($want)"
    # shellcheck disable=SC2086
    (cd "$BUILD" && "$src/configure" -q $want)
    printf '%s' "$want" > "$stamp"
fi
say "building in $BUILD"
make -C "$BUILD" -j"$(nproc)" > "$BUILD/neon-build.log" 2>&1 ||
    { tail -40 "$BUILD/neon-build.log"; say "build failed"; exit 1; }
[ -f "$BUILD/simd/libsimd_neon.la" ] || { say "configure did not enable the NEON kernels"; exit 1; }
make -C "$BUILD" -j"$(nproc)" check TESTS= > "$BUILD/neon-build-tests.log" 2>&1 ||
    { tail -40 "$BUILD/neon-build-tests.log"; say "building the tests failed"; exit 1; }

# The test programs must be aarch64 ELF executables, not libtool wrapper scripts.
listvar() {
    make -s -C "$BUILD" -f Makefile -f - print-var VAR="$1" <<'EOF'
print-var:
	@echo $($(VAR))
EOF
}
# ckpt_faults.sh and the parlm-serve scripts are left out: they kill and signal programs at
# wall-clock moments, which emulation stretches 10-50x, and they test files and HTTP, not
# kernels (the native and sanitizer builds run them). calibrate_run.sh too: it times GEMMs
# up to 1024x3072x768 (~100 s a call under qemu, over 25 minutes in all) to measure a
# machine that emulation is not
tests=$(listvar TESTS | tr ' ' '\n' | grep -v '/ckpt_faults\.sh$\|/serve_run\.sh$\|/openai_npm\.sh$\|/calibrate_run\.sh$' | tr '\n' ' ')
progs=$(listvar check_PROGRAMS)
[ -n "$tests" ] || { say "no tests found"; exit 1; }
for t in $progs; do
    if ! $HOST-readelf -h "$BUILD/$t" 2>/dev/null | grep -q 'Machine:.*AArch64'; then
        say "$BUILD/$t is not an aarch64 ELF executable"
        exit 1
    fi
done

# Each test goes through this: an ELF program runs under qemu-aarch64; a script test runs
# as it is (its aarch64 programs then need binfmt_misc; without it the script is skipped).
runner="$BUILD/neon-run-test"
cat > "$runner" <<EOF
#!/bin/sh
# generated by .ci/neon.sh: automake's LOG_COMPILER for the aarch64 test suite
if [ "\$(head -c 4 "\$1" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    exec qemu-aarch64 "\$@"
fi
if [ ! -e $binfmt/qemu-aarch64 ]; then
    echo "SKIP: \$1 runs aarch64 programs, which needs binfmt_misc"; exit 77
fi
exec "\$@"
EOF
chmod +x "$runner"

# ---- run the Check programs under qemu-aarch64 ---------------------------------------------
# shellcheck disable=SC2086
say "running" $tests "(aarch64 programs under qemu-aarch64)"
status=0
make -C "$BUILD" -j"$(nproc)" check TESTS="$tests" LOG_COMPILER="$(cd "$BUILD" && pwd)/neon-run-test" \
    > "$BUILD/neon-check.log" 2>&1 ||
    status=1
for t in $tests; do
    log="$BUILD/$t.log"
    summary=$(grep -h '^[0-9]*%: Checks:' "$log" 2>/dev/null ||
              sed -n 's/^:test-result: //p' "$BUILD/$t.trs" 2>/dev/null || echo "not run")
    printf '  %-24s %s\n' "$t" "$summary"
done
if [ "$status" -ne 0 ]; then
    for t in $tests; do
        grep -q '^:global-test-result: PASS' "$BUILD/$t.trs" 2>/dev/null && continue
        echo "--- $BUILD/$t.log"
        cat "$BUILD/$t.log" 2>/dev/null || true
    done
    grep -q 'Testsuite summary' "$BUILD/neon-check.log" || tail -30 "$BUILD/neon-check.log"
fi
programs=$(grep -h '^# \(TOTAL\|PASS\|SKIP\|FAIL\|ERROR\):' "$BUILD/neon-check.log" | tr -s ' ' | tr '\n' ' ')
say "aarch64 test programs: ${programs:-no summary}"
cat "$BUILD"/tests/*/*.log 2>/dev/null | awk '/^[0-9]+%: Checks: /{ gsub(",", "");
    c += $3; f += $5 + $7 } END { printf "neon.sh: aarch64 Check totals: %d checks, %d failed\n", c, f }'
say "$([ "$status" -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
exit "$status"

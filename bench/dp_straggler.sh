#!/bin/sh
# bench/dp_straggler.sh — data parallelism with a straggler: 2 ranks x 1 thread train the
# same model on the default corpus (Debian's fortunes) with --dp sync, local (H = 4) and
# async (S = 1 and 4), without and with a slowed rank (--slow-rank rotate: rank step mod 2
# sleeps SLOW_MS at each step's start; or a fixed rank). Prints rank 0's tokens/s (steps 3
# .. STEPS), the cost model's prediction (parlm_plan_straggler, calibrated per mode on its
# run without a straggler: the row "none" is the calibration) and the validation loss
# after STEPS steps (equal tokens for every mode), as a Markdown table.
#   BUILD=build STEPS=40 SLOW_MS=30 SLOW="none rotate 1" bench/dp_straggler.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
STEPS=${STEPS:-40}
SLOW_MS=${SLOW_MS:-30}
SLOW=${SLOW:-none rotate}
MODEL=${MODEL:-tiny}
B=${B:-8}
T=${T:-64}
train=$BUILD/apps/parlm-train
lib=$BUILD/lib/.libs/libparlm.so
case "$SLOW" in none*) ;; *) echo "$0: SLOW must start with none (the calibration)"; exit 2 ;; esac
[ -x "$train" ] && [ -f "$lib" ] || { echo "$0: build first ($train, $lib)"; exit 1; }
. "$here/../tests/mpi.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name, options
modes="sync:--dp sync
local4:--dp local --local-steps 4
async1:--dp async --staleness 1
async4:--dp async --staleness 4"

run() { # $1 = name, $2 = slow setting, $3... = options
    name=$1 slow=$2
    shift 2
    extra=""
    [ "$slow" = none ] || extra="--slow-rank $slow --slow-ms $SLOW_MS"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 300 $MPI -np 2 "$train" --model "$MODEL" -b "$B" -t "$T" \
        --steps "$STEPS" --warmup 5 --val-every "$STEPS" --val-steps 8 --sample-every 0 \
        --threads 1 --quiet --log "$work/$name-$slow.csv" "$@" $extra \
        < /dev/null > "$work/$name-$slow.out" 2>&1 || { cat "$work/$name-$slow.out"; exit 1; }
}

# tokens/s of rank 0 over steps 3..STEPS, ms/step, and the final validation loss
measure() {
    awk -F, -v bt=$((2 * B * T)) 'NR > 1 && $1 > 2 { ms += $7; n++ } NR > 1 && $3 != "" { v = $3 }
        END { printf "%.1f %.3f %s\n", n * bt / (ms / 1e3), ms / n, v }' "$1"
}

predict() { # mode k compute_ms slow_ms slow_rank -> predicted ms/step
    python3 - "$lib" "$@" <<'PY'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
f = lib.parlm_plan_straggler
f.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_double, ctypes.c_double,
              ctypes.c_int, ctypes.c_double, ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
mode, k, comp, slow, rank, steps = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), \
    float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
out = ctypes.c_double()
if f(mode.encode(), 2, k, comp, slow, rank, 0.0, steps, ctypes.byref(out)) != 0:
    sys.exit("parlm_plan_straggler failed")
print("%.3f" % out.value)
PY
}

echo "| mode | straggler | tokens/s | predicted tokens/s | ms/step | val loss |"
echo "|---|---|---|---|---|---|"
echo "$modes" | while IFS=: read -r name opts; do
    for slow in $SLOW; do
        # shellcheck disable=SC2086
        run "$name" "$slow" $opts
        set -- $(measure "$work/$name-$slow.csv")
        tps=$1 ms=$2 val=$3
        [ "$slow" = none ] && base=$ms
        case $name in
            sync) pm=sync k=0 ;; local4) pm=local k=4 ;; async1) pm=async k=1 ;; *) pm=async k=4 ;;
        esac
        case $slow in none) sr=-1 d=0 ;; rotate) sr=-2 d=$SLOW_MS ;; *) sr=$slow d=$SLOW_MS ;; esac
        pms=$(predict "$pm" "$k" "$base" "$d" "$sr" "$((STEPS - 2))")
        ptps=$(awk -v bt=$((2 * B * T)) -v m="$pms" 'BEGIN { printf "%.1f", bt / (m / 1e3) }')
        echo "| $name | $slow | $tps | $ptps | $ms | $val |"
    done
done

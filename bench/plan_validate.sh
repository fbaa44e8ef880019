#!/bin/sh
# bench/plan_validate.sh — the planner against measured runs (issue 14's validation table):
# for every layout that runs on this machine, parlm-plan's prediction on a calibrated
# profile (`parlm-bench calibrate`) next to parlm-train's measured step time (median of
# the steps after warm-up), error %, and the median / worst |error|. Usage:
#   bench/plan_validate.sh [--profile machine.json] [--model d6] [--steps 8] [--build DIR]
# Without --profile it calibrates first (mpirun -np 2, links included) into
# $PROFILE_OUT (default ./plan_validate.machine.json).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${PARLM_BUILDDIR:-$here/build}
profile="" model=d6 steps=8 B=8 T=128 warm=2
while [ $# -gt 0 ]; do
    case $1 in
    --profile) profile=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "plan_validate: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$steps" -gt "$warm" ] || { echo "plan_validate: --steps must exceed $warm (warm-up)" >&2; exit 2; }
bin=$build/apps
. "$here/tests/mpi.sh"
command -v jq > /dev/null || { echo "plan_validate: needs jq (apt-get install jq)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cores=$(nproc)
mem=$(awk '/^MemTotal:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo)
if [ -z "$profile" ]; then
    profile=${PROFILE_OUT:-plan_validate.machine.json} # kept: the coordinator's record
    echo "calibrating: $MPI_BOUND -np 2 parlm-bench calibrate --out $profile"
    $MPI_BOUND -np 2 "$bin/parlm-bench" calibrate --out "$profile" > "$work/calib.txt" 2>&1 ||
        { cat "$work/calib.txt"; exit 1; }
    grep -E "^(link|profile)" "$work/calib.txt"
fi
# the node as the planner sees it; 4 ranks on the 2 cores need a 4-core node whose per-core
# rates are halved (each rank has half a core): an extrapolation, labelled in the table
cluster() { # $1 cores
    printf '{"nodes": 1, "sockets": 1, "cores_per_socket": %d, "memory_per_node": %s, "intra_link": "shm", "inter_link": "shm"}\n' "$1" "$mem"
}
cluster "$cores" > "$work/cluster.json"
cluster 4 > "$work/cluster4.json"
f=$(awk -v c="$cores" 'BEGIN { print c / 4 }')
jq --argjson f "$f" '.fma_peak_f32 *= $f | .fma_peak_bf16 *= $f | .attention_flops *= $f |
    .gemm |= map(.flops *= $f) | .elementwise |= map_values(. * $f)' "$profile" > "$work/profile4.json"

# median of the step times after the warm-up steps (rank 0's lines "... | 123 ms | ...")
measured() { # $1 log
    awk -v w="$warm" '/^step / { for (i = 1; i < NF; i++) if ($(i + 1) == "ms" && $(i - 1) == "|") {
            n++; if (n > w) t[++k] = $i } }
        END { if (k == 0) { print "nan"; exit } ; for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
            if (t[j] < t[i]) { x = t[i]; t[i] = t[j]; t[j] = x }
            print (k % 2 ? t[(k + 1) / 2] : (t[k / 2] + t[k / 2 + 1]) / 2) }' "$1"
}

# one layout: name ranks threads dp-mode tp pp M schedule
printf '%-22s %11s %11s %8s  %s\n' layout predicted_ms measured_ms error% \
    "predicted terms ms: compute elementwise tp bubble p2p dp(exposed) opt"
run() {
    name=$1 np=$2 thr=$3 mode=$4 tp=$5 pp=$6 M=$7 sch=$8
    dp=$((np / (tp * pp)))
    prof=$profile cl=$work/cluster.json
    if [ "$np" -gt "$cores" ]; then prof=$work/profile4.json cl=$work/cluster4.json; fi
    z="" o=""
    [ "$mode" = zero1 ] && z=--zero1
    [ "$mode" = overlap ] && o=--overlap
    "$bin/parlm-plan" --profile "$prof" --cluster "$cl" --model "$model" --vocab 256 \
        --global-batch $((B * dp)) --seq $T --layout "$dp,$tp,$pp" --micro-batches "$M" \
        --schedule "$sch" --threads "$thr" $z $o --json "$work/p.json" > "$work/p.txt" 2>&1 ||
        { echo "$name: parlm-plan failed:"; cat "$work/p.txt"; return 0; }
    pred=$(jq '.layouts[0].estimate.step_s * 1000' "$work/p.json")
    terms=$(jq -r '.layouts[0].estimate.terms_s | [.compute, .elementwise, ."tp-allreduce", ."pp-bubble",
        ."pp-p2p", ."dp-allreduce", .optimizer] | map(. * 1000 | . * 10 | round / 10) |
        map(tostring) | join(" ")' "$work/p.json")
    args="--model $model -b $B -t $T --steps $steps --warmup 1 --val-every 0 --sample-every 0 --threads $thr"
    if [ "$np" -eq 1 ]; then
        "$bin/parlm-train" $args > "$work/t.txt" 2>&1 || true
    else
        launch=$MPI_BOUND
        [ "$np" -gt "$cores" ] && launch=$MPI
        extra=""
        [ "$np" -gt "$cores" ] && extra=--no-bind
        $launch -np "$np" "$bin/parlm-train" $args --dp "$mode" --tp "$tp" --pp "$pp" \
            --micro-batches "$M" --schedule "$sch" $extra > "$work/t.txt" 2>&1 || true
    fi
    meas=$(measured "$work/t.txt")
    if [ "$meas" = nan ]; then
        echo "$name: parlm-train gave no step times:"; tail -5 "$work/t.txt"; return 0
    fi
    err=$(awk -v p="$pred" -v m="$meas" 'BEGIN { printf "%.1f", 100 * (p - m) / m }')
    printf '%-22s %11.1f %11.1f %8s  %s\n' "$name" "$pred" "$meas" "$err" "$terms"
    echo "$err" >> "$work/errors"
}

run "1x2thr" 1 "$cores" sync 1 1 1 1f1b
run "dp2 sync" 2 1 sync 1 1 1 1f1b
run "dp2 overlap" 2 1 overlap 1 1 1 1f1b
run "dp2 zero1" 2 1 zero1 1 1 1 1f1b
run "tp2" 2 1 sync 2 1 1 1f1b
run "pp2 gpipe M4" 2 1 sync 1 2 4 gpipe
run "pp2 1f1b M4" 2 1 sync 1 2 4 1f1b
run "pp2 gpipe M8" 2 1 sync 1 2 8 gpipe
run "pp2 1f1b M8" 2 1 sync 1 2 8 1f1b
run "dp4 (4 on 2 cores)" 4 1 sync 1 1 1 1f1b
run "dp2xtp2 (4 on 2)" 4 1 sync 2 1 1 1f1b
run "dp2xpp2 M4 (4 on 2)" 4 1 sync 1 2 4 1f1b
run "tp2xpp2 M4 (4 on 2)" 4 1 sync 2 2 4 1f1b
[ -s "$work/errors" ] || { echo "no layout ran"; exit 1; }
awk '{ a = $1 < 0 ? -$1 : $1; e[++n] = a; if (a > w) w = a }
     END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (e[j] < e[i]) { x = e[i]; e[i] = e[j]; e[j] = x }
           printf "%d layouts: median |error| %.1f%%, worst %.1f%% (target: 15%%, 30%%)\n", n,
               n % 2 ? e[(n + 1) / 2] : (e[n / 2] + e[n / 2 + 1]) / 2, w }' "$work/errors"
echo "model $model, -b $B per replica, -t $T, steps after $warm warm-up; rows '(4 on 2)': 4 ranks on $cores cores, per-core rates x $f in the profile"

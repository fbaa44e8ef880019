#!/bin/sh
# bench/plan_plots.sh — issue 14's plots, drawn by gnuplot as SVG: (1) the planner's
# predictions against measured step times (a table bench/plan_validate.sh printed), and (2)
# the best layout's predicted tokens/s and parallel efficiency against node count, 1 to
# 1024 nodes, on a cluster built from one measured node profile. (2) is an EXTRAPOLATION of
# the cost model, never measured; the plot says so, and which link figures it assumed.
# Usage:
#   bench/plan_plots.sh --profile machine.json [--validation table.txt] [--out DIR]
#       [--max-nodes N] [--sockets S] [--cores-per-socket C] [--node-memory GIB]
#       [--net-alpha SECONDS] [--net-gbs GB/s] [--models "d12:512 d48:1024 ..."] [--seq T]
# A model is preset:global batch (sequences)[:sequence length, default --seq]; the default
# draws GPT-2 124M and 1.5B (batch 512 and 1024 x 1024 tokens) and a 7B Llama (2048 x 2048,
# Llama's 4M tokens a step). Needs gnuplot and jq (apt-get install gnuplot-nox jq).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${PARLM_BUILDDIR:-$here/build}
profile="" validation="" out=bench/plots max_nodes=1024
sockets=2 cps=32 mem_gib=256 net_alpha=2e-6 net_gbs=12.5 seq=1024
models="d12:512 d48:1024 llama-7b:2048:2048" # preset:global batch[:seq]
while [ $# -gt 0 ]; do
    case $1 in
    --profile) profile=$2; shift 2 ;;
    --validation) validation=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --max-nodes) max_nodes=$2; shift 2 ;;
    --sockets) sockets=$2; shift 2 ;;
    --cores-per-socket) cps=$2; shift 2 ;;
    --node-memory) mem_gib=$2; shift 2 ;;
    --net-alpha) net_alpha=$2; shift 2 ;;
    --net-gbs) net_gbs=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "plan_plots: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$profile" ] || { echo "plan_plots: --profile FILE is required (parlm-bench calibrate --out FILE)" >&2; exit 2; }
[ -r "$profile" ] || { echo "plan_plots: cannot read $profile" >&2; exit 2; }
for tool in gnuplot jq; do
    command -v $tool > /dev/null || { echo "plan_plots: needs $tool (apt-get install gnuplot-nox jq)" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# (1) predicted against measured: the rows of plan_validate's table
if [ -n "$validation" ]; then
    # "name (22 columns)  predicted measured error% terms..." -> name<TAB>predicted<TAB>measured
    awk 'NR > 1 && NF >= 4 && $1 != "layout" {
            name = substr($0, 1, 22); sub(/ +$/, "", name); split(substr($0, 23), f, " ")
            if (f[1] + 0 > 0 && f[2] + 0 > 0) printf "%s\t%s\t%s\n", name, f[1], f[2] }' \
        "$validation" > "$work/val.tsv"
    [ -s "$work/val.tsv" ] || { echo "plan_plots: no layout rows in $validation" >&2; exit 1; }
    summary=$(grep -E "median \|error\|" "$validation" | head -1 || true)
    max=$(awk -F'\t' '{ if ($2 > m) m = $2; if ($3 > m) m = $3 } END { print m * 1.2 }' "$work/val.tsv")
    min=$(awk -F'\t' 'NR == 1 { m = $2 } { if ($2 < m) m = $2; if ($3 < m) m = $3 } END { print m / 1.2 }' "$work/val.tsv")
    # points are numbered; the numbers' names are listed beside the plot (close points'
    # names would overlap)
    awk -F'\t' '{ printf "set label %d \"%d  %s\" at screen 0.75, screen %.3f font \"sans,10\" noenhanced\n",
        NR, NR, $1, 0.86 - 0.035 * NR }' "$work/val.tsv" > "$work/labels.gp"
    awk -F'\t' '{ print NR "\t" $2 "\t" $3 }' "$work/val.tsv" > "$work/val_n.tsv"
    # log axes: ticks at 1, 2, 3, 5 x 10^k inside the range
    tics=$(awk -v a="$min" -v b="$max" 'BEGIN { s = ""; for (e = 0; e < 8; e++) for (i = 1; i <= 4; i++) {
            v = (i == 1 ? 1 : i == 2 ? 2 : i == 3 ? 3 : 5) * 10 ^ e
            if (v >= a && v <= b) s = s (s == "" ? "" : ", ") v }; print s }')
    gnuplot <<EOF
set terminal svg size 1000,640 dynamic font "sans,12"
set output "$out/plan_validation.svg"
set rmargin at screen 0.72
load "$work/labels.gp"
set title "parlm-plan: predicted vs measured step time (this machine)\n$summary" noenhanced
set xlabel "measured step (ms)"
set ylabel "predicted step (ms)"
set logscale xy
set xtics ($tics)
set ytics ($tics)
set xrange [$min:$max]
set yrange [$min:$max]
set key top left
set grid
set datafile separator "\t"
plot x title "predicted = measured" lw 2 lc rgb "#444444", \
     1.15 * x title "+/-15%" dt 2 lc rgb "#888888", 0.85 * x notitle dt 2 lc rgb "#888888", \
     "$work/val_n.tsv" using 3:2 with points pt 7 ps 1 lc rgb "#1f77b4" title "layout", \
     "$work/val_n.tsv" using 3:2:1 with labels offset 0.8,0.5 left font "sans,9" notitle
EOF
    echo "wrote $out/plan_validation.svg ($(wc -l < "$work/val.tsv") layouts)"
fi

# (2) scaling: the profile's node with an assumed network link between nodes
beta=$(awk -v g="$net_gbs" 'BEGIN { printf "%.6g", 1 / (g * 1e9) }')
jq --argjson a "$net_alpha" --argjson b "$beta" \
    '.links = ([.links[] | select(.name != "net")] + [{"name": "net", "p2p_alpha": $a, "p2p_beta": $b,
        "allreduce_alpha": $a, "allreduce_beta": $b}])' "$profile" > "$work/profile.json"
intra=$(jq -r '.links[0].name' "$profile")
[ "$intra" != net ] && [ "$intra" != null ] ||
    { echo "plan_plots: $profile has no measured link (calibrate under mpirun -np 2)" >&2; exit 1; }
mem=$(awk -v g="$mem_gib" 'BEGIN { printf "%.0f", g * 1073741824 }')
printf 'model\tnodes\tranks\tdp\ttp\tpp\tM\tschedule\tzero1\toverlap\tthreads\tstep_s\ttokens_per_s\teta\tbottleneck\n' > "$out/plan_scaling.tsv"
plotcmd=""
for spec in $models; do
    model=${spec%%:*} gb=${spec#*:} mseq=$seq
    case $gb in *:*) mseq=${gb#*:} gb=${gb%%:*} ;; esac
    : > "$work/$model.dat"
    n=1
    while [ "$n" -le "$max_nodes" ]; do
        printf '{"nodes": %d, "sockets": %d, "cores_per_socket": %d, "memory_per_node": %s, "intra_link": "%s", "inter_link": "net"}\n' \
            "$n" "$sockets" "$cps" "$mem" "$intra" > "$work/cluster.json"
        # ranks a node: one (all its cores' threads), one a socket, or one a core
        best=""
        for rpn in 1 "$sockets" $((sockets * cps)); do
            if "$build/apps/parlm-plan" --profile "$work/profile.json" --cluster "$work/cluster.json" \
                   --model "$model" --global-batch "$gb" --seq "$mseq" --ranks $((n * rpn)) --top 1 \
                   --json "$work/p.json" > /dev/null 2>&1; then
                jq -r --arg m "$model" --argjson n "$n" --argjson r $((n * rpn)) \
                    '[.layouts[] | select(.excluded | not)][0] // empty |
                     [$m, $n, $r, .dp, .tp, .pp, .micro_batches, .schedule, .zero1, .overlap, .threads,
                      .estimate.step_s, .estimate.tokens_per_s, .estimate.eta, .estimate.bottleneck] | @tsv' \
                    "$work/p.json" >> "$work/cand.tsv"
            fi
        done
        if [ -s "$work/cand.tsv" ]; then
            best=$(sort -t "$(printf '\t')" -k13,13gr "$work/cand.tsv" | head -1)
            echo "$best" >> "$out/plan_scaling.tsv"
            echo "$best" | awk -F'\t' '{ print $2, $13, $14 }' >> "$work/$model.dat"
        fi
        rm -f "$work/cand.tsv"
        n=$((n * 2))
    done
    [ -s "$work/$model.dat" ] || { echo "plan_plots: no layout of $model fits any node count" >&2; exit 1; }
    plotcmd="$plotcmd${plotcmd:+, }\"$work/$model.dat\" using 1:COL with linespoints lw 2 pt 7 title \"$model (batch $gb x $mseq)\""
done
net_us=$(awk -v a="$net_alpha" 'BEGIN { printf "%.3g", a * 1e6 }')
# what a Llama curve borrows: GEMM rates of the calibrated shapes (the nearest, beyond
# them), and GPT-2's op rates for the Llama ops an older profile did not measure
note=""
case " $models" in *" llama"* | *" tinyllama"*)
    maxn=$(jq '[.gemm[].n] | max' "$profile")
    note="\\nLlama: GEMM rates of the profile's shapes (n <= $maxn; larger ones take the nearest)"
    [ "$(jq '.elementwise.rmsnorm // 0' "$profile")" != 0 ] ||
        note="$note; RMSNorm, RoPE, SwiGLU at its layernorm, residual, GELU rates (not measured in it)" ;;
esac
gnuplot <<EOF
set terminal svg size 1000,920 dynamic font "sans,12"
set output "$out/plan_scaling.svg"
set multiplot layout 2,1 title "EXTRAPOLATION from parlm's cost model, not a measurement: the best predicted layout per node count\nnode = $sockets sockets x $cps cores at the calibrated per-core rates of $(basename "$profile"), $mem_gib GiB\nbetween nodes an ASSUMED link: alpha $net_us us, $net_gbs GB/s$note" noenhanced
set logscale x 2
set xrange [0.8:$((max_nodes * 5 / 4))]
set grid
set key top left
set xlabel "nodes"
set logscale y 10
set ylabel "predicted tokens/s"
plot $(echo "$plotcmd" | sed 's/COL/2/g')
unset logscale y
set yrange [0:1.05]
set ylabel "predicted parallel efficiency (eta)"
set key bottom left
plot $(echo "$plotcmd" | sed 's/COL/3/g')
unset multiplot
EOF
echo "wrote $out/plan_scaling.svg and $out/plan_scaling.tsv (best layout per node count)"

#!/usr/bin/env bash
# .ci/slurm.sh — runs apps/slurm/*.sbatch for real on a one-node Slurm on localhost, built
# from Debian's packages and started by hand (no systemd): munged, slurmctld and slurmd with
# their own config, ports, munge socket and state in a temp dir, stopped at exit whatever
# happens. Slurm keeps no accounting here, so every check reads scontrol and the job's files.
#   sudo .ci/slurm.sh          (after the build; BUILD=dir for another build, KEEP=1 keeps $W)
set -uo pipefail
if [ "$(id -u)" -ne 0 ]; then # slurmd starts the jobs as their user: it runs as root
    exec sudo BUILD="${BUILD:-}" KEEP="${KEEP:-}" bash "$0" "$@"
fi
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
A=$PWD/$BUILD/apps
[ -x "$A/parlm-train" ] || { echo "slurm.sh: no $A/parlm-train: build first"; exit 2; }

pkgs="slurmctld slurmd slurm-client munge"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "slurm.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >/dev/null ||
        { echo "slurm.sh: apt-get install$missing failed"; exit 1; }
fi
echo "slurm.sh: $(slurmctld -V)"

W=$(mktemp -d /tmp/parlm-slurm.XXXXXX)
chmod 755 "$W" # munged wants its socket's directories searchable by all
mkdir -p "$W/munge" "$W/state" "$W/spool" "$W/log" "$W/data"
export SLURM_CONF=$W/slurm.conf
pids=()
failed=0 passed=0

show_logs() {
    for f in "$W"/log/*; do echo "--- $f (last 40 lines)"; tail -n 40 "$f"; done
}
cleanup() {
    trap - EXIT INT TERM
    if [ -f "$SLURM_CONF" ] && kill -0 "${pids[1]:-0}" 2>/dev/null; then
        squeue -h -o %i 2>/dev/null | xargs -r scancel --quiet
        for _ in $(seq 30); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 1; done
    fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # slurmd, slurmctld, then munged
        kill "${pids[i]}" 2>/dev/null && wait "${pids[i]}" 2>/dev/null
    done
    if [ "$failed" -gt 0 ] || [ -n "${KEEP:-}" ]; then echo "slurm.sh: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'echo "slurm.sh: stopped by a signal"; exit 143' INT TERM # cleanup runs: timeout(1), Ctrl-C

fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
ok() { echo "ok: $*"; passed=$((passed + 1)); }

# ---- the cluster: one node, this machine, with its real CPUs and memory; the daemons run
# in the foreground (-D), their log is their stderr in $W/log ------------------------------
mungekey -c -k "$W/munge/munge.key" || exit 1
munged -F --socket="$W/munge/socket" --key-file="$W/munge/munge.key" --log-file="$W/log/munged.log" \
    --pid-file="$W/munge/pid" --seed-file="$W/munge/seed" > "$W/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$W/munge/socket" ] && break; sleep 0.1; done
[ -S "$W/munge/socket" ] || { echo "slurm.sh: munged did not start"; show_logs; exit 1; }

H=$(hostname -s)
node=$(slurmd -C 2>/dev/null | grep '^NodeName=' | sed "s/^NodeName=[^ ]*/NodeName=$H/")
[ -n "$node" ] || node="NodeName=$H CPUs=$(nproc) RealMemory=$(free -m | awk '/^Mem:/{print $2}')"
# cred_expire: a requeued job waits that long (+1 s) before it may start again (default 120);
# sched_interval: the scheduler also looks every 2 s, not 60, so it starts then
cat > "$SLURM_CONF" <<EOF
ClusterName=parlmci
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$W/munge/socket,cred_expire=10
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=120
KillWait=20
JobRequeue=1
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
echo "slurm.sh: node: $node"
slurmctld -D -f "$SLURM_CONF" > "$W/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" > "$W/log/slurmd.out" 2>&1 &
pids+=($!)
state=""
for _ in $(seq 60); do
    state=$(sinfo -h -n "$H" -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "slurm.sh: a daemon died at start"; show_logs; exit 1; }
    done
    sleep 0.5
done
[ "$state" = idle ] || { echo "slurm.sh: node $H is '${state:-unknown}', not idle, after 30 s"; show_logs; exit 1; }
echo "slurm.sh: node $H idle"

# ---- the jobs: the real batch scripts, a tiny model on bytes of this repository's text ------
"$A/parlm-prepare" --out "$W/data" --val-tokens 8192 README.md apps/*.c > /dev/null || exit 1
export PARLM=$A DATA="$W/data/corpus_train_*.bin" VAL="$W/data/corpus_val_*.bin" MODEL=tiny
export TRAIN_ARGS="-b 4 -t 64 --grad-accum 1 --warmup 10 --val-every 0 --sample-every 0 --quiet"
export PARLM_PEAK_CACHE=$W/peak
one=$PWD/apps/slurm/train-1node.sbatch multi=$PWD/apps/slurm/train-multinode.sbatch
small=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1) # the scripts' shape, one core a rank

field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# waits until job $1 has left the queue (at most $2 seconds); its final state in $job_state
wait_gone() {
    local t=0
    job_state="" job_exit=""
    while [ -n "$(squeue -h -j "$1" 2>/dev/null)" ]; do
        [ "$t" -ge "$2" ] && { echo "slurm.sh: job $1 still queued after $2 s"; scancel "$1"; return 1; }
        sleep 1; t=$((t + 1))
    done
    job_state=$(field "$1" JobState) job_exit=$(field "$1" ExitCode)
}
# the log's steps are 1, 2, 3, ...: a resumed run continues them, it does not start over;
# prints the last step
steps_continue() {
    awk -F, 'NR > 1 && $1 != NR - 1 { print "log: line " NR ": step " $1 ", expected " NR - 1 > "/dev/stderr"; bad = 1; exit }
        END { if (!bad) print NR - 1; exit bad }' "$1"
}
report() { # a failed check shows the job's output and the daemons' logs
    fail "$1"
    echo "--- $2"; cat "$2" 2>/dev/null; show_logs
}

# (a) train-1node.sbatch runs to the end: 2 ranks by PMIx, checkpoints, the CSV log
t0=$SECONDS
RUN=$W/a STEPS=60 CKPT_EVERY=20 sbatch --parsable "${small[@]}" -o "$W/a.out" "$one" > "$W/jid" &&
    wait_gone "$(cat "$W/jid")" 120
out=$W/a.out
if [ "${job_state:-}" != COMPLETED ]; then report "(a) train-1node: job ${job_state:-?} (exit ${job_exit:-?})" "$out"
elif ! grep -q '2 processes' "$out"; then report "(a) train-1node: not 2 MPI ranks (srun --mpi=pmix)" "$out"
elif ! grep -q '^done: 60 steps' "$out"; then report "(a) train-1node: no 'done: 60 steps'" "$out"
elif [ ! -f "$W/a/ckpt_00000060.bin" ] || [ ! -f "$W/a/ckpt_00000040.bin" ]; then report "(a) train-1node: checkpoints 40 and 60 missing" "$out"
elif [ "$(steps_continue "$W/a/log.csv")" != 60 ]; then report "(a) train-1node: log.csv" "$out"
else ok "(a) train-1node.sbatch, 2 ranks, 60 steps, checkpoints and log ($((SECONDS - t0)) s)"; fi

# (b) the time limit: --signal=INT@10 of a 1-minute job reaches parlm-train through the srun
# step (no B:), which checkpoints the step it is at and stops before the limit; REQUEUE=1
# puts the job back in the queue and it resumes from that checkpoint (then it is cancelled).
# Slurm checks the limits every 30 s, so the signal comes 10-40 s early. --time and
# --signal here only scale down the script's own #SBATCH lines.
t0=$SECONDS
RUN=$W/b STEPS=10000000 CKPT_EVERY=10000000 REQUEUE=1 sbatch --parsable "${small[@]}" --time=1 \
    --signal=INT@10 -o "$W/b.out" "$one" > "$W/jid"
jid=$(cat "$W/jid")
for _ in $(seq 150); do # until the second run has resumed, or the job has ended
    grep -q '^resume: .*(step [1-9]' "$W/b.out" 2>/dev/null && break
    [ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && break
    sleep 1
done
restarts=$(field "$jid" Restarts)
scancel "$jid"
wait_gone "$jid" 60
out=$W/b.out
n=$(sed -n 's/^interrupted at step \([0-9]*\)$/\1/p' "$out" 2>/dev/null | head -1)
ck=$(printf '%s/b/ckpt_%08d.bin' "$W" "${n:-0}")
if grep -q 'DUE TO TIME LIMIT' "$out"; then report "(b) SIGINT: the job reached its time limit (no signal?)" "$out"
elif [ -z "$n" ] || [ "$n" -eq 0 ]; then report "(b) SIGINT: no 'interrupted at step N' (job ${job_state:-?})" "$out"
elif ! grep -q "^checkpoint: $ck\$" "$out"; then report "(b) SIGINT: no checkpoint of step $n" "$out"
elif ! grep -q 'exit code 130$' "$out"; then report "(b) SIGINT: parlm-train did not exit with 130 (stopped by the signal)" "$out"
elif [ "${restarts:-0}" -lt 1 ] || ! grep -q "^resume: $ck (step $n)\$" "$out"; then
    report "(b) SIGINT: REQUEUE=1 did not requeue the job to resume from step $n (restarts ${restarts:-?})" "$out"
elif ! last=$(steps_continue "$W/b/log.csv") || [ "$last" -lt "$n" ]; then report "(b) SIGINT: log.csv steps" "$out"
else ok "(b) --time=1 --signal=INT@10: checkpoint of step $n before the limit, requeued itself, resumed there ($((SECONDS - t0)) s)"; fi

# (c)+(d) train-multinode.sbatch on one node, 2 ranks (srun --mpi=pmix, ZeRO-1), requeued
# while it runs: SIGTERM checkpoints the step, the job starts again and resumes from it
t0=$SECONDS
RUN=$W/c STEPS=1000 CKPT_EVERY=250 sbatch --parsable "${small[@]}" -o "$W/c.out" "$multi" > "$W/jid"
jid=$(cat "$W/jid") requeued=0
for _ in $(seq 600); do # until the run is past step 100 (a 0.1 s poll: steps take ms)
    s=$(tail -n 1 "$W/c/log.csv" 2>/dev/null | cut -d, -f1)
    [ "${s:-0}" -gt 100 ] 2>/dev/null && { scontrol requeue "$jid" && requeued=1; break; }
    [ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && break
    sleep 0.1
done
wait_gone "$jid" 180
out=$W/c.out
n=$(sed -n 's/^interrupted at step \([0-9]*\)$/\1/p' "$out" 2>/dev/null | head -1)
if [ "$requeued" -ne 1 ]; then report "(c) requeue: the job was not running past step 100 to requeue" "$out"
elif [ "${job_state:-}" != COMPLETED ] || [ "$(field "$jid" Restarts)" != 1 ]; then
    report "(c) requeue: job ${job_state:-?} (exit ${job_exit:-?}), restarts $(field "$jid" Restarts), expected COMPLETED after 1" "$out"
elif ! grep -q '2 processes' "$out" || ! grep -q 'data-parallel zero1' "$out"; then report "(d) multinode: not 2 MPI ranks with ZeRO-1" "$out"
elif [ -z "$n" ]; then report "(c) requeue: SIGTERM did not stop the first run ('interrupted at step N')" "$out"
elif ! grep -q "^resume: .*ckpt_0*$n.bin (step $n)\$" "$out"; then report "(c) requeue: the second run did not resume from step $n" "$out"
elif ! grep -q '^done: 1000 steps' "$out"; then report "(c) requeue: no 'done: 1000 steps'" "$out"
elif [ "$(steps_continue "$W/c/log.csv")" != 1000 ]; then report "(c) requeue: log.csv steps do not continue" "$out"
else ok "(c)+(d) train-multinode.sbatch, 2 ranks: requeued at step $n, resumed there, finished 1000 steps ($((SECONDS - t0)) s)"; fi

echo "slurm.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

# tests/mpi.sh — sourced (not run) by every test script that launches MPI jobs: the one
# place that says how this suite runs mpirun. After `. tests/mpi.sh`:
#   $MPI       mpirun as root when root (--allow-run-as-root), oversubscribed (CI machines
#              have 2 cores and the tests run 3-4 ranks), over shared memory only (vader)
#              with its single-copy mechanism off: containers often forbid the
#              ptrace-style access CMA needs. MPIRUN overrides the mpirun program.
#   $MPI_BOUND the same without --oversubscribe (Open MPI then binds a rank per core).
# Sanitizer builds: Open MPI leaks from plugins it has already unloaded when LeakSanitizer
# looks, so no suppression can name them: leak checking is off under mpirun, while
# AddressSanitizer and UBSan still check every access.
mpirun=${MPIRUN:-mpirun}
if ! command -v "$mpirun" > /dev/null 2>&1; then
    echo "$0: mpirun not found (apt-get install openmpi-bin)"
    exit 1
fi
mpi_root=""
[ "$(id -u)" -ne 0 ] || mpi_root="--allow-run-as-root"
MPI_BOUND="$mpirun $mpi_root --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
MPI="$MPI_BOUND --oversubscribe"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS

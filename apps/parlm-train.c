/* apps/parlm-train.c — train a GPT on token shards or text, on one process or on many
 * (mpirun / srun: data parallelism). The training loop itself is the library's
 * (parlm/trainer.h): this program parses options, turns text into token shards, measures
 * the FMA peak, and prints what the trainer reports (rank 0: loss, throughput, MFU,
 * samples, checkpoints); Ctrl-C / SIGTERM set the trainer's cancel flag, which checkpoints
 * before exiting. Each rank's OpenMP threads are bound to its share of the node's cores. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "parlm.h"

#define DEFAULT_CORPUS "/usr/share/games/fortunes/*"

typedef struct opts {
    const char *data, *val_data, *model, *init, *ckpt_dir, *log, *encoder, *vocab, *plan, *profile;
    int B, T, steps, warmup, grad_accum, ckpt_every, val_every, val_steps, sample_every;
    int sample_len, threads, resume, bf16, quiet, stop_at, local_steps, bucket_mb, bf16_wire;
    int no_bind, overwrite, tp, pp, micro_batches, staleness;
    const char *slow_rank; /* "rotate" or a rank */
    int slow_rank_n;       /* parsed: a rank, PARLM_SLOW_ROTATE, or -1 (none) */
    double slow_ms;
    const char *dp_mode, *schedule;
    double lr, lr_min_frac, weight_decay, grad_clip, beta1, beta2, eps;
    uint64_t seed;
    double plan_step; /* --plan: the chosen layout's predicted step time, s */
} opts;

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static double wall_now(void) /* monotonic seconds, for the run's total time */
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: parlm-train [options]\n"
        "Trains a GPT-2 style model. With no --data it trains on the text of the 'fortunes'\n"
        "package (" DEFAULT_CORPUS ") with a byte tokenizer.\n\n"
        "data:\n"
        "  --data GLOB          training token shards (llm.c format) or UTF-8 text files\n"
        "  --val-data GLOB      validation shards (default: the last 5%% of text data)\n"
        "  --encoder F --vocab F  GPT-2 encoder.json / vocab.bpe for text and samples\n"
        "                       (default: byte tokenizer, vocab 256)\n"
        "model:\n"
        "  --model PRESET       tiny, small, d6, d12, d24, ... (default small); Llama:\n"
        "                       llama-15m, llama-110m, tinyllama-1.1b, llama-7b\n"
        "  --init FILE          start from an llm.c model file or a parlm checkpoint\n"
        "  --bf16               run matmuls in bf16 (f32 accumulation and master weights)\n"
        "optimization:\n"
        "  -b N                 batch size in sequences (default 8)\n"
        "  -t N                 sequence length (default 128)\n"
        "  --steps N            optimizer steps (default 1500)\n"
        "  --lr X               peak learning rate (default 1e-3)\n"
        "  --warmup N           linear warmup steps (default 20)\n"
        "  --lr-min-frac X      cosine decay ends at lr * X (default 0.1)\n"
        "  --weight-decay X     AdamW weight decay on 2-D weights (default 0.0)\n"
        "  --grad-clip X        clip the global gradient norm (default 1.0; 0 = off)\n"
        "  --beta1 X, --beta2 X AdamW moment decay rates (default 0.9, 0.95; llm.c: 0.9, 0.999)\n"
        "  --eps X              AdamW epsilon (default 1e-8)\n"
        "  --grad-accum N       micro-batches per step (default 1)\n"
        "  --seed N             initialization and sampling seed (default 1337)\n"
        "  --threads N          OpenMP threads per process (default: the process's share of\n"
        "                       the node's cores, one thread per core, bound)\n"
        "  --no-bind            leave thread placement to the OS / OMP_PROC_BIND\n"
        "data parallelism (under mpirun or srun; see README):\n"
        "  --dp MODE            auto (default: overlap across nodes, sync on one node, where\n"
        "                       copying between ranks takes the compute cores anyway), sync,\n"
        "                       overlap, zero1, local (local SGD), or async (bounded\n"
        "                       staleness: a rank runs up to --staleness steps ahead of the\n"
        "                       slowest; state in the node's shared memory, across nodes in\n"
        "                       an MPI window on rank 0 by RMA, PARLM_ALLREDUCE=mpi forces\n"
        "                       that; loss and validation printed are rank 0's, the last\n"
        "                       step's on the final model)\n"
        "  --local-steps H      local SGD: a synchronous step every H steps (default 4)\n"
        "  --staleness S        async: steps a rank may run ahead (default 0 = sync, bitwise)\n"
        "  --slow-rank R|rotate a straggler on purpose: rank R (rotate: rank step mod ranks)\n"
        "  --slow-ms X          sleeps X ms at the start of each step (for benchmarks)\n"
        "  --bucket-mb N        gradient all-reduce bucket size (default 25)\n"
        "  --bf16-wire          send gradients as bf16 (accumulate in f32)\n"
        "model parallelism (the process grid is dp x tp x pp; dp = ranks / (tp x pp)):\n"
        "  --tp N, --pp N       tensor / pipeline parallel ways (default 1: data parallelism\n"
        "                       only). -b stays the batch of one dp replica (all its ranks\n"
        "                       read the same rows): global batch = -b x dp, as with DP\n"
        "  --micro-batches M    the pipeline runs -b as M micro-batches of -b/M rows\n"
        "                       (default: pp). Each shard is averaged over its dp replicas\n"
        "                       with --dp auto, sync, overlap or zero1; no --dp local,\n"
        "                       --grad-accum, --bf16, --bf16-wire or samples with --tp/--pp\n"
        "  --schedule S         pipeline schedule: gpipe or 1f1b (default 1f1b)\n"
        "  --plan auto|FILE     take the layout (dp x tp x pp, micro-batches, schedule, --dp\n"
        "                       mode) the planner predicts fastest for these ranks and -b:\n"
        "                       auto plans now from --profile, FILE is a parlm-plan --json\n"
        "                       plan. With --plan, -b is the global batch (split over the dp\n"
        "                       replicas); --tp/--pp/--micro-batches/--schedule/--dp given\n"
        "                       too must agree with the plan's choice\n"
        "  --profile FILE       machine profile for --plan auto (parlm-bench calibrate --out)\n"
        "checkpoints and output:\n"
        "  --ckpt-dir DIR       write checkpoints here (created if missing; atomic; the last\n"
        "                       two are kept). One run at a time: DIR/lock names the holder\n"
        "  --ckpt-every N       steps between checkpoints (default 100)\n"
        "  --resume             continue from the newest valid checkpoint in --ckpt-dir (an\n"
        "                       empty one starts fresh; if none of its checkpoints loads,\n"
        "                       refuse and keep them)\n"
        "  --overwrite          start a new run in a --ckpt-dir that holds checkpoints of an\n"
        "                       earlier one, deleting them\n"
        "  --stop-at N          checkpoint and stop after step N (a later --resume goes on;\n"
        "                       for batch jobs with time limits)\n"
        "  --log FILE           per-step log: .csv, or JSON lines otherwise\n"
        "  --val-every N        steps between validation losses (default 50; 0 = off)\n"
        "  --val-steps N        batches per validation (default 10)\n"
        "  --sample-every N     steps between generated samples (default 100; 0 = off)\n"
        "  --sample-len N       tokens per sample (default 96)\n"
        "  --quiet              no per-step lines\n"
        "  -h, --help\n");
}

/* The option table lives as long as the program: the MPI agreement hashes the options
 * marked CLI_SAME (those that change the computation) after parsing. */
static cli_opt opt_table[64];
static cli opt_cli;

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.model = "small", .dp_mode = "auto", .local_steps = 4, .bucket_mb = 25,
                .B = 8, .T = 128, .steps = 1500, .warmup = 20, .grad_accum = 1,
                .ckpt_every = 100, .val_every = 50, .val_steps = 10, .sample_every = 100,
                .sample_len = 96, .lr = 1e-3, .lr_min_frac = 0.1, .grad_clip = 1.0,
                .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .seed = 1337};
    /* --tp, --pp, --schedule stay 0 / NULL when not given (apply_plan tells a given one
     * from a default), then default to 1, 1, 1f1b */
    static const char *const dp_modes[] = {"auto", "sync", "overlap", "zero1", "local", "async",
                                           NULL};
    static const char *const schedules[] = {"gpipe", "1f1b", NULL};
    enum { S = CLI_SAME, M = 1 << 16, BIG = INT_MAX };
    const cli_opt table[] = {
        CLI_S("--data", &o->data, 0), CLI_S("--val-data", &o->val_data, 0),
        CLI_S("--model", &o->model, S), CLI_S("--init", &o->init, 0),
        CLI_S("--ckpt-dir", &o->ckpt_dir, 0), CLI_S("--log", &o->log, 0),
        CLI_S("--encoder", &o->encoder, 0), CLI_S("--vocab", &o->vocab, 0),
        CLI_I("-b", &o->B, 1, M, S), CLI_I("-t", &o->T, 1, M, S),
        CLI_I("--steps", &o->steps, 0, BIG, S), CLI_I("--warmup", &o->warmup, 0, BIG, S),
        CLI_I("--grad-accum", &o->grad_accum, 1, M, S),
        CLI_I("--ckpt-every", &o->ckpt_every, 0, BIG, S),
        CLI_I("--val-every", &o->val_every, 0, BIG, S),
        CLI_I("--val-steps", &o->val_steps, 1, BIG, S),
        CLI_I("--sample-every", &o->sample_every, 0, BIG, 0),
        CLI_I("--sample-len", &o->sample_len, 0, BIG, 0),
        CLI_I("--threads", &o->threads, 0, 4096, 0), CLI_I("--stop-at", &o->stop_at, 0, BIG, S),
        CLI_D("--lr", &o->lr, 0, 1e6, S), CLI_D("--lr-min-frac", &o->lr_min_frac, 0, 1, S),
        CLI_D("--weight-decay", &o->weight_decay, 0, 1e6, S),
        CLI_D("--grad-clip", &o->grad_clip, 0, 1e30, S), CLI_F("--resume", &o->resume, S),
        CLI_F("--bf16", &o->bf16, S), CLI_F("--quiet", &o->quiet, 0),
        CLI_U64("--seed", &o->seed, S), CLI_C("--dp", &o->dp_mode, dp_modes, S),
        CLI_I("--local-steps", &o->local_steps, 1, BIG, S),
        CLI_I("--staleness", &o->staleness, 0, 1024, S),
        CLI_S("--slow-rank", &o->slow_rank, S), CLI_D("--slow-ms", &o->slow_ms, 0, 1e6, S),
        CLI_I("--bucket-mb", &o->bucket_mb, 1, 1 << 20, S),
        CLI_F("--bf16-wire", &o->bf16_wire, S), CLI_F("--no-bind", &o->no_bind, 0),
        CLI_F("--overwrite", &o->overwrite, 0),
        CLI_D("--beta1", &o->beta1, 0, 1, S), CLI_D("--beta2", &o->beta2, 0, 1, S),
        CLI_D("--eps", &o->eps, 0, 1e6, S),
        CLI_I("--tp", &o->tp, 1, 4096, S), CLI_I("--pp", &o->pp, 1, 4096, S),
        CLI_I("--micro-batches", &o->micro_batches, 0, M, S),
        CLI_C("--schedule", &o->schedule, schedules, S),
        CLI_S("--plan", &o->plan, S), CLI_S("--profile", &o->profile, S),
    };
    _Static_assert(sizeof table / sizeof table[0] <= sizeof opt_table / sizeof opt_table[0],
                   "opt_table is too small");
    memcpy(opt_table, table, sizeof table);
    opt_cli = (cli){"parlm-train", opt_table, (int)(sizeof table / sizeof table[0]), usage, NULL, 0};
    int rc = cli_parse(&opt_cli, argc, argv);
    if (rc)
        return rc < 0 ? -1 : rc;
    char *end = NULL;
    o->slow_rank_n = -1;
    if (o->slow_rank && !strcmp(o->slow_rank, "rotate")) {
        o->slow_rank_n = PARLM_SLOW_ROTATE;
    } else if (o->slow_rank) {
        long v = strtol(o->slow_rank, &end, 10);
        o->slow_rank_n = *o->slow_rank && !*end && v >= 0 && v < INT_MAX ? (int)v : -3;
    }
    const char *bad = o->slow_rank_n == -3 ? "--slow-rank takes a rank (0, 1, ...) or rotate"
                    : o->slow_rank && !(o->slow_ms > 0) ? "--slow-rank needs --slow-ms X > 0"
                    : o->staleness && strcmp(o->dp_mode, "async") ? "--staleness is for --dp async"
                    : (int64_t)o->B * o->T > 1 << 28 ? "-b x -t must be at most 2^28 tokens"
                    : o->beta1 >= 1 || o->beta2 >= 1 ? "--beta1 and --beta2 must be below 1"
                    : !(o->eps > 0) ? "--eps must be > 0"
                    : (o->resume && !o->ckpt_dir) ? "--resume needs --ckpt-dir"
                    : (o->overwrite && !o->ckpt_dir) ? "--overwrite needs --ckpt-dir"
                    : (o->overwrite && o->resume) ? "--resume and --overwrite exclude each other"
                    : (!o->encoder) != (!o->vocab) ? "--encoder and --vocab go together"
                    : o->plan && !strcmp(o->plan, "auto") && !o->profile
                        ? "--plan auto needs --profile FILE (`parlm-bench calibrate --out FILE` "
                          "measures one)"
                    : o->profile && !(o->plan && !strcmp(o->plan, "auto"))
                        ? "--profile is read by --plan auto only" : NULL;
    if (bad) {
        fprintf(stderr, "parlm-train: %s\n", bad);
        return 2;
    }
    return 0;
}

/* ---- processes: one, or MPI ranks (the trainer composes data parallelism over them) ----- */

typedef struct world {
    int rank, size, local_rank, local_size;
#ifdef PARLM_HAVE_MPI
    parlm_comm *comm;
#endif
} world;

#ifdef PARLM_HAVE_MPI
/* Started by an MPI launcher (mpirun, mpiexec, srun)? A plain run stays a single process
 * and never initializes MPI. PARLM_MPI=1 forces MPI (a singleton), 0 forbids it. */
static int launched_by_mpi(void)
{
    const char *force = getenv("PARLM_MPI");
    if (force && *force)
        return strcmp(force, "0") != 0;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}
#endif

/* A launcher that started several tasks which each see a world of one (srun --mpi=none,
 * or an MPI library that does not speak the launcher's PMI) would run N independent
 * trainings writing the same checkpoints: refused, naming the variable. */
static int launcher_mismatch(int size)
{
    static const char *const vars[] = {"SLURM_STEP_NUM_TASKS", "PMI_SIZE",
                                       "OMPI_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0] && size == 1; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) {
            fprintf(stderr, "parlm-train: the launcher started %s tasks (%s=%s) but MPI sees "
                    "1 process: each task would train alone. Launch with MPI (mpirun, or srun "
                    "--mpi=pmix) or run one task\n", v, vars[i], v);
            return 1;
        }
    }
    return 0;
}

static int world_init(world *w, int *argc, char ***argv)
{
    *w = (world){.size = 1, .local_size = 1};
#ifdef PARLM_HAVE_MPI
    if (!launched_by_mpi())
        return launcher_mismatch(1);
    parlm_comm_config cc;
    if (cli_comm_env("parlm-train", &cc))
        return 2;
    if (parlm_dist_init(argc, argv, NULL) != PARLM_OK || parlm_comm_world(&w->comm, &cc) != PARLM_OK) {
        fprintf(stderr, "parlm-train: MPI: %s\n", parlm_last_error());
        return 1;
    }
    w->rank = parlm_comm_rank(w->comm), w->size = parlm_comm_size(w->comm);
    w->local_rank = parlm_comm_local_rank(w->comm), w->local_size = parlm_comm_local_size(w->comm);
#else
    (void)argc, (void)argv;
#endif
    return launcher_mismatch(w->size);
}

static void world_end(world *w)
{
#ifdef PARLM_HAVE_MPI
    if (!w->comm)
        return;
    parlm_comm_free(w->comm);
    parlm_dist_finalize();
#else
    (void)w;
#endif
}

/* What rank 0 alone decided (its checkpoint directory, its log): every rank learns it. */
static int world_share_rc(world *w, int rc)
{
#ifdef PARLM_HAVE_MPI
    if (w->comm && w->size > 1 && parlm_comm_bcast(w->comm, &rc, sizeof rc, 0) != PARLM_OK) {
        fprintf(stderr, "parlm-train: MPI: %s\n", parlm_last_error());
        return 1;
    }
#else
    (void)w;
#endif
    return rc;
}

/* Every option marked CLI_SAME (it changes the computation), after defaults: one hash for
 * all; when they differ, option by option so the message names it, and each rank that
 * differs from rank 0 says what it has. Collective: every rank takes the same path. */
static int world_agree_options(world *w)
{
#ifdef PARLM_HAVE_MPI
    if (w->size <= 1 || parlm_comm_check_agree(w->comm, "options", cli_hash(&opt_cli)) == PARLM_OK)
        return 0;
    for (int i = 0; i < opt_cli.nopts; i++) {
        const cli_opt *op = &opt_cli.opts[i];
        if (!(op->flags & CLI_SAME))
            continue;
        uint64_t mine = cli_value_hash(op), root = mine;
        if (parlm_comm_bcast(w->comm, &root, sizeof root, 0) != PARLM_OK)
            return 1;
        char value[256];
        cli_format(op, value, sizeof value);
        if (mine != root)
            fprintf(stderr, "parlm-train: rank %d has %s %s (rank 0 differs)\n", w->rank,
                    op->name, value);
        if (parlm_comm_check_agree(w->comm, op->name, mine) != PARLM_OK) {
            if (w->rank == 0)
                fprintf(stderr, "parlm-train: ranks disagree on option %s (rank 0 has %s): "
                        "%s\n", op->name, value, parlm_last_error());
            return 1;
        }
    }
    if (w->rank == 0)
        fprintf(stderr, "parlm-train: ranks disagree on their options\n");
    return 1;
#else
    (void)w;
    return 0;
#endif
}

/* A checksum of every shard a loader reads, compared across ranks: a same-size shard with
 * other contents on one rank is caught here, not after a week of diverging training.
 * The shard count is agreed first, so the per-shard pass is the same on every rank. */
/* Binds this process's OpenMP threads to its share of the node (parlm_place_threads).
 * Returns the thread count, 0 on failure. */
static int place_threads(const world *w, int want, int bind, char *desc, size_t len)
{
    int threads = 0;
    if (parlm_place_threads(w->local_rank, w->local_size, want, bind, &threads, desc, len) !=
        PARLM_OK)
        fprintf(stderr, "parlm-train: rank %d: %s\n", w->rank, parlm_last_error());
    return threads;
}

/* ---- data ------------------------------------------------------------------------------- */

/* Files a text glob leaves out: fortune's index files and duplicate links, non-files. */
static int skipped_text_file(const char *p)
{
    size_t plen = strlen(p);
    struct stat st;
    return stat(p, &st) || !S_ISREG(st.st_mode) ||
           (plen > 4 && (!strcmp(p + plen - 4, ".dat") || !strcmp(p + plen - 3, ".u8")));
}

/* A token shard under another name (say x.dat) is still a shard: skipping it as a
 * fortune index would silently drop it, or train on the text files beside it alone. */
static int has_shard_magic(const char *p)
{
    int32_t magic = 0;
    FILE *f = fopen(p, "rb");
    int yes = f && fread(&magic, sizeof magic, 1, f) == 1 && magic == PARLM_SHARD_MAGIC;
    if (f)
        fclose(f);
    return yes;
}

/* Each file of the glob is classified on its own, by name and content: all must be token
 * shards or all text. A damaged shard is an error naming it, never a switch of the whole
 * glob to text. Returns 0 and *shards, or 1 after printing why. */
static int classify_data(const char *pattern, int *shards)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return -1;
    const char *first[3] = {NULL, NULL, NULL}; /* by parlm_data_kind */
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc && !rc; i++) {
        const char *p = g.gl_pathv[i];
        parlm_data_kind kind;
        size_t plen = strlen(p);
        int bin = plen >= 4 && !strcmp(p + plen - 4, ".bin");
        if (!bin && skipped_text_file(p) && !has_shard_magic(p))
            continue;
        if (parlm_data_probe(p, &kind) != PARLM_OK) {
            fprintf(stderr, "parlm-train: --data: %s\n", parlm_last_error());
            rc = 1;
        } else if (!first[kind]) {
            first[kind] = p;
        }
    }
    if (!rc && first[PARLM_DATA_SHARD] && first[PARLM_DATA_TEXT]) {
        fprintf(stderr, "parlm-train: --data '%s' mixes token shards (%s) and text files (%s)\n",
                pattern, first[PARLM_DATA_SHARD], first[PARLM_DATA_TEXT]);
        rc = 1;
    }
    if (!rc && !first[PARLM_DATA_SHARD] && !first[PARLM_DATA_TEXT]) {
        fprintf(stderr, "parlm-train: --data '%s' matches no regular file\n", pattern);
        rc = 1;
    }
    *shards = first[PARLM_DATA_SHARD] != NULL;
    globfree(&g);
    return rc;
}

/* The temporary directory of tokenized text: removed at every exit (atexit), error or not;
 * it is ours alone (mkdtemp), so everything in it goes. */
static char tmp_dir[4096];

static char tmp_files[2][4200]; /* train.bin and val.bin in it */

/* Until the training loop takes over SIGINT/SIGTERM (stop after the step), a signal ends
 * the process: remove the tokenized corpus first (unlink/rmdir are async-signal-safe),
 * then die of the same signal. Covers mpirun killing the other ranks when one fails. */
static void remove_tmp_and_die(int sig)
{
    unlink(tmp_files[0]);
    unlink(tmp_files[1]);
    rmdir(tmp_dir);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void remove_tmp_dir(void)
{
    if (!tmp_dir[0])
        return;
    DIR *d = opendir(tmp_dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[sizeof tmp_dir + 260];
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmp_dir, e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    rmdir(tmp_dir);
    tmp_dir[0] = 0;
}

/* A run killed with -9 cannot remove its tokenized corpus, which can be gigabytes: the
 * directory's name carries host and pid (parlm-train-HOST.PID-XXXXXX), and a later run on
 * the same host removes those of dead processes (its two files, then the directory). */
static void remove_stale_tmp_dirs(const char *base, const char *host)
{
    DIR *d = opendir(base);
    size_t hl = strlen(host);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *n = e->d_name;
        if (strncmp(n, "parlm-train-", 12) || strncmp(n + 12, host, hl) || n[12 + hl] != '.')
            continue;
        char *end;
        long pid = strtol(n + 13 + hl, &end, 10);
        if (pid <= 0 || *end != '-' || strlen(end) != 7 || kill((pid_t)pid, 0) == 0 ||
            errno != ESRCH)
            continue;
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", base, n);
        if (lstat(p, &st) || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
            continue;
        size_t pl = strlen(p);
        snprintf(p + pl, sizeof p - pl, "/train.bin");
        unlink(p);
        snprintf(p + pl, sizeof p - pl, "/val.bin");
        unlink(p);
        p[pl] = '\0';
        if (rmdir(p) == 0)
            fprintf(stderr, "parlm-train: removed %s (the tokenized text of a killed run)\n", p);
    }
    if (d)
        closedir(d);
}

/* Text files -> tokens -> a train shard and a val shard (the last 5%, at least one batch)
 * in a fresh temporary directory. */
static int tokenize_text(const char *pattern, const parlm_tokenizer *tok, int64_t batch_tokens,
                         char *dir, char *train_glob, char *val_glob, size_t len, int talk)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        fprintf(stderr, "parlm-train: no file matches '%s'\n", pattern);
        return 1;
    }
    size_t cap = 1 << 20, n = 0;
    uint16_t *toks = malloc(cap * sizeof *toks);
    int eot = parlm_tokenizer_eot(tok), rc = 0, files = 0;
    for (size_t i = 0; i < g.gl_pathc && !rc; i++) {
        const char *p = g.gl_pathv[i];
        struct stat st;
        if (skipped_text_file(p) || stat(p, &st))
            continue;
        FILE *f = fopen(p, "rb");
        char *text = f ? malloc((size_t)st.st_size + 1) : NULL;
        if (!text || fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            fprintf(stderr, "parlm-train: cannot read %s\n", p);
            rc = 1;
        }
        if (f)
            fclose(f);
        int32_t *ids = NULL;
        size_t nids = 0;
        if (!rc && parlm_tokenizer_encode(tok, text, (size_t)st.st_size, &ids, &nids) != PARLM_OK) {
            fprintf(stderr, "parlm-train: %s: %s\n", p, parlm_last_error());
            rc = 1;
        }
        while (!rc && n + nids + 1 > cap) {
            uint16_t *t = realloc(toks, (cap *= 2) * sizeof *toks);
            if (!t) {
                fprintf(stderr, "parlm-train: out of memory at %zu tokens\n", n);
                rc = 1;
            } else
                toks = t;
        }
        if (!rc) {
            if (eot >= 0)
                toks[n++] = (uint16_t)eot;
            for (size_t k = 0; k < nids; k++)
                toks[n++] = (uint16_t)ids[k];
            files++;
        }
        parlm_free(ids);
        free(text);
    }
    globfree(&g);
    size_t nval = n / 20 > (size_t)batch_tokens + 1 ? n / 20 : (size_t)batch_tokens + 1;
    if (!rc && n < nval + (size_t)batch_tokens + 1) {
        fprintf(stderr, "parlm-train: '%s' has %zu tokens, too few for batches of %lld\n",
                pattern, n, (long long)batch_tokens);
        rc = 1;
    }
    if (!rc) {
        const char *base = getenv("TMPDIR");
        base = base && *base ? base : "/tmp";
        char host[256] = "host";
        if (gethostname(host, sizeof host - 1) != 0 || !host[0] || strchr(host, '/'))
            snprintf(host, sizeof host, "host");
        host[sizeof host - 1] = '\0';
        remove_stale_tmp_dirs(base, host);
        snprintf(dir, sizeof tmp_dir, "%s/parlm-train-%s.%ld-XXXXXX", base, host,
                 (long)getpid());
        if (!mkdtemp(dir)) {
            fprintf(stderr, "parlm-train: cannot create a directory for the tokenized text "
                    "%s: %s (set TMPDIR to a writable directory)\n", dir, strerror(errno));
            dir[0] = 0;
            rc = 1;
        }
    }
    if (!rc) {
        snprintf(train_glob, len, "%s/train.bin", dir);
        snprintf(val_glob, len, "%s/val.bin", dir);
        snprintf(tmp_files[0], sizeof tmp_files[0], "%s", train_glob);
        snprintf(tmp_files[1], sizeof tmp_files[1], "%s", val_glob);
        signal(SIGINT, remove_tmp_and_die);
        signal(SIGTERM, remove_tmp_and_die);
        signal(SIGHUP, remove_tmp_and_die);
        if (parlm_shard_write(train_glob, toks, n - nval) != PARLM_OK ||
            parlm_shard_write(val_glob, toks + (n - nval), nval) != PARLM_OK) {
            fprintf(stderr, "parlm-train: %s\n", parlm_last_error());
            rc = 1;
        } else if (talk) {
            printf("data: %d text files, %zu tokens (%zu train, %zu val)\n", files, n, n - nval,
                   nval);
        }
    }
    free(toks);
    return rc;
}

/* ---- --plan: the planner picks the layout ------------------------------------------------ */

/* The node this runs on, as the planner sees it: the cores the run will use (--threads N
 * per rank: N x its ranks on the node; else every core) and all memory, ranks packed on
 * nodes; oversubscribed (more ranks than cores) counts a core per rank, as threads then
 * take turns. Link names are those `parlm-bench calibrate` measures. */
static parlm_plan_cluster this_cluster(const world *w, int threads)
{
    long cores = threads > 0 ? (long)threads * w->local_size : sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    int nodes = 1;
#ifdef PARLM_HAVE_MPI
    if (w->comm)
        nodes = parlm_comm_nodes(w->comm);
#endif
    parlm_plan_cluster cl = {.nodes = nodes > 0 ? nodes : 1, .sockets = 1,
                             .cores_per_socket = cores > w->local_size ? (int)cores : w->local_size,
                             .memory_per_node = pages > 0 && page > 0 ? (double)pages * page : 1e9};
    snprintf(cl.intra_link, sizeof cl.intra_link, "shm");
    snprintf(cl.inter_link, sizeof cl.inter_link, "%s", cl.nodes > 1 ? "net" : "shm");
    return cl;
}

/* can this trainer run the layout with these options? (parlm/trainer.h's rules: no ZeRO-1
 * with overlap; a grid takes no bf16, no --grad-accum; DP alone has no micro-batches) */
static int runnable(const opts *o, const parlm_plan_layout *y)
{
    if (y->zero1 && y->overlap)
        return 0;
    if (y->tp * y->pp == 1)
        return y->micro_batches == 1;
    return !o->bf16 && !o->bf16_wire && o->grad_accum == 1 && strcmp(o->dp_mode, "local") &&
           strcmp(o->dp_mode, "async");
}

/* The file's request against this run's: a plan for another model, batch or world is an
 * error naming the file and the field. */
static int plan_matches(const char *path, const parlm_plan_request *q,
                        const parlm_plan_request *rq)
{
    struct { const char *field, *opt; int file, here; } f[] = {
        {"model.n_layer", "--model", q->model.n_layer, rq->model.n_layer},
        {"model.n_head", "--model", q->model.n_head, rq->model.n_head},
        {"model.n_embd", "--model", q->model.n_embd, rq->model.n_embd},
        {"model.vocab", "the tokenizer's", q->model.vocab ? q->model.vocab : rq->model.vocab,
         rq->model.vocab},
        {"global_batch", "-b", q->global_batch, rq->global_batch},
        {"seq_len", "-t", q->seq_len, rq->seq_len},
        {"ranks", "the processes", q->ranks, rq->ranks},
        {"bf16", "--bf16", q->bf16, rq->bf16},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].file != f[i].here) {
            fprintf(stderr, "parlm-train: --plan %s: field %s is %d, but %s gives %d\n", path,
                    f[i].field, f[i].file, f[i].opt, f[i].here);
            return 1;
        }
    return 0;
}

typedef struct plan_choice {
    int rc, dp, tp, pp, M, schedule, zero1, overlap, considered;
    double step;
} plan_choice;

/* Rank 0: the best runnable layout of the plan (made now, or read from the file). */
static plan_choice choose_layout(const opts *o, const world *w, int vocab)
{
    plan_choice ch = {.rc = 1};
    parlm_plan_request rq = {.global_batch = o->B, .seq_len = o->T, .ranks = w->size,
                             .bf16 = o->bf16};
    if (parlm_gpt_preset(o->model, &rq.model) != PARLM_OK) {
        fprintf(stderr, "parlm-train: %s\n", parlm_last_error());
        return ch;
    }
    rq.model.vocab = vocab, rq.model.vocab_pad = 0;
    parlm_plan_entry *e = NULL;
    int n = 0;
    if (!strcmp(o->plan, "auto")) {
        parlm_plan_profile pr;
        parlm_plan_cluster cl = this_cluster(w, o->threads);
        if (parlm_plan_profile_load(o->profile, &pr) != PARLM_OK ||
            parlm_plan_enumerate(&pr, &cl, &rq, &e, &n) != PARLM_OK) {
            fprintf(stderr, "parlm-train: --plan auto: %s\n", parlm_last_error());
            return ch;
        }
    } else {
        parlm_plan_request q;
        if (parlm_plan_load(o->plan, &q, &e, &n) != PARLM_OK) {
            fprintf(stderr, "parlm-train: --plan: %s\n", parlm_last_error());
            return ch;
        }
        if (plan_matches(o->plan, &q, &rq)) {
            free(e);
            return ch;
        }
    }
    for (int i = 0; i < n; i++) {
        const parlm_plan_layout *y = &e[i].layout;
        if (e[i].excluded || !runnable(o, y))
            continue;
        ch = (plan_choice){0, y->dp, y->tp, y->pp, y->micro_batches, y->schedule, y->zero1,
                           y->overlap, n, e[i].est.step};
        break;
    }
    free(e);
    if (ch.rc)
        fprintf(stderr, "parlm-train: --plan %s: none of its %d layouts of %d ranks fits and "
                "runs here (parlm-plan lists them with the reasons)\n", o->plan, n, w->size);
    return ch;
}

/* --plan: rank 0 chooses, every rank applies the same choice to its options; a --tp, --pp,
 * --micro-batches, --schedule or --dp given too must agree. Then the defaults. */
static int apply_plan(opts *o, const world *w, int vocab)
{
    if (o->plan) {
        plan_choice ch = {.rc = 1};
        if (w->rank == 0)
            ch = choose_layout(o, w, vocab);
#ifdef PARLM_HAVE_MPI
        if (w->comm && w->size > 1 && parlm_comm_bcast(w->comm, &ch, sizeof ch, 0) != PARLM_OK) {
            fprintf(stderr, "parlm-train: MPI: %s\n", parlm_last_error());
            return 1;
        }
#endif
        if (ch.rc)
            return 1;
        const char *sched = parlm_plan_schedule_name(ch.schedule);
        const char *mode = ch.zero1 ? "zero1" : ch.overlap ? "overlap" : "sync";
        int grid = ch.tp * ch.pp > 1;
        char given[64] = "", chose[64] = "";
        if (o->tp && o->tp != ch.tp)
            snprintf(given, sizeof given, "--tp %d", o->tp), snprintf(chose, sizeof chose, "tp %d", ch.tp);
        else if (o->pp && o->pp != ch.pp)
            snprintf(given, sizeof given, "--pp %d", o->pp), snprintf(chose, sizeof chose, "pp %d", ch.pp);
        else if (o->micro_batches && o->micro_batches != ch.M)
            snprintf(given, sizeof given, "--micro-batches %d", o->micro_batches),
                snprintf(chose, sizeof chose, "%d micro-batches", ch.M);
        else if (o->schedule && ch.pp > 1 && strcmp(o->schedule, sched))
            snprintf(given, sizeof given, "--schedule %s", o->schedule),
                snprintf(chose, sizeof chose, "schedule %s", sched);
        else if (strcmp(o->dp_mode, "auto") && ch.dp > 1 && strcmp(o->dp_mode, mode))
            snprintf(given, sizeof given, "--dp %s", o->dp_mode),
                snprintf(chose, sizeof chose, "dp mode %s", mode);
        if (given[0]) {
            if (w->rank == 0)
                fprintf(stderr, "parlm-train: --plan %s chose %s, but %s was given: drop one "
                        "(or plan with parlm-plan --layout)\n", o->plan, chose, given);
            return 2;
        }
        o->tp = ch.tp, o->pp = ch.pp, o->micro_batches = grid ? ch.M : 0, o->schedule = sched;
        if (ch.dp > 1)
            o->dp_mode = mode;
        o->B = o->B / ch.dp; /* the planner's batch is global; -b is a replica's */
        o->plan_step = ch.step;
        if (w->rank == 0)
            printf("plan: %s chose dp %d x tp %d x pp %d, %d micro-batch(es), %s, dp %s "
                   "(best of %d layouts): predicted %.1f ms a step; -b %d a replica\n",
                   o->plan, ch.dp, ch.tp, ch.pp, ch.M, sched, ch.dp > 1 ? mode : "-",
                   ch.considered, ch.step * 1e3, o->B);
    }
    if (!o->tp)
        o->tp = 1;
    if (!o->pp)
        o->pp = 1;
    if (!o->schedule)
        o->schedule = "1f1b";
    return 0;
}

/* ---- the log ---------------------------------------------------------------------------- */

/* mkdir -p of path's first len characters: the directory of --log may not exist yet
 * (--ckpt-dir is created by parlm_ckpt_dir_open). */
static int make_dirs(const char *path, int len)
{
    char p[4096];
    size_t n = (size_t)len;
    if (len <= 0 || n >= sizeof p)
        return len == 0 ? 0 : -1;
    memcpy(p, path, n);
    p[n] = 0;
    for (char *s = p + 1;; s++)
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) && errno != EEXIST)
                return -1;
            if (!(*s = c))
                return 0;
        }
}

/* One log line, written through at once; a failed write (a full disk) is an error. */
static int log_printf(FILE *log, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int bad = vfprintf(log, fmt, ap) < 0;
    va_end(ap);
    if (fflush(log) != 0 || ferror(log) || bad) {
        fprintf(stderr, "parlm-train: --log %s: write failed: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}


/* ---- what the trainer says, and each step ------------------------------------------------ */

/* The library's messages: progress to stdout, problems to stderr (it sends INFO and WARN
 * from rank 0 only, an ERROR from the rank(s) that should say it). */
static void on_message(void *arg, parlm_trainer_msg kind, const char *text)
{
    (void)arg;
    if (kind == PARLM_MSG_INFO)
        printf("%s\n", text);
    else
        fprintf(stderr, "parlm-train: %s\n", text);
}

typedef struct run {
    const opts *o;
    int rank;
    FILE *log;
    int csv;
    const parlm_tokenizer *tok;
    double peak, flops_per_token, ms_sum;
    int timed;
} run;

#define SAY(...) (w.rank == 0 ? printf(__VA_ARGS__) : 0)

/* Each step: rank 0 prints its line (and the sample), the log gets a record. A failed log
 * write returns 1: the trainer stops every rank. */
static int on_step(void *arg, const parlm_trainer_report *r)
{
    run *u = arg;
    const opts *o = u->o;
    world w = {.rank = u->rank};
    double ms = r->seconds * 1e3;
    if (r->step > 1 || o->steps == 1) /* the first step pays for page faults */
        u->ms_sum += ms, u->timed++;
    double tps = (double)r->tokens / r->seconds, gflops = tps * u->flops_per_token / 1e9;
    float vl = r->val_loss;
    int rc = 0;
    if (!o->quiet || !isnan(vl)) {
        double eta = u->timed ? (o->steps - r->step) * u->ms_sum / u->timed / 1e3 : 0;
        SAY("step %5lld/%d | loss %.4f | lr %.2e | norm %.2f | %.0f tok/s | "
            "%.1f GFLOP/s %.1f%% MFU | %.0f ms | ETA %dm%02ds",
            (long long)r->step, o->steps, r->loss, r->lr, r->grad_norm, tps, gflops,
            100 * gflops / u->peak, ms, (int)eta / 60, (int)eta % 60);
        if (!isnan(vl))
            SAY(" | val %.4f", vl);
        if (r->comm_wait >= 0) /* this rank's wait for gradients after backward */
            SAY(" | comm wait %.0f ms", r->comm_wait * 1e3);
        SAY("\n");
        fflush(stdout);
    }
    if (u->log) {
        char v[32];
        if (isnan(vl))
            snprintf(v, sizeof v, "%s", u->csv ? "" : "null");
        else
            snprintf(v, sizeof v, "%.6f", vl);
        if (u->csv)
            rc |= log_printf(u->log, o->log, "%lld,%.6f,%s,%.6g,%.4f,%.1f,%.2f\n",
                             (long long)r->step, r->loss, v, r->lr, r->grad_norm, tps, ms);
        else
            rc |= log_printf(u->log, o->log, "{\"step\": %lld, \"loss\": %.6f, \"val_loss\": "
                             "%s, \"lr\": %.6g, \"grad_norm\": %.4f, \"tokens_per_s\": "
                             "%.1f, \"ms_per_step\": %.2f}\n", (long long)r->step, r->loss, v,
                             r->lr, r->grad_norm, tps, ms);
    }
    if (r->sample) {
        printf("sample: ");
        for (int i = 0; i < r->sample_n; i++) {
            const char *b;
            size_t n;
            if (parlm_tokenizer_token(u->tok, r->sample[i], &b, &n) == PARLM_OK)
                fwrite(b, 1, n, stdout);
        }
        printf("\n");
    }
    return rc;
}

/* The trainer's configuration from the options (one field per option). */
static parlm_trainer_config trainer_config(const opts *o, const world *w, int vocab, int eot)
{
    parlm_trainer_config c;
    parlm_trainer_config_default(&c);
    c.model = o->model, c.init = o->init, c.vocab = vocab, c.bf16 = o->bf16, c.seed = o->seed;
    c.B = o->B, c.T = o->T, c.grad_accum = o->grad_accum;
    c.steps = o->steps, c.stop_at = o->stop_at, c.warmup = o->warmup;
    c.lr = o->lr, c.lr_min_frac = o->lr_min_frac, c.weight_decay = o->weight_decay;
    c.grad_clip = o->grad_clip, c.beta1 = o->beta1, c.beta2 = o->beta2, c.eps = o->eps;
    c.val_every = o->val_every, c.val_steps = o->val_steps;
    c.sample_every = o->sample_every, c.sample_len = o->sample_len;
    c.sample_start = eot >= 0 ? eot : '\n', c.sample_stop = eot;
    c.ckpt_dir = o->ckpt_dir, c.ckpt_every = o->ckpt_every, c.ckpt_keep = 2;
    c.resume = o->resume, c.overwrite = o->overwrite;
#ifdef PARLM_HAVE_MPI
    c.comm = w->comm;
#else
    (void)w;
#endif
    c.dp = o->dp_mode, c.local_steps = o->local_steps, c.bucket_mb = o->bucket_mb;
    c.bf16_wire = o->bf16_wire, c.staleness = o->staleness;
    c.slow_rank = o->slow_rank_n, c.slow_ms = o->slow_ms;
    c.tp = o->tp, c.pp = o->pp, c.micro_batches = o->micro_batches, c.schedule = o->schedule;
    c.cancel = &interrupted;
    c.on_message = on_message;
    c.on_step = on_step;
    return c;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    /* line by line even into a file: "checkpoint:" lines survive a later kill -9 */
    setvbuf(stdout, NULL, _IOLBF, 0);
    opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    cli_gemm_env();
    if (parlm_isa_init() != PARLM_OK) {
        fprintf(stderr, "parlm-train: %s\n", parlm_last_error());
        return 2;
    }
    world w;
    if (world_init(&w, &argc, &argv)) {
        world_end(&w);
        return 1;
    }
    parlm_tokenizer *tok = NULL;
    if ((o.encoder ? parlm_tokenizer_load_gpt2(&tok, o.encoder, o.vocab)
                   : parlm_tokenizer_bytes(&tok)) != PARLM_OK) {
        fprintf(stderr, "parlm-train: %s\n", parlm_last_error());
        return 1;
    }
    int vocab = parlm_tokenizer_vocab_size(tok);
    if ((rc = apply_plan(&o, &w, vocab)))
        return rc;
    /* before any compute: the checkpoint directory (locked by the trainer) and the log must
     * be writable */
    parlm_trainer_config tc = trainer_config(&o, &w, vocab, parlm_tokenizer_eot(tok));
    run u = {.o = &o, .rank = w.rank, .tok = tok};
    tc.arg = &u;
    parlm_trainer *t = NULL;
    parlm_status st = parlm_trainer_open(&t, &tc);
    if (st != PARLM_OK)
        return st == PARLM_EINVAL || st == PARLM_EUNSUPPORTED ? 2 : 1;
    FILE *log = NULL;
    const char *slash = o.log ? strrchr(o.log, '/') : NULL;
    if (slash && slash > o.log && w.rank == 0)
        make_dirs(o.log, (int)(slash - o.log)); /* fopen reports what still fails */
    if (o.log && w.rank == 0 && !(log = fopen(o.log, "a"))) {
        fprintf(stderr, "parlm-train: --log %s: %s\n", o.log, strerror(errno));
        rc = 1;
    }
    if ((rc = world_share_rc(&w, rc)))
        return rc;
    char placement[64];
    int threads = place_threads(&w, o.threads, !o.no_bind, placement, sizeof placement);
    if (!threads)
        return 1;
    /* before any rank can fail alone on a setting the others do not share */
    if (world_agree_options(&w))
        return 2;

    const char *data = o.data ? o.data : DEFAULT_CORPUS;
    char train_glob[4200], val_glob[4200];
    int shards = 0, have = classify_data(data, &shards);
    if (have < 0) {
        fprintf(stderr, "parlm-train: no data matches '%s'%s\n", data,
                o.data ? "" : " (install the 'fortunes' package or pass --data)");
        return 1;
    }
    if (have > 0)
        return 1;
    if (!shards) { /* every rank tokenizes for itself: the same tokens, no shared disk needed */
        atexit(remove_tmp_dir);
        if (tokenize_text(data, tok, (int64_t)o.B * o.T * w.size, tmp_dir, train_glob, val_glob,
                          sizeof train_glob, w.rank == 0))
            return 1;
        data = train_glob;
        if (!o.val_data)
            o.val_data = val_glob;
    }

    /* the model (resumed, --init or fresh), the data, the ranks' agreement, DP */
    if ((st = parlm_trainer_start(t, data, o.val_data)) != PARLM_OK)
        return st == PARLM_EINVAL || st == PARLM_EUNSUPPORTED ? 2 : 1;
    parlm_gpt *m = parlm_trainer_model(t);
    parlm_gpt_config cfg = parlm_gpt_get_config(m);
    /* a GPT-2 model (--init, --resume) given text without its tokenizer would learn byte ids
     * as if they were its tokens, and its samples would print nothing */
    if (cfg.vocab > vocab && !shards) {
        if (w.rank == 0)
            fprintf(stderr, "parlm-train: the model has a vocabulary of %d tokens, but the text "
                    "is tokenized with %s (%d): pass the model's tokenizer, --encoder "
                    "encoder.json --vocab vocab.bpe\n", cfg.vocab,
                    o.encoder ? o.encoder : "bytes", vocab);
        return 1;
    }

    /* the roofline: what the cores can do, measured now */
    /* (best of several runs, and the best figure seen on this machine if cached: a noisy
     * measurement can only be low) */
    double sec, cached, measured = parlm_peak_gflops(threads, PARLM_PEAK_ITERS / 4, &sec);
    char cache[4096];
    double peak = parlm_peak_remember(cli_peak_cache(cache, sizeof cache), threads, measured,
                                      &cached);
    if (cached > measured)
        SAY("peak: %.0f GFLOP/s measured now, %.0f cached for this CPU (PARLM_PEAK_CACHE=off "
            "to ignore)\n", measured, cached);
    parlm_trainer_mean(t, &peak);
    peak *= w.size; /* all processes together */
    int64_t P = parlm_gpt_num_params(m);
    /* with --tp/--pp the model here is this rank's shard and a replica spans tp x pp ranks */
    int mp = o.tp * o.pp, replicas = w.size / (mp > 0 ? mp : 1);
    if (mp > 1 && parlm_gpt_config_num_params(&cfg, &P) != PARLM_OK)
        P = parlm_gpt_num_params(m);
    int64_t tokens_per_step = (int64_t)o.B * o.T * o.grad_accum * replicas;
    /* 6 per weight of every matmul (forward 2, backward 4) plus the attention's scores and
     * P.V (6 L C T: the query width is C whatever the KV heads). The lookup tables are no
     * matmul: GPT-2's wpe; Llama's wte when the head is untied (a tied wte is the head).
     * Norms and biases are counted too: < 0.1% */
    int64_t lookup = cfg.arch == PARLM_ARCH_LLAMA
                         ? (int64_t)cfg.untied_head * cfg.vocab_pad * cfg.n_embd
                         : (int64_t)cfg.max_seq * cfg.n_embd;
    double flops_per_token = 6.0 * (double)(P - lookup) +
                             6.0 * cfg.n_layer * cfg.n_embd * (double)o.T;
    uint64_t data_tokens = parlm_trainer_data_tokens(t);
    if (cfg.arch == PARLM_ARCH_LLAMA)
        SAY("llama: %d KV heads, SwiGLU %d, %s head, rope theta %g scale %g, rms eps %g\n",
            cfg.n_kv_head, cfg.ffn_hidden, cfg.untied_head ? "untied" : "tied", cfg.rope_theta,
            cfg.rope_scale, cfg.norm_eps);
    SAY("model: L%d NH%d C%d, vocab %d (padded %d), context %d: %.2fM parameters%s\n",
        cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab, cfg.vocab_pad, cfg.max_seq, P / 1e6,
        o.bf16 ? ", bf16 matmuls" : "");
    SAY("train: %llu tokens in %zu shard(s); %lld tokens/step (B=%d T=%d accum=%d x %d "
        "%s); %d steps\n", (unsigned long long)data_tokens, parlm_trainer_data_shards(t),
        (long long)tokens_per_step, o.B, o.T, o.grad_accum, replicas,
        mp > 1 ? "data-parallel replica(s)" : replicas > 1 ? "processes" : "process", o.steps);
    /* the layout: the grid's (dp x tp x pp, its schedule and micro-batches, the replicas'
     * averaging), or data parallelism's mode */
    char layout[160] = "";
    if (mp > 1)
        snprintf(layout, sizeof layout, ", grid dp %d x tp %d x pp %d (%s, %d micro-batch(es)), "
                 "dp %s", replicas, o.tp, o.pp, o.schedule, o.micro_batches > 0 ? o.micro_batches : o.pp,
                 parlm_trainer_dp_mode(t));
    else if (w.size > 1)
        snprintf(layout, sizeof layout, ", data-parallel %s", parlm_trainer_dp_mode(t));
    SAY("compute: %d process(es) x %d threads (%s%s), %s kernels, peak %.0f GFLOP/s%s\n", w.size,
        threads, placement, o.no_bind ? ", unbound" : ", bound", parlm_isa_name(parlm_isa_current()),
        peak, layout);

    size_t loglen = o.log ? strlen(o.log) : 0;
    int csv = loglen > 4 && !strcmp(o.log + loglen - 4, ".csv");
    struct stat logst;
    int64_t first_step = parlm_trainer_state(t).step;
    if (log && !first_step && fstat(fileno(log), &logst) == 0 && S_ISREG(logst.st_mode)) {
        /* a new run: a new log (opened for appending at start, so a second run locked out
         * of --ckpt-dir cannot have emptied it; a pipe or device is left as it is) */
        if (ftruncate(fileno(log), 0) != 0) {
            fprintf(stderr, "parlm-train: --log %s: %s\n", o.log, strerror(errno));
            rc = 1;
        }
    }
    if (log && !first_step && csv && !rc)
        rc = log_printf(log, o.log, "step,loss,val_loss,lr,grad_norm,tokens_per_s,ms_per_step\n");
    if ((rc = world_share_rc(&w, rc)))
        return rc;
    u.log = log, u.csv = csv, u.peak = peak, u.flops_per_token = flops_per_token;
    signal(SIGINT, on_sigint); /* Ctrl-C, or Slurm's --signal=INT@seconds */
    signal(SIGTERM, on_sigint);
    double t_start = wall_now();
    /* Ctrl-C seen by any rank: all stop after the same step (a process alone stops midway
     * and keeps the state of its last whole step) */
    while (!parlm_trainer_done(t) && !rc) {
        parlm_trainer_report r;
        st = parlm_trainer_step(t, &r);
        if (st != PARLM_OK && st != PARLM_ECANCELED)
            rc = 1; /* the trainer said why (or the log did) */
    }
    int halted = parlm_trainer_canceled(t);
    int64_t step = parlm_trainer_state(t).step;
    if (halted)
        SAY("\ninterrupted at step %lld\n", (long long)step);
    if (o.ckpt_dir && !rc && parlm_trainer_finish(t) != PARLM_OK)
        rc = 1;
    double total = wall_now() - t_start;
    if (u.timed) {
        SAY("done: %lld steps in %.1f s, %.1f ms/step, %.0f tokens/s, %.1f%% MFU",
            (long long)step, total, u.ms_sum / u.timed,
            tokens_per_step / (u.ms_sum / u.timed / 1e3),
            100 * tokens_per_step / (u.ms_sum / u.timed / 1e3) * flops_per_token / 1e9 / peak);
        if (o.plan)
            SAY(" (the plan predicted %.1f ms/step)", o.plan_step * 1e3);
        SAY("\n");
    }
    if (log && fclose(log) != 0) {
        fprintf(stderr, "parlm-train: --log %s: write failed: %s\n", o.log, strerror(errno));
        rc = 1;
    }
    parlm_trainer_free(t);
    parlm_tokenizer_free(tok);
    world_end(&w);
    remove_tmp_dir();
    return rc ? rc : halted ? 130 : 0;
}

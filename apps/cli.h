/* apps/cli.h — the one command-line parser of every parlm program (app code, not library API).
 * A program describes its options in a table of typed entries (destination, range); the
 * parser fills them in place, so the defaults are whatever the destinations held before.
 * Numbers are parsed strictly (no wrapping, no trailing junk, range checked) and every
 * error is one precise line: "--max-tokens: 4294967298 is out of range [1, 2147483647]". */
#ifndef PARLM_APPS_CLI_H
#define PARLM_APPS_CLI_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_kind {
    CLI_FLAG,   /* int: set to 1, takes no value */
    CLI_INT,    /* int in [lo, hi] */
    CLI_INT64,  /* int64_t in [lo, hi] */
    CLI_UINT64, /* uint64_t, any value in [0, 2^64-1]; a sign is refused */
    CLI_DOUBLE, /* finite double in [dlo, dhi] */
    CLI_STRING, /* const char *, borrowed from argv */
    CLI_CHOICE  /* const char *, one of choices (a NULL-terminated list) */
} cli_kind;

/* CLI_SAME marks an option every MPI rank must give the same value (it changes the
 * computation); cli_hash() covers exactly those. */
#define CLI_SAME 1

typedef struct cli_opt {
    const char *name; /* "--threads", "-b" */
    cli_kind kind;
    void *dst;
    long long lo, hi;             /* CLI_INT, CLI_INT64 */
    double dlo, dhi;              /* CLI_DOUBLE */
    const char *const *choices;   /* CLI_CHOICE */
    int flags;                    /* CLI_SAME */
} cli_opt;

/* Table entries (designated initializers keep the table readable). */
#define CLI_F(n, p, fl) {.name = n, .kind = CLI_FLAG, .dst = (p), .flags = (fl)}
#define CLI_I(n, p, a, b, fl) {.name = n, .kind = CLI_INT, .dst = (p), .lo = (a), .hi = (b), .flags = (fl)}
#define CLI_I64(n, p, a, b, fl) {.name = n, .kind = CLI_INT64, .dst = (p), .lo = (a), .hi = (b), .flags = (fl)}
#define CLI_U64(n, p, fl) {.name = n, .kind = CLI_UINT64, .dst = (p), .flags = (fl)}
#define CLI_D(n, p, a, b, fl) {.name = n, .kind = CLI_DOUBLE, .dst = (p), .dlo = (a), .dhi = (b), .flags = (fl)}
#define CLI_S(n, p, fl) {.name = n, .kind = CLI_STRING, .dst = (p), .flags = (fl)}
#define CLI_C(n, p, list, fl) {.name = n, .kind = CLI_CHOICE, .dst = (p), .choices = (list), .flags = (fl)}

typedef struct cli {
    const char *prog;           /* "parlm-train": prefix of every message */
    const cli_opt *opts;
    int nopts;
    void (*usage)(FILE *);      /* printed to stdout for -h / --help */
    const char **pos;           /* positional arguments land here (NULL: none allowed) */
    int npos;                   /* set by cli_parse */
} cli;

/* Parses argv[1..argc-1]: "--name value", "--name=value", flags, positionals ("-" and
 * anything after "--" are positional). Returns 0 to go on, -1 after printing help (exit 0),
 * 2 after printing an error to stderr (exit 2). pos, if set, needs room for argc entries. */
int cli_parse(cli *c, int argc, char **argv);

/* A 64-bit hash of the name and current value of each option marked CLI_SAME (after
 * defaults and parsing); cli_value_hash is one option's share, to find which differs. */
uint64_t cli_hash(const cli *c);
uint64_t cli_value_hash(const cli_opt *o);
/* The option's current value as text ("0.001", "(unset)"), for messages. */
void cli_format(const cli_opt *o, char *buf, size_t len);

/* ---- the library's settings from the environment ----------------------------------------
 * The library reads no environment variables: programs take them here, in one place.
 * cli_gemm_env, at start-up before any GEMM: PARLM_GEMM=openblas -> parlm_gemm_set_backend
 * (other values or unset: native; a build without OpenBLAS stays native, as it always did).
 * cli_comm_env, before each parlm_comm_world / _from_mpi: PARLM_ALLREDUCE
 * (auto|ring|shm|rd|mpi), PARLM_RING_CHUNK, PARLM_SHM_CHUNK (floats, 256 .. 2^26) and
 * PARLM_SHM_NBUF (2 .. 4096) -> *cfg (unset: 0, the library's default). Returns 0, or 2
 * after printing one line ("prog: PARLM_SHM_NBUF wants 2 .. 4096, got '1'") to stderr. */
struct parlm_comm_config;
void cli_gemm_env(void);
int cli_comm_env(const char *prog, struct parlm_comm_config *cfg);
/* The file parlm_peak_remember keeps the best FMA peak in: $PARLM_PEAK_CACHE (a file;
 * "0", "off" or "" disable the cache), else $XDG_CACHE_HOME/parlm/peak, else
 * ~/.cache/parlm/peak; written into buf (len bytes). NULL: no cache. */
const char *cli_peak_cache(char *buf, size_t len);

#endif

/* apps/cli.c — the option parser of every parlm program (see cli.h).
 * strtoll/strtoull/strtod with errno and end-pointer checks: a value either parses
 * completely into its type and range or is refused with a message; nothing wraps. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"

static const cli_opt *find(const cli *c, const char *name, size_t len)
{
    for (int i = 0; i < c->nopts; i++)
        if (strlen(c->opts[i].name) == len && !strncmp(c->opts[i].name, name, len))
            return &c->opts[i];
    return NULL;
}

/* One value into its destination; 0 or 2 (message printed). */
static int set_value(const cli *c, const cli_opt *o, const char *v)
{
    char *end = NULL;
    const char *s = v;
    while (isspace((unsigned char)*s))
        s++;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG:
        break;
    case CLI_STRING:
        *(const char **)o->dst = v;
        return 0;
    case CLI_CHOICE:
        for (const char *const *ch = o->choices; *ch; ch++)
            if (!strcmp(*ch, v)) {
                *(const char **)o->dst = *ch;
                return 0;
            }
        fprintf(stderr, "%s: %s: '%s' is not one of", c->prog, o->name, v);
        for (const char *const *ch = o->choices; *ch; ch++)
            fprintf(stderr, "%s %s", ch == o->choices ? "" : ",", *ch);
        fputc('\n', stderr);
        return 2;
    case CLI_INT:
    case CLI_INT64: {
        long long x = strtoll(s, &end, 10);
        if (end == s || *end) {
            fprintf(stderr, "%s: %s: '%s' is not an integer\n", c->prog, o->name, v);
            return 2;
        }
        if (errno == ERANGE || x < o->lo || x > o->hi) {
            fprintf(stderr, "%s: %s: %s is out of range [%lld, %lld]\n", c->prog, o->name, s,
                    o->lo, o->hi);
            return 2;
        }
        if (o->kind == CLI_INT)
            *(int *)o->dst = (int)x;
        else
            *(int64_t *)o->dst = (int64_t)x;
        return 0;
    }
    case CLI_UINT64: {
        /* strtoull accepts "-5" and negates it modulo 2^64: refuse any sign first */
        int digits = *s >= '0' && *s <= '9';
        unsigned long long x = strtoull(s, &end, 10);
        if ((*s == '-' || *s == '+') && end != s && !*end) {
            fprintf(stderr, "%s: %s: %s is out of range [0, %llu]\n", c->prog, o->name, s,
                    ULLONG_MAX);
            return 2;
        }
        if (!digits || end == s || *end) {
            fprintf(stderr, "%s: %s: '%s' is not a non-negative integer\n", c->prog, o->name, v);
            return 2;
        }
        if (errno == ERANGE) {
            fprintf(stderr, "%s: %s: %s is out of range [0, %llu]\n", c->prog, o->name, s,
                    ULLONG_MAX);
            return 2;
        }
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case CLI_DOUBLE: {
        double x = strtod(s, &end);
        if (end == s || *end) {
            fprintf(stderr, "%s: %s: '%s' is not a number\n", c->prog, o->name, v);
            return 2;
        }
        /* overflow (1e999), inf and nan are out of every range; underflow to 0 is fine */
        if ((errno == ERANGE && fabs(x) > 1) || !isfinite(x) || x < o->dlo || x > o->dhi) {
            fprintf(stderr, "%s: %s: %s is out of range [%g, %g]\n", c->prog, o->name, s, o->dlo,
                    o->dhi);
            return 2;
        }
        *(double *)o->dst = x;
        return 0;
    }
    }
    return 0;
}

/* Output lost to a full disk or a closed file must not end with exit 0 (generated text,
 * "checkpoint:" lines): checked at exit, after the program's own atexit handlers. */
static const char *exit_prog;

static void check_stdout(void)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing standard output failed%s%s\n", exit_prog,
                errno ? ": " : "", errno ? strerror(errno) : "");
        _exit(1);
    }
}

int cli_parse(cli *c, int argc, char **argv)
{
    if (!exit_prog && atexit(check_stdout) == 0)
        exit_prog = c->prog;
    c->npos = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (!c->pos) {
                fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", c->prog, a);
                return 2;
            }
            c->pos[c->npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (c->usage)
                c->usage(stdout);
            return -1;
        }
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = find(c, a, len);
        if (!o) {
            fprintf(stderr, "%s: unknown option %.*s (try --help)\n", c->prog, (int)len, a);
            return 2;
        }
        if (o->kind == CLI_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: %s takes no value\n", c->prog, o->name);
                return 2;
            }
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", c->prog, o->name);
                return 2;
            }
            v = argv[++i];
        }
        if (!*v) {
            fprintf(stderr, "%s: %s needs a value (got an empty string)\n", c->prog, o->name);
            return 2;
        }
        if (set_value(c, o, v))
            return 2;
    }
    return 0;
}

/* FNV-1a: the table is small; any decent mix would do */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}

uint64_t cli_value_hash(const cli_opt *o)
{
    uint64_t h = fnv(1469598103934665603ULL, o->name, strlen(o->name) + 1);
    switch (o->kind) {
    case CLI_FLAG:
    case CLI_INT:
        return fnv(h, o->dst, sizeof(int));
    case CLI_INT64:
    case CLI_UINT64:
        return fnv(h, o->dst, sizeof(int64_t));
    case CLI_DOUBLE:
        return fnv(h, o->dst, sizeof(double));
    case CLI_STRING:
    case CLI_CHOICE: {
        const char *s = *(const char *const *)o->dst;
        return s ? fnv(h, s, strlen(s) + 1) : fnv(h, "\xff(null)", 8);
    }
    }
    return h;
}

void cli_format(const cli_opt *o, char *buf, size_t len)
{
    switch (o->kind) {
    case CLI_FLAG:
        snprintf(buf, len, "%s", *(const int *)o->dst ? "on" : "off");
        return;
    case CLI_INT:
        snprintf(buf, len, "%d", *(const int *)o->dst);
        return;
    case CLI_INT64:
        snprintf(buf, len, "%lld", (long long)*(const int64_t *)o->dst);
        return;
    case CLI_UINT64:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)o->dst);
        return;
    case CLI_DOUBLE: { /* the shortest text that reads back exactly: 0.95, not 0.9499... */
        double x = *(const double *)o->dst;
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, x);
            if (strtod(buf, NULL) == x)
                break;
        }
        return;
    }
    case CLI_STRING:
    case CLI_CHOICE: {
        const char *s = *(const char *const *)o->dst;
        snprintf(buf, len, "%s", s ? s : "(unset)");
        return;
    }
    }
    snprintf(buf, len, "?");
}

uint64_t cli_hash(const cli *c)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < c->nopts; i++)
        if (c->opts[i].flags & CLI_SAME) {
            uint64_t v = cli_value_hash(&c->opts[i]);
            h = fnv(h, &v, sizeof v);
        }
    return h;
}

/* ---- the library's settings from the environment ---------------------------------------- */

void cli_gemm_env(void)
{
    const char *e = getenv("PARLM_GEMM");
    if (e && !strcmp(e, "openblas"))
        parlm_gemm_set_backend(PARLM_GEMM_OPENBLAS); /* EUNSUPPORTED: stays native */
}

const char *cli_peak_cache(char *buf, size_t len)
{
    const char *env = getenv("PARLM_PEAK_CACHE"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (env && (!*env || !strcmp(env, "0") || !strcmp(env, "off")))
        return NULL;
    if (env)
        n = snprintf(buf, len, "%s", env);
    else if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/parlm/peak", xdg);
    else if (home && home[0] == '/')
        n = snprintf(buf, len, "%s/.cache/parlm/peak", home);
    else
        return NULL;
    return n >= 0 && (size_t)n < len ? buf : NULL;
}

#if PARLM_WITH_MPI
/* A whole number in [lo, hi] from the variable `name`, if set and not empty. */
static int env_int64(const char *prog, const char *name, long long lo, long long hi,
                     const char *what, int64_t *out)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s wants %s, got '%s'\n", prog, name, what, s);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_comm_env(const char *prog, parlm_comm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    const char *a = getenv("PARLM_ALLREDUCE");
    if (a && *a) {
        unsigned i = 0;
        while (i <= PARLM_ALGO_MPI && strcmp(a, parlm_algo_name(i)))
            i++;
        if (i > PARLM_ALGO_MPI) {
            fprintf(stderr, "%s: PARLM_ALLREDUCE='%s': expected auto, ring, shm, rd or mpi\n",
                    prog, a);
            return 2;
        }
        cfg->algo = i;
    }
    const char *chunk = "a chunk of 256 .. 2^26 floats";
    if (env_int64(prog, "PARLM_RING_CHUNK", PARLM_COMM_CHUNK_MIN, PARLM_COMM_CHUNK_MAX, chunk,
                  &cfg->ring_chunk) ||
        env_int64(prog, "PARLM_SHM_CHUNK", PARLM_COMM_CHUNK_MIN, PARLM_COMM_CHUNK_MAX, chunk,
                  &cfg->shm_chunk) ||
        env_int64(prog, "PARLM_SHM_NBUF", PARLM_SHM_NBUF_MIN, PARLM_SHM_NBUF_MAX, "2 .. 4096",
                  &cfg->shm_nbuf))
        return 2;
    return 0;
}
#endif

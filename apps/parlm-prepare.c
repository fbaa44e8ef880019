/* apps/parlm-prepare.c — UTF-8 text files -> llm.c token shards (a validation shard,
 * then training shards). Documents are whole files, or the pieces between separator
 * lines (--doc-sep '%' for fortune files); with GPT-2's tokenizer each document starts
 * with <|endoftext|>, as llm.c's data scripts do. The first --val-tokens tokens are the
 * validation shard. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "parlm.h"

typedef struct opts {
    const char *out, *name, *tokenizer, *encoder, *vocab, *doc_sep;
    size_t val_tokens, shard_tokens;
} opts;

typedef struct writer {
    const opts *o;
    uint16_t *buf;
    size_t n;
    int in_val;        /* still filling the validation shard */
    int n_val_written; /* the validation shard is on disk */
    int train_index;
    size_t total, docs;
} writer;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: parlm-prepare [options] FILE...\n"
        "Tokenizes UTF-8 text files into llm.c token shards: OUT/NAME_val_000000.bin, then\n"
        "OUT/NAME_train_000000.bin, ... (a file '-' is standard input).\n"
        "\n"
        "  --out DIR           output directory, created if missing (default: data)\n"
        "  --name NAME         shard name prefix (default: corpus)\n"
        "  --tokenizer KIND    gpt2 or bytes (default: gpt2 when --encoder/--vocab are given,\n"
        "                      else bytes)\n"
        "  --encoder FILE      GPT-2 encoder.json\n"
        "  --vocab FILE        GPT-2 vocab.bpe\n"
        "  --doc-sep LINE      a line that separates documents (e.g. '%%' in fortune files);\n"
        "                      default: each file is one document\n"
        "  --val-tokens N      tokens in the validation shard (default 32768)\n"
        "  --shard-tokens N    tokens per training shard (default 100000000)\n"
        "  -h, --help          this text\n");
}

static int flush_shard(writer *w)
{
    char path[4096];
    if (w->in_val)
        snprintf(path, sizeof path, "%s/%s_val_000000.bin", w->o->out, w->o->name);
    else
        snprintf(path, sizeof path, "%s/%s_train_%06d.bin", w->o->out, w->o->name,
                 w->train_index++);
    if (parlm_shard_write(path, w->buf, w->n) != PARLM_OK) {
        fprintf(stderr, "parlm-prepare: %s\n", parlm_last_error());
        return 1;
    }
    w->n_val_written |= w->in_val;
    fprintf(stderr, "parlm-prepare: wrote %s (%zu tokens)\n", path, w->n);
    w->n = 0;
    return 0;
}

/* Appends one document's tokens: the first val_tokens of the corpus fill the validation
 * shard, the rest training shards of shard_tokens each. */
static int add_document(writer *w, const parlm_tokenizer *tok, const char *text, size_t len)
{
    int32_t *ids;
    size_t n;
    if (parlm_tokenizer_encode(tok, text, len, &ids, &n) != PARLM_OK) {
        fprintf(stderr, "parlm-prepare: %s\n", parlm_last_error());
        return 1;
    }
    int eot = parlm_tokenizer_eot(tok);
    for (size_t i = 0; i < n + (eot >= 0); i++) {
        int32_t id = eot >= 0 ? (i == 0 ? eot : ids[i - 1]) : ids[i];
        w->buf[w->n++] = (uint16_t)id;
        if (w->n == (w->in_val ? w->o->val_tokens : w->o->shard_tokens)) {
            if (flush_shard(w)) {
                parlm_free(ids);
                return 1;
            }
            w->in_val = 0;
        }
    }
    parlm_free(ids);
    w->total += n + (eot >= 0);
    w->docs++;
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "parlm-prepare: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || err) {
        fprintf(stderr, "parlm-prepare: %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Removes what a failed run wrote: its shards, and --out if this run created it. */
static void undo(const writer *w, int created_out)
{
    char path[4096];
    if (w->n_val_written) {
        snprintf(path, sizeof path, "%s/%s_val_000000.bin", w->o->out, w->o->name);
        unlink(path);
    }
    for (int i = 0; i < w->train_index; i++) {
        snprintf(path, sizeof path, "%s/%s_train_%06d.bin", w->o->out, w->o->name, i);
        unlink(path);
    }
    if (created_out && rmdir(w->o->out) == 0)
        fprintf(stderr, "parlm-prepare: removed %s (created by this run)\n", w->o->out);
}

/* A run stopped by a signal (Ctrl-C, a batch system's SIGTERM) is a failed run too: its
 * first shards must not pass for a whole dataset. The handler undoes it with
 * async-signal-safe calls only (unlink, rmdir, write), then dies of the signal. */
static const writer *sig_w;
static int sig_created_out;

static char *put_str(char *p, const char *end, const char *s)
{
    while (*s && p < end)
        *p++ = *s++;
    return p;
}

static char *put_num(char *p, const char *end, long v, int width)
{
    char d[24];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0 && n < 20);
    while (n < width && n < 20)
        d[n++] = '0';
    while (n > 0 && p < end)
        *p++ = d[--n];
    return p;
}

/* unlinks OUT/NAME_<kind>_<index>.bin (when final) and its temp file of this process */
static void sig_unlink(const char *kind, int index, int final)
{
    char path[4200], *end = path + sizeof path - 1, *p = path;
    p = put_str(p, end, sig_w->o->out);
    p = put_str(p, end, "/");
    p = put_str(p, end, sig_w->o->name);
    p = put_str(p, end, kind);
    p = put_num(p, end, index, 6);
    p = put_str(p, end, ".bin");
    *p = '\0';
    if (final)
        unlink(path);
    p = put_str(p, end, ".tmp.");
    p = put_num(p, end, (long)getpid(), 1);
    *p = '\0';
    unlink(path);
}

static void on_signal(int sig)
{
    const writer *w = sig_w;
    sig_unlink("_val_", 0, w->n_val_written);
    for (int i = 0; i < w->train_index; i++) /* the last may be in its temp file still */
        sig_unlink("_train_", i, 1);
    if (sig_created_out)
        rmdir(w->o->out);
    static const char msg[] = "parlm-prepare: interrupted: removed the shards of this run\n";
    ssize_t wr = write(2, msg, sizeof msg - 1);
    (void)wr;
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    opts o = {.out = "data", .name = "corpus"};
    int64_t val_tokens = 32768, shard_tokens = 100000000;
    static const char *const kinds[] = {"gpt2", "bytes", NULL};
    const char **files = malloc((size_t)argc * sizeof *files);
    const cli_opt table[] = {
        CLI_S("--out", &o.out, 0), CLI_S("--name", &o.name, 0),
        CLI_C("--tokenizer", &o.tokenizer, kinds, 0), CLI_S("--encoder", &o.encoder, 0),
        CLI_S("--vocab", &o.vocab, 0), CLI_S("--doc-sep", &o.doc_sep, 0),
        /* a shard's header counts tokens in an int32 */
        CLI_I64("--val-tokens", &val_tokens, 1, INT32_MAX, 0),
        CLI_I64("--shard-tokens", &shard_tokens, 1, INT32_MAX, 0),
    };
    cli c = {"parlm-prepare", table, (int)(sizeof table / sizeof table[0]), usage, files, 0};
    int prc = files ? cli_parse(&c, argc, argv) : 2;
    if (prc) {
        free(files);
        return prc < 0 ? 0 : prc;
    }
    o.val_tokens = (size_t)val_tokens, o.shard_tokens = (size_t)shard_tokens;
    const char *bad = c.npos == 0 ? "no input files (try --help)"
                    : !o.name[0] || strchr(o.name, '/') || strstr(o.name, "..")
                        ? "--name must be a plain file-name prefix (no '/', no '..')"
                    : !o.out[0] ? "--out needs a directory" : NULL;
    if (bad) {
        fprintf(stderr, "parlm-prepare: %s\n", bad);
        free(files);
        return 2;
    }
    if (!o.tokenizer)
        o.tokenizer = o.encoder || o.vocab ? "gpt2" : "bytes";
    parlm_tokenizer *tok = NULL;
    if (!strcmp(o.tokenizer, "gpt2")) {
        if (!o.encoder || !o.vocab) {
            fprintf(stderr, "parlm-prepare: --tokenizer gpt2 needs --encoder and --vocab\n");
            free(files);
            return 2;
        }
        if (parlm_tokenizer_load_gpt2(&tok, o.encoder, o.vocab) != PARLM_OK) {
            fprintf(stderr, "parlm-prepare: %s\n", parlm_last_error());
            free(files);
            return 1;
        }
    } else {
        parlm_tokenizer_bytes(&tok);
    }
    size_t cap = o.val_tokens > o.shard_tokens ? o.val_tokens : o.shard_tokens;
    uint16_t *buf = malloc(cap * sizeof *buf);
    if (!buf) {
        fprintf(stderr, "parlm-prepare: cannot allocate a buffer of %zu tokens (lower "
                "--shard-tokens / --val-tokens)\n", cap);
        parlm_tokenizer_free(tok);
        free(files);
        return 1;
    }
    int created_out = mkdir(o.out, 0777) == 0;
    if (!created_out && errno != EEXIST) {
        fprintf(stderr, "parlm-prepare: cannot create %s: %s\n", o.out, strerror(errno));
        free(buf);
        parlm_tokenizer_free(tok);
        free(files);
        return 1;
    }
    writer w = {.o = &o, .in_val = 1, .buf = buf};
    sig_w = &w;
    sig_created_out = created_out;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    int rc = 0;
    for (int i = 0; i < c.npos && !rc; i++) {
        size_t len;
        char *text = slurp(files[i], &len);
        if (!text) {
            rc = 1;
            break;
        }
        if (!o.doc_sep) {
            rc = add_document(&w, tok, text, len);
        } else { /* documents are the runs of lines between separator lines */
            size_t seplen = strlen(o.doc_sep), doc = 0;
            for (size_t p = 0; p <= len && !rc;) {
                char *nl = memchr(text + p, '\n', len - p);
                size_t le = nl ? (size_t)(nl - text) : len;
                int is_sep = le - p == seplen && !memcmp(text + p, o.doc_sep, seplen);
                if (is_sep || le == len) {
                    size_t end = is_sep ? p : len;
                    if (end > doc)
                        rc = add_document(&w, tok, text + doc, end - doc);
                    doc = le + 1;
                }
                p = le + 1;
            }
        }
        free(text);
    }
    if (!rc && w.in_val) {
        fprintf(stderr, "parlm-prepare: the corpus has %zu tokens, not enough for a %zu-token "
                "validation shard and training data (lower --val-tokens)\n", w.total,
                o.val_tokens);
        rc = 1;
    }
    if (!rc && w.n > 0)
        rc = flush_shard(&w);
    if (!rc && w.train_index == 0) {
        fprintf(stderr, "parlm-prepare: no training tokens left after the validation shard "
                "(lower --val-tokens)\n");
        rc = 1;
    }
    if (!rc)
        fprintf(stderr, "parlm-prepare: %zu documents, %zu tokens (%s tokenizer, vocab %d)\n",
                w.docs, w.total, o.tokenizer, parlm_tokenizer_vocab_size(tok));
    if (rc)
        undo(&w, created_out);
    free(w.buf);
    free(files);
    parlm_tokenizer_free(tok);
    return rc;
}

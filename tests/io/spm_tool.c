/* tests/io/spm_tool.c — helper of tests/io/spm_reference.sh: `spm_tool DIR` reads the
 * SentencePiece vocabulary DIR/vocab.tsv (id, piece in hex, score, token type), writes it
 * as a "llama" GGUF tokenizer (DIR/tok.gguf) and loads that back, then encodes every text
 * of DIR/cases.tsv (text in hex, SentencePiece's ids, its decoding in hex) and compares
 * ids and decoding. Prints one line per mismatch (at most 10) and a summary; exit 1 on
 * any mismatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"

static size_t unhex(const char *h, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        if (sscanf(h + i, "%2x", &v) != 1)
            break;
        out[k++] = (char)v;
    }
    return k;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: spm_tool DIR (with vocab.tsv and cases.tsv)\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.tsv", argv[1]);
    char *vocab = read_all(path);
    snprintf(path, sizeof path, "%s/cases.tsv", argv[1]);
    char *cases = read_all(path);
    if (!vocab || !cases) {
        fprintf(stderr, "spm_tool: cannot read %s/vocab.tsv and cases.tsv\n", argv[1]);
        return 2;
    }
    int n = 0;
    for (char *p = vocab; *p; p++)
        n += *p == '\n';
    char **pieces = calloc((size_t)n, sizeof *pieces);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char *line = vocab;
    for (int i = 0; i < n; i++) {
        char *nl = strchr(line, '\n'), *t1 = strchr(line, '\t'), *t2 = strchr(t1 + 1, '\t');
        pieces[i] = malloc((size_t)(t2 - t1));
        lens[i] = unhex(t1 + 1, (size_t)(t2 - t1 - 1), pieces[i]);
        char *t3;
        scores[i] = strtof(t2 + 1, &t3);
        types[i] = (int32_t)strtol(t3 + 1, NULL, 10);
        line = nl + 1;
    }
    parlm_llama_vocab v = {n, (const char *const *)pieces, lens, scores, types, 1, 2, 0, -1,
                           1, 0, 1};
    parlm_tokenizer *made, *t;
    parlm_gguf_writer *w;
    snprintf(path, sizeof path, "%s/tok.gguf", argv[1]);
    if (parlm_tokenizer_create_llama(&made, &v) || parlm_gguf_writer_create(&w) ||
        parlm_tokenizer_write_gguf(made, w) || parlm_gguf_write(w, path) ||
        parlm_tokenizer_load_gguf(&t, path)) {
        fprintf(stderr, "spm_tool: %s\n", parlm_last_error());
        return 1;
    }
    parlm_gguf_writer_free(w);
    parlm_tokenizer_free(made);
    int total = 0, bad = 0;
    size_t nids = 0;
    for (char *p = cases; *p;) {
        char *nl = strchr(p, '\n'), *t1 = strchr(p, '\t'), *t2 = strchr(t1 + 1, '\t');
        char text[8192], want_text[8192];
        size_t len = unhex(p, (size_t)(t1 - p), text);
        size_t want_len = unhex(t2 + 1, (size_t)(nl - t2 - 1), want_text);
        int32_t want[8192];
        size_t nwant = 0;
        for (char *q = t1 + 1; q < t2;)
            want[nwant++] = (int32_t)strtol(q, &q, 10);
        int32_t *ids;
        size_t nid;
        char *back = NULL;
        size_t blen = 0;
        int ok = parlm_tokenizer_encode(t, text, len, &ids, &nid) == PARLM_OK;
        ok = ok && nid == nwant && memcmp(ids, want, nid * sizeof *ids) == 0;
        ok = ok && parlm_tokenizer_decode(t, ids, nid, &back, &blen) == PARLM_OK;
        ok = ok && blen == want_len && memcmp(back, want_text, blen) == 0;
        if (!ok && bad++ < 10) {
            printf("spm_reference: '%.*s': parlm", (int)len, text);
            for (size_t i = 0; i < nid; i++)
                printf(" %d", ids[i]);
            printf(" | sentencepiece");
            for (size_t i = 0; i < nwant; i++)
                printf(" %d", want[i]);
            printf(" | decoded '%.*s' want '%.*s'\n", (int)blen, back ? back : "", (int)want_len,
                   want_text);
        }
        nids += nwant;
        parlm_free(ids);
        parlm_free(back);
        total++;
        p = nl + 1;
    }
    printf("spm_reference: %d texts (%zu ids) over a %d-piece SentencePiece BPE vocabulary: %d "
           "encoded or decoded differently\n", total, nids, n, bad);
    parlm_tokenizer_free(t);
    for (int i = 0; i < n; i++)
        free(pieces[i]);
    free(pieces), free(lens), free(scores), free(types);
    free(vocab), free(cases);
    return bad ? 1 : 0;
}

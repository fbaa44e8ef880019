/* lib/io/tokenizer_impl.h — internal: the tokenizer object shared by tokenizer.c (GPT-2
 * BPE, llm.c, bytes, GGUF dispatch) and tokenizer_spm.c (Llama's SentencePiece-style
 * vocabulary). Every kind keeps each token's decoded bytes in bytes/off, so
 * parlm_tokenizer_token and parlm_tokenizer_decode need not know the kind. */
#ifndef PARLM_LIB_TOKENIZER_IMPL_H
#define PARLM_LIB_TOKENIZER_IMPL_H
#include <stddef.h>
#include <stdint.h>

#include "parlm/gguf.h"
#include "parlm/tokenizer.h"

enum { TOK_BYTES, TOK_GPT2, TOK_LLMC, TOK_LLAMA };

typedef struct merge {
    int32_t a, b, id, rank; /* a == -1: empty slot */
} merge;

struct spm_vocab;

struct parlm_tokenizer {
    int kind, vocab, eot, bos; /* eot: <|endoftext|> or llama's EOS; -1: none */
    char *bytes;      /* all tokens' decoded bytes, concatenated */
    uint32_t *off;    /* token i is bytes[off[i] .. off[i+1]) */
    int32_t byte_id[256];
    merge *merges;    /* GPT-2: open-addressing table keyed by (a, b) */
    size_t merge_mask;
    struct spm_vocab *spm; /* TOK_LLAMA: pieces, scores, types, special ids */
};

#define MAX_VOCAB (1 << 24)

/* tokenizer_spm.c */
void parlm_spm_free(struct spm_vocab *v);
/* Reads the "llama" tokenizer.ggml.* keys of g (opened from path) into a new tokenizer. */
parlm_status parlm_spm_load_gguf(parlm_tokenizer **out, const parlm_gguf *g, const char *path);
/* Encodes text (TOK_LLAMA); add_special as parlm_tokenizer_encode_special. */
parlm_status parlm_spm_encode(const parlm_tokenizer *t, const char *text, size_t len,
                              int add_special, int32_t **ids, size_t *n);
/* Bytes of the decoded text to drop at the start: SentencePiece's dummy-prefix space
 * of the first piece that shows text (0 or 1). */
size_t parlm_spm_leading_skip(const parlm_tokenizer *t, const int32_t *ids, size_t n);
#endif

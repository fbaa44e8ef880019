/* parlm/tokenizer.h — text <-> token ids.
 * Three kinds: GPT-2's byte-level BPE (OpenAI's encoder.json + vocab.bpe), which
 * reproduces GPT-2's reference ids; llm.c's gpt2_tokenizer.bin (decode only); and a
 * byte tokenizer (vocab 256, id = byte) for corpora without vocab files.
 * Files are parsed as untrusted input: any malformed part is an error naming the file. */
#ifndef PARLM_TOKENIZER_H
#define PARLM_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct parlm_tokenizer parlm_tokenizer;

/* GPT-2 BPE from encoder.json (token -> id) and vocab.bpe (merges, in rank order). */
PARLM_API parlm_status parlm_tokenizer_load_gpt2(parlm_tokenizer **out, const char *encoder_json,
                                                 const char *vocab_bpe);
/* llm.c's gpt2_tokenizer.bin (magic 20240328, version 1 or 2): decoding only. */
PARLM_API parlm_status parlm_tokenizer_load_llmc(parlm_tokenizer **out, const char *path);
/* Bytes as tokens: vocab 256, no end-of-text token. */
PARLM_API parlm_status parlm_tokenizer_bytes(parlm_tokenizer **out);
PARLM_API void parlm_tokenizer_free(parlm_tokenizer *tok);

PARLM_API int parlm_tokenizer_vocab_size(const parlm_tokenizer *tok);
/* Id of <|endoftext|>, or -1 if the tokenizer has none. */
PARLM_API int parlm_tokenizer_eot(const parlm_tokenizer *tok);
/* 1 if parlm_tokenizer_encode works (not for a decode-only llm.c file). */
PARLM_API int parlm_tokenizer_can_encode(const parlm_tokenizer *tok);

/* Encodes len bytes of UTF-8 text (invalid UTF-8 is encoded byte by byte, never lost).
 * *ids is allocated (free with parlm_free); *n receives the count. "<|endoftext|>" in the
 * text is ordinary text, as in GPT-2's reference encoder: append parlm_tokenizer_eot()
 * yourself between documents. */
PARLM_API parlm_status parlm_tokenizer_encode(const parlm_tokenizer *tok, const char *text,
                                              size_t len, int32_t **ids, size_t *n);

/* Bytes of one token (not NUL-terminated; valid while tok lives). PARLM_EINVAL for an id
 * outside the vocabulary. */
PARLM_API parlm_status parlm_tokenizer_token(const parlm_tokenizer *tok, int32_t id,
                                             const char **bytes, size_t *len);

/* Decodes ids into *text (allocated, NUL-terminated, free with parlm_free), *len bytes. */
PARLM_API parlm_status parlm_tokenizer_decode(const parlm_tokenizer *tok, const int32_t *ids,
                                              size_t n, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif

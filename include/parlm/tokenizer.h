/* parlm/tokenizer.h — text <-> token ids.
 * Four kinds: GPT-2's byte-level BPE (OpenAI's encoder.json + vocab.bpe, or a GGUF file's
 * "gpt2" tokenizer), which reproduces GPT-2's reference ids; Llama's SentencePiece-style
 * BPE over scored pieces with byte fallback (a GGUF file's "llama" tokenizer, as
 * llama.cpp's "llama" vocabulary); llm.c's gpt2_tokenizer.bin (decode only); and a byte
 * tokenizer (vocab 256, id = byte) for corpora without vocab files.
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
typedef struct parlm_gguf_writer parlm_gguf_writer; /* parlm/gguf.h */

/* GPT-2 BPE from encoder.json (token -> id) and vocab.bpe (merges, in rank order). */
PARLM_API parlm_status parlm_tokenizer_load_gpt2(parlm_tokenizer **out, const char *encoder_json,
                                                 const char *vocab_bpe);
/* llm.c's gpt2_tokenizer.bin (magic 20240328, version 1 or 2): decoding only. */
PARLM_API parlm_status parlm_tokenizer_load_llmc(parlm_tokenizer **out, const char *path);
/* The tokenizer stored in a GGUF file's metadata, by tokenizer.ggml.model:
 * - "gpt2": tokenizer.ggml.tokens (GPT-2's byte-to-unicode spelling) and
 *   tokenizer.ggml.merges, under the same rules as parlm_tokenizer_load_gpt2 (and
 *   tokenizer.ggml.pre, if present, "gpt-2" or "default": other BPE vocabularies stored
 *   as "gpt2", such as Llama 3's, are PARLM_EUNSUPPORTED);
 * - "llama": tokenizer.ggml.tokens, .scores (f32, optional: all 0), .token_type (i32
 *   parlm_token_type, optional: all normal), .bos_token_id / .eos_token_id /
 *   .unknown_token_id / .padding_token_id (absent: llama.cpp's 1, 2, 0, none; -1 or
 *   0xffffffff: none), .add_bos_token (default true), .add_eos_token (default false),
 *   .add_space_prefix (default true).
 * Every count, index and type is checked: an error names the file and the key. */
PARLM_API parlm_status parlm_tokenizer_load_gguf(parlm_tokenizer **out, const char *path);

/* Token types of a "llama" vocabulary (the numbers of tokenizer.ggml.token_type). */
typedef enum parlm_token_type {
    PARLM_TOKEN_UNDEFINED = 0, /* treated as normal */
    PARLM_TOKEN_NORMAL = 1,
    PARLM_TOKEN_UNKNOWN = 2,      /* decodes as U+2585, as llama.cpp */
    PARLM_TOKEN_CONTROL = 3,      /* BOS, EOS, ...: never made by merges, decode to nothing */
    PARLM_TOKEN_USER_DEFINED = 4, /* a piece like a normal one */
    PARLM_TOKEN_UNUSED = 5,       /* never made by merges, decodes to nothing */
    PARLM_TOKEN_BYTE = 6,         /* spelled "<0xXX>" (uppercase hex): byte fallback */
} parlm_token_type;

/* A "llama" vocabulary given piece by piece. Pieces are spelled as SentencePiece stores
 * them (U+2581 for a space); lens may be NULL (NUL-terminated pieces); scores and types
 * may be NULL (all 0, all normal). Special ids are -1 for none. */
typedef struct parlm_llama_vocab {
    int n;
    const char *const *pieces;
    const size_t *lens;
    const float *scores;
    const int32_t *types;
    int bos, eos, unk, pad;
    int add_bos, add_eos, add_space_prefix;
} parlm_llama_vocab;

PARLM_API parlm_status parlm_tokenizer_create_llama(parlm_tokenizer **out,
                                                    const parlm_llama_vocab *v);

/* Adds the tokenizer.ggml.* keys of a "llama" tokenizer (those parlm_tokenizer_load_gguf
 * reads) to w; PARLM_EUNSUPPORTED for the other kinds. */
PARLM_API parlm_status parlm_tokenizer_write_gguf(const parlm_tokenizer *tok,
                                                  parlm_gguf_writer *w);

/* Bytes as tokens: vocab 256, no end-of-text token. */
PARLM_API parlm_status parlm_tokenizer_bytes(parlm_tokenizer **out);
PARLM_API void parlm_tokenizer_free(parlm_tokenizer *tok);

PARLM_API int parlm_tokenizer_vocab_size(const parlm_tokenizer *tok);
/* Id of <|endoftext|> (llama: the EOS token), or -1 if the tokenizer has none. */
PARLM_API int parlm_tokenizer_eot(const parlm_tokenizer *tok);
/* Id of the beginning-of-sequence token (llama), or -1. */
PARLM_API int parlm_tokenizer_bos(const parlm_tokenizer *tok);
/* 1 if parlm_tokenizer_encode works (not for a decode-only llm.c file). */
PARLM_API int parlm_tokenizer_can_encode(const parlm_tokenizer *tok);

/* Encodes len bytes of UTF-8 text (invalid UTF-8 is encoded byte by byte, never lost).
 * *ids is allocated (free with parlm_free); *n receives the count. "<|endoftext|>" in the
 * text is ordinary text, as in GPT-2's reference encoder: append parlm_tokenizer_eot()
 * yourself between documents. */
PARLM_API parlm_status parlm_tokenizer_encode(const parlm_tokenizer *tok, const char *text,
                                              size_t len, int32_t **ids, size_t *n);
/* As parlm_tokenizer_encode; with add_special != 0 also the special tokens the vocabulary
 * asks for, as llama.cpp's add_special: a "llama" tokenizer's BOS first if its
 * add_bos_token is true (the default) and EOS last if add_eos_token is. The other kinds
 * add nothing. (parlm_tokenizer_encode adds nothing, and text such as "<s>" is never
 * read as a control token.) A "llama" encoding puts a space before the text
 * (add_space_prefix), spells spaces U+2581, starts from one piece per UTF-8 character
 * and merges the adjacent pair whose concatenation is the normal or user-defined piece of
 * highest score, leftmost on ties; a character left without a piece becomes its bytes'
 * <0xXX> tokens, or the unknown token if the vocabulary has no such byte token. */
PARLM_API parlm_status parlm_tokenizer_encode_special(const parlm_tokenizer *tok,
                                                      const char *text, size_t len,
                                                      int add_special, int32_t **ids, size_t *n);

/* Bytes of one token (not NUL-terminated; valid while tok lives). PARLM_EINVAL for an id
 * outside the vocabulary. A "llama" token gives its text: U+2581 as a space, a byte
 * token its byte, a control or unused token nothing. */
PARLM_API parlm_status parlm_tokenizer_token(const parlm_tokenizer *tok, int32_t id,
                                             const char **bytes, size_t *len);

/* Decodes ids into *text (allocated, NUL-terminated, free with parlm_free), *len bytes.
 * "llama": the tokens' bytes, less the space SentencePiece's prefix put before the first
 * piece (with add_space_prefix). */
PARLM_API parlm_status parlm_tokenizer_decode(const parlm_tokenizer *tok, const int32_t *ids,
                                              size_t n, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif

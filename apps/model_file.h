/* apps/model_file.h — the model and the tokenizer a program runs (app code, shared by
 * parlm-generate and parlm-serve). A GGUF file holds both: its weights and its
 * tokenizer.ggml.* keys, so it runs with no other file; a parlm checkpoint or llm.c file
 * takes its tokenizer from options. Functions print "prog: message" and return nonzero. */
#ifndef PARLM_APPS_MODEL_FILE_H
#define PARLM_APPS_MODEL_FILE_H
#include "parlm.h"

/* 1 if path starts with GGUF's magic "GGUF" (as parlm-convert sniffs it). */
int mf_is_gguf(const char *path);

/* Where the tokenizer comes from: at most one of (encoder and vocab), tok_gguf, llmc. */
typedef struct mf_tok_opts {
    const char *encoder, *vocab; /* GPT-2's encoder.json and vocab.bpe */
    const char *tok_gguf;        /* a GGUF file's tokenizer (its tokenizer.ggml.* keys) */
    const char *llmc;            /* llm.c's gpt2_tokenizer.bin (decoding only) */
} mf_tok_opts;

/* Checks the combination of options; 2 after a message. */
int mf_tok_check(const char *prog, const mf_tok_opts *o);

/* The tokenizer of the model at model_path (vocabulary V): the options' if any, else the
 * model's own GGUF tokenizer when model_is_gguf, else bytes when V <= 256. A GGUF without
 * tokenizer keys is an error naming the file, the key and the options that give one
 * (a model GGUF of V <= 256 then runs on bytes, as its checkpoint would). */
int mf_tokenizer(const char *prog, const char *model_path, int model_is_gguf,
                 const mf_tok_opts *o, int V, parlm_tokenizer **out);

/* The prompt's tokens as the model was trained to see them: a tokenizer with a BOS token
 * (Llama) encodes with its special tokens (BOS first per tokenizer.ggml.add_bos_token);
 * the others get end-of-text (or, for bytes, a newline) first, as GPT-2 separates
 * documents. Never empty. *ids is malloc'd. */
int mf_prompt(const char *prog, const parlm_tokenizer *tok, const char *prompt, int32_t **ids,
              int *n);

/* A GGUF model for a run: with no --type (type_opt NULL) and in_place, run in place
 * (parlm_gpt_map_gguf: the matrices mapped, not copied) when the file's matrices are of one
 * type of f32, q8_0 and q4_0; otherwise (a mix, f16 or bf16 matrices, --type, a
 * tensor-parallel run) loaded into a copy of f32 weights, saying why on stderr when the file
 * could not run in place. *view tells which; *info as parlm_gpt_load_gguf_ex's. Prints the
 * error and returns 1 on failure. */
int mf_load_gguf(const char *prog, const char *path, const char *type_opt, int in_place,
                 parlm_gpt **m, parlm_gguf_load_info *info, int *view);

/* The weight type a run uses: "f32", "bf16", "q8_0" or "q4_0" given by --type, else what
 * the file stores (a GGUF's quantized or bf16 matrices), else f32. */
int mf_weight_type(const char *prog, const char *type_opt, int have_info,
                   const parlm_gguf_load_info *info, parlm_wtype *out);
#endif

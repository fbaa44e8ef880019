/* lib/serve/serve.h — internal: the inference engine behind parlm-serve. A paged KV cache
 * (fixed-size blocks from one pool, a block table per sequence), a batched forward that
 * runs the next positions of many sequences as ONE set of GEMMs, and a scheduler thread
 * that does continuous (iteration-level) batching over queued requests.
 * The one idea: every row's arithmetic is independent of the other rows of the batch (GEMM
 * with M >= 2 sums each element in an order fixed by K alone, per-row layernorm,
 * elementwise ops, per-row attention), so a request's output is bitwise the same alone or
 * in any batch. Nothing here prints or exits: errors are parlm_status + message. */
#ifndef PARLM_LIB_SERVE_H
#define PARLM_LIB_SERVE_H
#include <stddef.h>
#include <stdint.h>

#include "parlm/model.h"
#include "parlm/sample.h"
#include "parlm/status.h"
#include "parlm/tokenizer.h"

/* ---- paged KV cache ---------------------------------------------------------------- */

/* A block holds the keys and values of `block` consecutive positions of one sequence for
 * every layer: [L][2][block][C] floats. */
typedef struct ps_kv_pool {
    int L, C, block;
    int nblocks, nfree;
    int *free_list;     /* stack of free block ids */
    float *data;        /* nblocks blocks */
} ps_kv_pool;

/* A sequence's block table: blocks[i] holds positions [i*block, (i+1)*block). */
typedef struct ps_kv_seq {
    int *blocks;
    int nblocks, cap;
} ps_kv_seq;

/* A pool of as many blocks as fit in `bytes` (at least 1). */
parlm_status ps_kv_pool_init(ps_kv_pool *p, int L, int C, int block, int64_t bytes);
void ps_kv_pool_free(ps_kv_pool *p);
/* Bytes of one block. */
int64_t ps_kv_block_bytes(int L, int C, int block);
/* Makes s hold blocks for positions [0, npos): PARLM_ENOMEM (nothing taken) when the pool
 * has too few free blocks. */
parlm_status ps_kv_seq_reserve(ps_kv_pool *p, ps_kv_seq *s, int npos);
/* Returns all of s's blocks to the pool (s can be reused). */
void ps_kv_seq_release(ps_kv_pool *p, ps_kv_seq *s);
/* Keys (v = 0) or values (v = 1) of position pos, layer l: C floats. */
float *ps_kv_at(const ps_kv_pool *p, const ps_kv_seq *s, int l, int v, int pos);

/* ---- batched forward ---------------------------------------------------------------- */

/* A run of consecutive positions of one sequence in a step: tokens at positions
 * pos .. pos+n-1 (K and V of positions < pos must be in the cache); logits of the last
 * one are written to logits_out (Vp floats) when it is not NULL. */
typedef struct ps_group {
    ps_kv_seq *seq;
    const int32_t *tokens;
    int pos, n;
    float *logits_out;
    int decode; /* a generated token (n = 1, logits wanted): such groups come first, and
                 * run on the quantized copy if there is one (ps_model_set_decode_type) */
} ps_group;

typedef struct ps_model ps_model;

/* Views of m's weights (m must outlive it; its parameters must not change), scratch for
 * steps of up to max_rows positions, OpenMP teams of `threads` (0: omp_get_max_threads).
 * bf16: the matrices are read from a bf16 copy (f32 activations and accumulation).
 * m may be a tensor-parallel shard (every layer, tp > 1): then comm (borrowed; NULL for a
 * whole model) is its group's all-gather, and every rank of the group must run each
 * ps_forward on the same groups (logits_out set for the same ones): every rank then gets
 * the whole vocabulary row of logits. A Llama model (RMSNorm, RoPE at each row's position,
 * grouped-query attention: the cache keeps the n_kv_head heads' keys and values, SwiGLU)
 * runs whole (no tensor parallelism). */
parlm_status ps_model_create(ps_model **out, parlm_gpt *m, int max_rows, int threads, int bf16,
                             const parlm_gpt_tp_comm *comm);
void ps_model_free(ps_model *pm);
/* Decode rows (groups with decode set) on 8- or 4-bit weights, as parlm_gpt_set_decode_type
 * runs parlm-generate's decode: type PARLM_WT_Q8_0 or _Q4_0 keeps a copy of every layer's
 * four matrices and the head in ggml's blocks (quantized from m's weights by
 * parlm_quantize, in parlm_qlayout_current's layout), and each decode row's products are
 * quantized GEMVs of the row alone (still batch-invariant); prompt rows stay f32 (or bf16)
 * GEMMs, as parlm-generate's prefill. PARLM_WT_F32 turns it off. Not on a
 * tensor-parallel shard (PARLM_EUNSUPPORTED); input widths must be multiples of 32. */
parlm_status ps_model_set_decode_type(ps_model *pm, int type);
/* The full model's configuration (also on a shard). */
parlm_gpt_config ps_model_config(const ps_model *pm);
/* Channels of K (and of V) per position and layer that this model keeps in the KV cache:
 * n_embd, or its share of the heads on a tensor-parallel shard. */
int ps_model_kv_channels(const ps_model *pm);
/* One forward over the groups (each group's positions must have KV blocks reserved, at
 * most max_rows positions in all). On a shard: the all-reduces of the row-parallel
 * products are an all-gather of the partial sums added in rank order, the same bits
 * whatever the number of rows (batch invariance holds as in one process). */
parlm_status ps_forward(ps_model *pm, ps_kv_pool *kv, const ps_group *g, int ngroups);

/* ---- text: stop strings and UTF-8 ------------------------------------------------------ */

/* Bytes of text[0:len] that can be shown now: not an incomplete UTF-8 sequence at the end,
 * and not a suffix that could grow into one of the stop strings. */
size_t ps_text_safe_len(const char *text, size_t len, const char *const *stop, int nstop);
/* Index of the first occurrence of any stop string that ends at or after byte `from`, or
 * -1. */
int64_t ps_text_find_stop(const char *text, size_t len, size_t from, const char *const *stop,
                          int nstop);
/* Valid UTF-8 copy of text[0:len] (invalid bytes become U+FFFD); *out is malloc'd and
 * NUL-terminated. */
parlm_status ps_utf8_sanitize(const char *text, size_t len, char **out, size_t *outlen);
/* 1 if text[0:len] is valid UTF-8. */
int ps_utf8_valid(const char *text, size_t len);

/* ---- requests (the JSON body of POST /v1/completions) --------------------------------- */

#define PS_MAX_STOP 4

typedef struct ps_params {
    int32_t *prompt;         /* token ids (malloc'd) */
    int nprompt;
    int max_tokens;
    float temperature, top_p;
    int top_k;
    uint64_t seed;
    int has_seed;
    int stream;
    int include_usage;       /* stream_options.include_usage */
    char *stop[PS_MAX_STOP]; /* malloc'd, NUL-terminated, non-empty */
    int nstop;
    char *model;             /* as given (may be NULL) */
} ps_params;

/* An error for the client: HTTP status and OpenAI's error fields. */
typedef struct ps_error {
    int status;
    char message[256];
    const char *type;        /* "invalid_request_error", ... */
    const char *param;       /* NULL or the field */
    const char *code;        /* NULL or e.g. "context_length_exceeded" */
} ps_error;

/* Parses and validates body[0:len] against the model (context max_seq, vocabulary V) and
 * the tokenizer (text prompts, encoded with the vocabulary's special tokens: a Llama
 * tokenizer's BOS first; NULL or an encode-less tokenizer: token ids only).
 * 0 on success (free with ps_params_free), else -1 with *err filled. Never trusts body. */
int ps_parse_completion(const char *body, size_t len, const parlm_tokenizer *tok, int max_seq,
                        int V, ps_params *p, ps_error *err);
void ps_params_free(ps_params *p);

/* ---- the engine: queue, scheduler thread, continuous batching ---------------------------- */

typedef struct ps_engine ps_engine;

/* Tensor-parallel serving: the ranks of a group run the engine in lock-step. Rank 0 does
 * everything the one-process engine does; before each step it broadcasts the step (each
 * sequence's positions, tokens and KV block table) and every rank runs that forward on its
 * shard. The other ranks keep no state of their own but their KV pool (of the same blocks,
 * their heads' channels): block ids come from rank 0.
 *   comm:  the group's all-gather (ps_model_create's);
 *   bcast: rank 0's n int32 at buf to every rank's buf; idle = 1 when the wait may be
 *          long (between requests): it must not spin a core then. */
typedef struct ps_tp {
    parlm_gpt_tp_comm comm;
    parlm_status (*bcast)(void *arg, int32_t *buf, int64_t n, int idle);
    void *arg;
} ps_tp;

typedef struct ps_engine_cfg {
    int max_batch;      /* sequences decoding at once */
    int chunk;          /* prompt positions per step (prefill chunk) */
    int max_queue;      /* requests waiting for admission before 429 */
    int block;          /* KV block size in positions */
    int64_t kv_bytes;   /* KV pool size */
    int threads;        /* OpenMP threads of the forward (0: all) */
    int bf16;
    int qtype;          /* 0, or decode rows on PARLM_WT_Q8_0 / _Q4_0 (ps_model_set_decode_type) */
    const ps_tp *tp;    /* NULL: one process (m is a whole model); else m is a shard */
} ps_engine_cfg;

/* Why a request ended. */
typedef enum ps_finish {
    PS_RUNNING = 0, PS_FINISH_LENGTH, PS_FINISH_STOP, PS_FINISH_CANCELLED, PS_FINISH_ERROR
} ps_finish;

typedef struct ps_request ps_request;

/* Submission results (besides 0 = queued). */
enum { PS_SUBMIT_OK = 0, PS_SUBMIT_QUEUE_FULL = 1, PS_SUBMIT_TOO_BIG = 2, PS_SUBMIT_DRAINING = 3,
       PS_SUBMIT_INVALID = 4 /* sampling parameters or tokens out of range */ };

/* Starts the scheduler thread. tok (may be NULL: no text) decodes generated tokens and
 * ends generation at its end-of-text token. */
parlm_status ps_engine_create(ps_engine **out, parlm_gpt *m, const parlm_tokenizer *tok,
                              const ps_engine_cfg *cfg);
/* Stops the thread (requests still running end as cancelled; with tensor parallelism the
 * other ranks are told to stop) and frees everything; the caller's requests must all be
 * released before. */
void ps_engine_free(ps_engine *e);
/* A rank other than 0 of a tensor-parallel group: runs the forwards rank 0's engine
 * (created with the same cfg) broadcasts, until it stops (PARLM_OK) or something fails. */
parlm_status ps_engine_worker(parlm_gpt *m, const ps_engine_cfg *cfg);
/* Queues a request (PS_SUBMIT_TOO_BIG: more positions than the context or the whole KV
 * pool holds), taking ownership of p's contents (p is zeroed) on success. *out is the
 * caller's reference: drop it with ps_request_release. Returns a PS_SUBMIT_* code. */
int ps_engine_submit(ps_engine *e, ps_params *p, ps_request **out);
/* New requests are refused (PS_SUBMIT_DRAINING) from now on. */
void ps_engine_drain(ps_engine *e);
/* Cancels every request (queued or running). */
void ps_engine_cancel_all(ps_engine *e);

/* Waits up to timeout_ms for output beyond what the caller has taken (text past *sent or
 * the end). Copies the new visible text into a malloc'd *text (NUL-terminated, valid UTF-8,
 * *len bytes; NULL if none), advances *sent, and returns the finish reason (PS_RUNNING
 * while it goes on). */
ps_finish ps_request_wait(ps_request *r, int timeout_ms, size_t *sent, char **text, size_t *len);
/* Asks the engine to stop the request and free its KV blocks at its next step. */
void ps_request_cancel(ps_request *r);
void ps_request_usage(ps_request *r, int *prompt_tokens, int *completion_tokens);
/* The generated token ids so far (*n of them, copied into a malloc'd *ids). */
void ps_request_tokens(ps_request *r, int32_t **ids, int *n);
void ps_request_release(ps_request *r);

/* A snapshot for /metrics and /health. Histograms: counts per bucket (cumulative is the
 * caller's job), bounds in seconds in PS_LAT_BOUNDS. */
#define PS_LAT_BUCKETS 12
extern const double PS_LAT_BOUNDS[PS_LAT_BUCKETS];
typedef struct ps_hist {
    uint64_t count[PS_LAT_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t n;
} ps_hist;
typedef struct ps_stats {
    int queued, running, kv_blocks_used, kv_blocks_total, kv_block_positions;
    int64_t kv_block_bytes;
    uint64_t prompt_tokens, generation_tokens, steps, finished[5];
    ps_hist ttft, itl;
    int batch_rows_last;
} ps_stats;
void ps_engine_stats(ps_engine *e, ps_stats *s);

#endif

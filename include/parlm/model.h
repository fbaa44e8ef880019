/* parlm/model.h — a GPT-2 style language model: token + learned position embeddings,
 * pre-LN blocks (causal self-attention, 4x MLP with GELU), final layernorm, output
 * projection tied to the token embedding, vocabulary padded to a multiple of 128.
 *
 * Memory is honest and allocated once: one contiguous parameter buffer, one gradient
 * buffer of the same layout, AdamW state (m, v) of the same layout, and one activation
 * arena sized from (B, T) at parlm_gpt_setup. Parameter order (each layer contiguous, so
 * the gradients of the last layers form one range that backward finishes first):
 *   wte (Vp,C) | wpe (maxT,C) | for each layer l = 0..L-1:
 *     ln1w (C) ln1b (C) qkvw (3C,C) qkvb (3C) attprojw (C,C) attprojb (C)
 *     ln2w (C) ln2b (C) fcw (4C,C) fcb (4C) fcprojw (C,4C) fcprojb (C)
 *   | lnfw (C) lnfb (C)
 * Linear weights are (out, in): y = x W^T + b. Deterministic: same inputs and thread
 * count give bitwise the same results.
 * A Llama config (arch PARLM_ARCH_LLAMA) runs in the same code with RMSNorm, rotary
 * positions (no wpe), grouped-query attention, a SwiGLU MLP and no biases:
 *   wte (Vp,C) | for each layer: attn_norm (C) wq (C,C) wk (KV,C) wv (KV,C) wo (C,C)
 *     ffn_norm (C) w_gate (F,C) w_up (F,C) w_down (C,F)   [KV = n_kv_head * C/NH]
 *   | norm (C) | lm_head (Vp,C) if untied_head.
 * Init as GPT-2's: weights N(0, 0.02), wo and w_down 0.02/sqrt(2L), norms 1. Tensor
 * parallelism (tp dividing NH, NKV, F and Vp: a shard's rows of wq, wk, wv, w_gate, w_up,
 * wte, lm_head and columns of wo, w_down), pipeline stages (an untied head on the last,
 * wte on the first only), bf16 matmuls, Q8_0/Q4_0 decode and data parallelism work as
 * for GPT-2. */
#ifndef PARLM_MODEL_H
#define PARLM_MODEL_H
#include <stdint.h>

#include "nn.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct parlm_gpt_config {
    int n_layer;    /* L */
    int n_head;     /* NH */
    int n_embd;     /* C, a multiple of NH */
    int max_seq;    /* maxT, rows of wpe */
    int vocab;      /* V, real vocabulary */
    int vocab_pad;  /* Vp >= V, a multiple of 128 (0 in a request: computed) */
    /* The Llama family (RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention, no
     * biases, no position table). A GPT-2 config leaves every field below 0, so that
     * {L, NH, C, maxT, V} initializers stay GPT-2; in a Llama config 0 means the default. */
    int arch;         /* parlm_arch */
    int n_kv_head;    /* NKV heads of keys and values, dividing NH (0: NH) */
    int ffn_hidden;   /* F, hidden units of the SwiGLU MLP (0: 4C) */
    int untied_head;  /* 1: an LM head (Vp,C) of its own; 0: tied to the token embedding */
    float rope_theta; /* rotary base (0: 10000) */
    float rope_scale; /* linear position scaling, >= 1 (0: 1) */
    float norm_eps;   /* RMSNorm epsilon (0: 1e-5) */
} parlm_gpt_config;

typedef enum parlm_arch { PARLM_ARCH_GPT2 = 0, PARLM_ARCH_LLAMA = 1 } parlm_arch;

/* Presets by depth, as in llm.c: "d6" (L6 NH6 C384), "d12" (GPT-2 124M: L12 NH12 C768),
 * "d24" (L24 NH16 C1024), "d36", "d48"; and small ones for laptops and tests: "tiny" (L2
 * NH2 C64), "small" (L4 NH4 C256). Sets L, NH, C; keeps max_seq and vocab if nonzero,
 * else 1024 and 50257. Llama presets (vocab 32000 unless set): "llama-15m" (L6 NH6 NKV2
 * C288 F768, maxT 256), "llama-110m" (L12 NH12 C768 F2048, maxT 1024), both with a tied
 * head; "tinyllama-1.1b" (L22 NH32 NKV4 C2048 F5632, maxT 2048) and "llama-7b" (L32 NH32
 * C4096 F11008, maxT 4096), untied. Every field a preset does not set is reset to 0. */
PARLM_API parlm_status parlm_gpt_preset(const char *name, parlm_gpt_config *cfg);

/* Parameters a model of this config has (validating it, e.g. before trusting a file).
 * Llama: Vp C (+ Vp C untied head) + L (2C + 2C^2 + 2 C NKV hs + 3 C F) + C, hs = C/NH. */
PARLM_API parlm_status parlm_gpt_config_num_params(const parlm_gpt_config *cfg, int64_t *n);

typedef struct parlm_gpt parlm_gpt;

/* Allocates parameters (GPT-2 init: N(0, 0.02), residual projections scaled by
 * 1/sqrt(2L), layernorm 1/0, biases 0) from a seeded generator, gradients zeroed. */
PARLM_API parlm_status parlm_gpt_create(parlm_gpt **out, const parlm_gpt_config *cfg,
                                        uint64_t seed);
PARLM_API void parlm_gpt_free(parlm_gpt *m);
PARLM_API parlm_gpt_config parlm_gpt_get_config(const parlm_gpt *m);

PARLM_API int64_t parlm_gpt_num_params(const parlm_gpt *m);
PARLM_API float *parlm_gpt_params(parlm_gpt *m);
PARLM_API float *parlm_gpt_grads(parlm_gpt *m);
/* Allocates zeroed AdamW moments (parlm_gpt_update does so at its first call). */
PARLM_API parlm_status parlm_gpt_init_optimizer(parlm_gpt *m);
/* AdamW moments: NULL until allocated. */
PARLM_API float *parlm_gpt_adam_m(parlm_gpt *m);
PARLM_API float *parlm_gpt_adam_v(parlm_gpt *m);
/* Number of AdamW steps taken (t of the bias correction). */
PARLM_API int64_t parlm_gpt_get_step(const parlm_gpt *m);
PARLM_API parlm_status parlm_gpt_set_step(parlm_gpt *m, int64_t step);

/* The parameter tensors in buffer order (GPT-2: 2 + 12 L + 2 of them; Llama: 1 + 9 L + 1,
 * + 1 untied head): name ("wte", "qkvw", ..., "wq", "w_gate", ...),
 * layer (-1 embeddings, L final layernorm), offset and count in floats. */
PARLM_API int parlm_gpt_num_tensors(const parlm_gpt *m);
PARLM_API parlm_status parlm_gpt_tensor_info(const parlm_gpt *m, int i, const char **name,
                                             int *layer, int64_t *offset, int64_t *count);

/* Sizes the activation arena for batches of B sequences of T <= maxT tokens (freeing any
 * earlier arena). training = 0 skips the buffers only backward needs. */
PARLM_API parlm_status parlm_gpt_setup(parlm_gpt *m, int B, int T, int training);

/* Matmuls in bf16 where that is faster, with f32 accumulation (master weights, gradients
 * and optimizer state stay f32). One-row products (decode) always stream a bf16 copy of
 * the weights: half the memory traffic. GEMMs follow the CPU's bf16 path (parlm/isa.h,
 * chosen by measured speed, read at this call): "dot" rounds weights and activations to
 * bf16 and multiplies bf16 pairs; "widen" (bf16 no faster than f32 here) runs them on the
 * f32 weights with the f32 kernels, unrounded: the f32 step's speed and numbers. Off by
 * default. */
PARLM_API parlm_status parlm_gpt_set_bf16(parlm_gpt *m, int on);

/* Decode (one-token parlm_gpt_infer calls) on 8- or 4-bit weights: type PARLM_WT_Q8_0 or
 * PARLM_WT_Q4_0 (parlm/quant.h) keeps a copy of every layer's four matrices and of the LM
 * head in ggml's blocks (repacked 8 rows at a time, as parlm_qrepack), re-made after the
 * parameters change, and runs the products as integer dots against the input row
 * quantized to 8 bits per 32 (as parlm_qgemv_repacked): about
 * 0.27 (Q8_0) or 0.14 (Q4_0) of f32's weight traffic. PARLM_WT_F32 turns it off (decode
 * then follows parlm_gpt_set_bf16). Prefill, training and the f32 master weights are
 * unchanged. The products' input widths (n_embd, and on a tensor-parallel shard
 * n_embd/tp and 4 n_embd/tp; Llama: n_embd and ffn_hidden, /tp on a shard) must be
 * multiples of 32 (PARLM_EINVAL naming the width); another type is PARLM_EUNSUPPORTED.
 * Llama's quantized products are wq|wk|wv, wo, w_gate|w_up, w_down and the head. */
PARLM_API parlm_status parlm_gpt_set_decode_type(parlm_gpt *m, int type);

/* Forward of inputs (B,T). With targets (B,T): *loss = mean cross-entropy; without,
 * *loss is left alone (may be NULL). Tokens must lie in [0, V). */
PARLM_API parlm_status parlm_gpt_forward(parlm_gpt *m, const int32_t *inputs,
                                         const int32_t *targets, float *loss);
/* Logits (B,T,Vp) of the last forward (invalid after backward, which reuses them); on a
 * tensor-parallel shard its vocab slice, (B,T,Vp/tp). */
PARLM_API const float *parlm_gpt_logits(const parlm_gpt *m);

/* Backward of the last forward (which must have had targets): grads += dloss/dparams.
 * loss_scale multiplies dloss (1/accumulation steps for gradient accumulation). */
PARLM_API parlm_status parlm_gpt_backward(parlm_gpt *m, float loss_scale);
/* Sets the gradients to 0 without a pass over them: they are marked, and the next backward
 * writes rather than adds (every other reader, parlm_gpt_grads included, sees zeros). A
 * pointer from parlm_gpt_grads taken earlier must not be read between this call (or
 * parlm_gpt_optimizer_step*) and the next backward. */
PARLM_API parlm_status parlm_gpt_zero_grad(parlm_gpt *m);

/* *norm = L2 norm of all gradients. */
PARLM_API parlm_status parlm_gpt_grad_norm(parlm_gpt *m, float *norm);

/* One AdamW step over all parameters; weight decay applies to the 2-D weights only
 * (linear layers and embeddings), not to biases and layernorm. grad_scale multiplies the
 * gradients first (clipping: min(1, clip / norm)). */
PARLM_API parlm_status parlm_gpt_update(parlm_gpt *m, const parlm_adamw_cfg *cfg,
                                        float grad_scale);

/* The optimizer's step, fused: with clip > 0, one pass for *norm (L2 norm of all
 * gradients) and the clipping factor min(1, clip / norm); then one pass that does AdamW
 * as parlm_gpt_update (bitwise the same parameters and moments) and leaves the gradients
 * 0 as parlm_gpt_zero_grad does (marked, not written). With clip = 0 there is no clipping and
 * *norm comes from that same pass, for free. A non-finite norm is PARLM_EINVAL: with
 * clip > 0 before anything changed; with clip = 0 after the step was taken (the caller
 * should stop). The model's step counter advances. */
PARLM_API parlm_status parlm_gpt_optimizer_step(parlm_gpt *m, const parlm_adamw_cfg *cfg,
                                                float clip, float *norm);

/* Sharded models (see parlm_gpt_shard below): *sumsq = sum of squares of the gradients,
 * of the tensors this shard owns only if owned_only (summed over the grid: the square of
 * the global norm). Then parlm_gpt_optimizer_step_scale takes the fused AdamW step (and
 * zeroes the gradients, as parlm_gpt_zero_grad) with the clipping factor the caller derived from that norm. */
PARLM_API parlm_status parlm_gpt_grad_sumsq(parlm_gpt *m, int owned_only, double *sumsq);
PARLM_API parlm_status parlm_gpt_optimizer_step_scale(parlm_gpt *m, const parlm_adamw_cfg *cfg,
                                                      float grad_scale);

/* Asked between layers of parlm_gpt_forward and parlm_gpt_backward: when fn(arg) returns
 * nonzero, the call stops with PARLM_ECANCELED, leaving parameters and optimizer state as
 * they were (gradients and activations are then partial: discard the step). So a program
 * can stop on a signal within a layer's time even when one step takes minutes. NULL
 * disables (the default). Not for data parallelism: ranks must stop at the same point. */
typedef int (*parlm_cancel_fn)(void *arg);
PARLM_API parlm_status parlm_gpt_set_cancel(parlm_gpt *m, parlm_cancel_fn fn, void *arg);

/* ---- model parallelism: a parlm_gpt holding one shard of the model -----------------
 * A shard is a slice of tensor parallelism (Megatron-LM) and/or a pipeline stage:
 *  - tp ways, this rank tp_rank: each attention keeps heads [r*NH/tp, (r+1)*NH/tp) (their
 *    rows of qkvw/qkvb in each of the q, k and v thirds, their columns of attprojw), each
 *    MLP hidden units [r*4C/tp, (r+1)*4C/tp) (rows of fcw/fcb, columns of fcprojw), and
 *    the token embedding rows [r*Vp/tp, (r+1)*Vp/tp) (vocab-parallel lookup, LM head and
 *    cross-entropy: the (B,T,Vp) logits are never gathered). Layernorms, wpe, attprojb
 *    and fcprojb are replicated: every rank of the group computes them identically.
 *  - layers [layer_begin, layer_end): the first stage (layer_begin = 0) holds wte and
 *    wpe and reads tokens; the last (layer_end = L) holds the final layernorm and wte
 *    (tied: a stage that is both holds it once) and computes the loss. Other stages read
 *    their input activation and write their output (see parlm_gpt_stage_*).
 * The shard's tensors are listed by parlm_gpt_tensor_info in the full model's order
 * (local shapes); parlm_gpt_tensor_slice says where each lies in the full model. */
typedef struct parlm_gpt_shard {
    int tp, tp_rank;             /* 1, 0: no tensor parallelism */
    int layer_begin, layer_end;  /* 0, L: every layer */
} parlm_gpt_shard;

/* Whether this shard can exist (before anything is allocated): heads % tp, 4C % tp,
 * vocab_pad % tp, 0 <= begin < end <= L. Messages name the value and the rule. */
PARLM_API parlm_status parlm_gpt_shard_check(const parlm_gpt_config *cfg,
                                             const parlm_gpt_shard *sh);
/* Creates the shard, initialized to exactly the values it has in parlm_gpt_create(cfg,
 * seed) of the full model. sh = NULL is the full model. */
PARLM_API parlm_status parlm_gpt_create_shard(parlm_gpt **out, const parlm_gpt_config *cfg,
                                              const parlm_gpt_shard *sh, uint64_t seed);
PARLM_API parlm_gpt_shard parlm_gpt_get_shard(const parlm_gpt *m);
/* *out = shard sh of the whole model full, with full's parameter values and step (no
 * optimizer state, bf16 off): how a process that read a whole checkpoint keeps only its
 * part. full is unchanged (free it when done). */
PARLM_API parlm_status parlm_gpt_shard_from(parlm_gpt **out, parlm_gpt *full,
                                            const parlm_gpt_shard *sh);

/* Where shard tensor i lies in the full model: rows [row0[s], row0[s] + rows) for each of
 * nseg segments (3 for qkvw and qkvb: the q, k, v thirds; 1 otherwise), and of each row
 * the columns [col0, col0 + cols) of full_cols; the shard stores them in that order.
 * owner = 1 on exactly one rank of the whole grid for every full tensor (replicas: tp
 * rank 0; the tied wte: its first stage; vocab slices: each): the owner writes it to
 * checkpoints and counts its gradient in the global norm. */
typedef struct parlm_gpt_slice {
    int full_index;         /* the tensor's index in the full model (parlm_gpt_tensor_info) */
    int owner;
    int nseg;
    int64_t row0[3], rows;
    int64_t col0, cols, full_cols;
    int64_t full_offset;    /* the full tensor's offset in the full model's buffer */
} parlm_gpt_slice;
PARLM_API parlm_status parlm_gpt_tensor_slice(const parlm_gpt *m, int i, parlm_gpt_slice *s);
/* Copies a slice between the shard's tensor (local, rows*nseg x cols) and the full
 * tensor (full, the full tensor's first element): to_full = 1 local -> full, else
 * full -> local. */
PARLM_API void parlm_gpt_slice_copy(const parlm_gpt_slice *s, float *local, float *full,
                                    int to_full);

/* Collectives over the tensor-parallel group, called by forward, backward and infer of a
 * shard with tp > 1 (required before them). Results must be bitwise identical on every
 * rank of the group (parlm_allreduce's are), so replicated parameters stay identical.
 *   allreduce_sum: buf (n) ends with the sum over the group.
 *   all_gather:    buf (tp * n): rank r's n values at buf + r*n are copied to every rank. */
typedef struct parlm_gpt_tp_comm {
    parlm_status (*allreduce_sum)(void *arg, float *buf, int64_t n);
    parlm_status (*all_gather)(void *arg, float *buf, int64_t n);
    void *arg;
} parlm_gpt_tp_comm;
PARLM_API parlm_status parlm_gpt_set_tp_comm(parlm_gpt *m, const parlm_gpt_tp_comm *comm);

/* Micro-batches in flight (pipeline schedules): nslots independent sets of activations of
 * B x T each (parlm_gpt_setup is nslots = 1); parlm_gpt_set_slot picks the set the next
 * forward, backward and the stage buffers below use. A slot's forward may be followed by
 * other slots' forwards and backwards before its own backward. */
PARLM_API parlm_status parlm_gpt_setup_slots(parlm_gpt *m, int B, int T, int training,
                                             int nslots);
PARLM_API parlm_status parlm_gpt_set_slot(parlm_gpt *m, int slot);
/* Bytes of the activation arena of the last setup (for memory reports). */
PARLM_API int64_t parlm_gpt_activation_bytes(const parlm_gpt *m);

/* Pipeline stage buffers of the current slot, (B,T,C) floats each, NULL where the shard
 * has no such boundary:
 *   input:       a non-first stage's forward reads its input here (write it first;
 *                forward then takes inputs = NULL);
 *   output:      a non-last stage's output after forward (targets = NULL, loss untouched);
 *   grad_output: a non-last stage's backward reads dloss/doutput here (write it first);
 *   grad_input:  a non-first stage's dloss/dinput after backward (valid until the next
 *                backward of any slot).
 * The last stage's backward needs a forward with targets, as for the full model. */
PARLM_API float *parlm_gpt_stage_input(parlm_gpt *m);
PARLM_API const float *parlm_gpt_stage_output(const parlm_gpt *m);
PARLM_API float *parlm_gpt_stage_grad_output(parlm_gpt *m);
PARLM_API const float *parlm_gpt_stage_grad_input(const parlm_gpt *m);

/* ---- views: inference on weights kept elsewhere (a memory-mapped file) -------------
 * parlm_gpt_create_view makes a whole model whose matrices are not copied: the layers'
 * (GPT-2 qkvw, attprojw, fcw, fcprojw; Llama wq, wk, wv, wo, w_gate, w_up, w_down), the
 * token embedding and an untied LM head are read where the caller keeps them, in their
 * stored type (parlm_gpt_map_gguf binds a GGUF file's mapping). The layers' matrices and the
 * head share one type: f32, or Q8_0 / Q4_0 in plain rows of ggml blocks (parlm/quant.h);
 * an untied embedding may also be f16 or bf16. The embedding and the head hold the real
 * vocabulary's rows only: the padding rows' logits are 0, as a copy's zero rows give.
 * Only the vectors (norms, biases, GPT-2's position table) are in the model's own buffer,
 * parlm_gpt_view_vectors, at the offsets parlm_gpt_tensor_info gives (-1 for a matrix).
 * Forward (prefill, evaluation) runs Q8_0 / Q4_0 products as parlm_qgemm and decode as
 * the quantized GEMVs on the stored rows, so a row's logits are the same bits whichever
 * path computed it; an embedding row is converted when looked up. A view runs inference
 * only: training, bf16, another decode type, sharding and saving (which need weights of
 * the model's own) are PARLM_EUNSUPPORTED naming the call, and parlm_gpt_params is NULL. */
typedef struct parlm_gpt_weight {
    int type;         /* parlm_wtype */
    const void *data; /* rows of the tensor as stored, (out, in) */
} parlm_gpt_weight;
PARLM_API parlm_status parlm_gpt_create_view(parlm_gpt **out, const parlm_gpt_config *cfg);
PARLM_API int parlm_gpt_is_view(const parlm_gpt *m);
/* PARLM_OK, or PARLM_EUNSUPPORTED naming fn when m is a view (for the calls that need
 * weights of the model's own: savers, data and pipeline parallelism) */
PARLM_API parlm_status parlm_gpt_check_owned(const parlm_gpt *m, const char *fn);
/* The vectors of a view (NULL for a model that is not one): write them before use. */
PARLM_API float *parlm_gpt_view_vectors(parlm_gpt *m);
/* Binds matrix tensor i (parlm_gpt_tensor_info's order, offset -1) to data of type; the
 * caller keeps data valid until parlm_gpt_free (parlm_gpt_view_keep). Another type than
 * the other matrices', an unsupported type or rows not a multiple of 32 weights (Q8_0,
 * Q4_0) are errors naming the tensor. Forward and infer check that every matrix is
 * bound. */
PARLM_API parlm_status parlm_gpt_view_bind(parlm_gpt *m, int i, int type, const void *data);
/* *w = what tensor i of a view is bound to ({0, NULL}: a vector, or not bound yet). */
PARLM_API parlm_status parlm_gpt_view_weight(const parlm_gpt *m, int i, parlm_gpt_weight *w);
/* release(arg) is called by parlm_gpt_free (e.g. to unmap the file). */
PARLM_API parlm_status parlm_gpt_view_keep(parlm_gpt *m, void (*release)(void *), void *arg);

/* Generation with a KV cache: runs positions pos .. pos+n-1 of one sequence (tokens (n))
 * and writes the logits (Vp) of the last one. pos = 0 starts a new sequence; pos + n must
 * not exceed maxT. Allocates the cache at the first call. */
PARLM_API parlm_status parlm_gpt_infer(parlm_gpt *m, const int32_t *tokens, int n, int pos,
                                       float *logits);


#ifdef __cplusplus
}
#endif
#endif

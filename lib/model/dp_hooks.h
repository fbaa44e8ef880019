/* lib/model/dp_hooks.h — internal: what data parallelism (lib/parallel/dp.c) needs from
 * the model beyond parlm/model.h: gradients and parameters in shared memory, a report of
 * which gradients are final during backward, the token-lookup gradient deferred and added
 * back as rows, and AdamW over one slice (ZeRO-1). Not exported (no PARLM_API): a user
 * trains data-parallel through parlm/dp.h; the tests reach these through the core. */
#ifndef PARLM_LIB_MODEL_DP_HOOKS_H
#define PARLM_LIB_MODEL_DP_HOOKS_H
#include <stdint.h>

#include "parlm/model.h"

/* Moves the gradients into caller-owned memory buf (nparams floats, 64-byte aligned; it
 * must outlive its use), copying the current ones; buf = NULL moves them back into memory
 * of the model's own. parlm_dp puts them in a shared-memory window
 * (parlm_comm_alloc_shared) so ranks of a node reduce each other's gradients in place. */
parlm_status parlm_gpt_set_grad_buffer(parlm_gpt *m, float *buf);
/* The same for the f32 parameters (ZeRO-1 all-gathers them in place). */
parlm_status parlm_gpt_set_param_buffer(parlm_gpt *m, float *buf);

/* Called during parlm_gpt_backward whenever more gradients are final, so that their
 * communication can start while backward goes on: [ready_from, nparams) (after the final
 * layernorm, after each layer from the last down, and 0 at the end) and [0, head_ready)
 * (the token embedding right after the LM head's backward when its lookup gradient is
 * deferred, see below; 0 otherwise). It is called again, with the same values, after
 * every op in between, so the hook can keep communication moving. NULL disables. */
typedef void (*parlm_grad_ready_fn)(int64_t ready_from, int64_t head_ready, void *arg);
parlm_status parlm_gpt_set_grad_hook(parlm_gpt *m, parlm_grad_ready_fn fn, void *arg);

/* Deferred token-lookup gradient. The token embedding wte (the first tensor, the largest)
 * is used twice: by the LM head, whose backward runs first, and by the token lookup, whose
 * backward runs last; so its gradient is normally final only when backward ends and its
 * all-reduce cannot overlap anything. With defer on, backward adds only the LM head's part
 * to the wte gradient, reports it final at once (head_ready above), and leaves the
 * lookup's part as rows: the true gradient is wte_grad[tokens[i]] += rows[i] for i < B*T,
 * which the caller adds with parlm_gpt_token_grad_add (data parallelism: every rank's rows,
 * scaled like the averaged gradient, after the all-reduce; that exchange is B*T ids and
 * B*T*C floats instead of V*C floats). The position embedding is not deferred. Applies to
 * every backward until turned off; default off; only for the whole model. */
parlm_status parlm_gpt_set_defer_token_grad(parlm_gpt *m, int on);
/* After a backward with deferral: *tokens = the B*T input tokens (the caller's array of
 * that forward), *rows = their gradient rows (B*T x n_embd), *n = B*T; valid until the
 * next forward. PARLM_EINVAL if the last backward did not defer. */
parlm_status parlm_gpt_token_grad_rows(const parlm_gpt *m, const int32_t **tokens,
                                       const float **rows, int64_t *n);
/* wte_grad[tokens[i]] += rows[i] (n_embd floats each), i = 0..n-1 in order, through the
 * lookup's backward (parlm_embedding_vp_backward with no position part): adds deferred
 * lookup rows (this model's, or every data-parallel rank's, scaled by the caller) into the
 * gradient, bitwise as an undeferred backward would. Every token must be in [0, vocab)
 * (checked before anything is added); only for a model holding the whole wte. */
parlm_status parlm_gpt_token_grad_add(parlm_gpt *m, const int32_t *tokens, const float *rows,
                                      int64_t n);

/* AdamW on the parameters [off, off + n) only, with caller-owned moments mom1, mom2 (n
 * floats each, for element off + i at index i), as step t >= 1 of the bias correction;
 * the model's step counter is left alone. ZeRO-1: each rank updates its slice with its
 * own slice of the state. */
parlm_status parlm_gpt_update_range(parlm_gpt *m, const parlm_adamw_cfg *cfg, float grad_scale,
                                    int64_t t, int64_t off, int64_t n, float *mom1, float *mom2);

#endif

/* lib/io/checkpoint.c — llm.c model files and parlm training checkpoints (parlm/checkpoint.h).
 * llm.c groups each kind of tensor across layers (all ln1w, then all ln1b, ...) while
 * parlm keeps each layer contiguous, so import and export walk the tensors kind by kind
 * and copy each layer's piece to or from its place. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../base/error.h"
#include "ckpt_format.h"
#include "file.h"
#include "parlm/checkpoint.h"
#include "parlm/bf16.h"
#include "parlm/gemm.h"
#include "parlm/tensor.h"

#define PER_LAYER 12

/* Visits the tensors in llm.c's order: fn(offset, count) for each piece. */
typedef parlm_status (*piece_fn)(int64_t off, int64_t n, void *arg);

static parlm_status for_llmc_order(const parlm_gpt *m, piece_fn fn, void *arg)
{
    int L = parlm_gpt_get_config(m).n_layer, nt = parlm_gpt_num_tensors(m);
    int64_t off, n;
    parlm_status st = PARLM_OK;
    for (int i = 0; i < 2 && st == PARLM_OK; i++) /* wte, wpe */
        if ((st = parlm_gpt_tensor_info(m, i, NULL, NULL, &off, &n)) == PARLM_OK)
            st = fn(off, n, arg);
    for (int kind = 0; kind < PER_LAYER && st == PARLM_OK; kind++)
        for (int l = 0; l < L && st == PARLM_OK; l++)
            if ((st = parlm_gpt_tensor_info(m, 2 + l * PER_LAYER + kind, NULL, NULL, &off, &n)) ==
                PARLM_OK)
                st = fn(off, n, arg);
    for (int i = nt - 2; i < nt && st == PARLM_OK; i++) /* lnfw, lnfb */
        if ((st = parlm_gpt_tensor_info(m, i, NULL, NULL, &off, &n)) == PARLM_OK)
            st = fn(off, n, arg);
    return st;
}

typedef struct llmc_io {
    FILE *f;
    const char *path;
    float *params;
    int bf16;
    uint16_t *buf; /* bf16 staging */
    int64_t bufn;
} llmc_io;

static parlm_status stage(llmc_io *io, int64_t n)
{
    if (n <= io->bufn)
        return PARLM_OK;
    parlm_free(io->buf);
    io->buf = parlm_alloc((size_t)n, 2);
    io->bufn = io->buf ? n : 0;
    return io->buf ? PARLM_OK : parlm_error(PARLM_ENOMEM, "%s: out of memory", io->path);
}

static parlm_status read_piece(int64_t off, int64_t n, void *arg)
{
    llmc_io *io = arg;
    if (!io->bf16) {
        if (fread(io->params + off, 4, (size_t)n, io->f) != (size_t)n)
            return parlm_error(PARLM_EFORMAT, "%s: truncated weights", io->path);
        return PARLM_OK;
    }
    parlm_status st = stage(io, n);
    if (st != PARLM_OK)
        return st;
    if (fread(io->buf, 2, (size_t)n, io->f) != (size_t)n)
        return parlm_error(PARLM_EFORMAT, "%s: truncated weights", io->path);
    return parlm_bf16_to_f32(io->buf, io->params + off, n);
}

static parlm_status write_piece(int64_t off, int64_t n, void *arg)
{
    llmc_io *io = arg;
    if (!io->bf16)
        return fwrite(io->params + off, 4, (size_t)n, io->f) == (size_t)n
                   ? PARLM_OK
                   : parlm_error(PARLM_EIO, "%s: write failed", io->path);
    parlm_status st = stage(io, n);
    if (st == PARLM_OK)
        st = parlm_f32_to_bf16(io->params + off, io->buf, n);
    if (st == PARLM_OK && fwrite(io->buf, 2, (size_t)n, io->f) != (size_t)n)
        st = parlm_error(PARLM_EIO, "%s: write failed", io->path);
    return st;
}

/* the message of parlm_gpt_config_num_params, copied: it cannot be formatted into itself */
static parlm_status shape_error(const char *path)
{
    char why[256];
    snprintf(why, sizeof why, "%s", parlm_last_error());
    return parlm_error(PARLM_EFORMAT, "%s: bad model shape in header: %s", path, why);
}

parlm_status parlm_ckpt_open_checked(const char *path, FILE **f, long long *size)
{
    *f = fopen(path, "rb");
    if (!*f)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*f);
        return parlm_error(PARLM_EIO, "%s: not a regular file", path);
    }
    *size = (long long)st.st_size;
    return PARLM_OK;
}

parlm_status parlm_llmc_read_header(const char *path, FILE *f, long long size,
                                    parlm_gpt_config *cfg, int *bf16)
{
    int32_t h[256];
    if (fread(h, 4, 256, f) != 256)
        return parlm_error(PARLM_EFORMAT, "%s: truncated header (%lld bytes)", path, size);
    if (h[0] != PARLM_LLMC_MAGIC || (h[1] != 3 && h[1] != 5))
        return parlm_error(PARLM_EFORMAT, "%s: not an llm.c model file (magic %d version %d; "
                           "expected %d and 3 or 5)", path, h[0], h[1], PARLM_LLMC_MAGIC);
    *cfg = (parlm_gpt_config){.n_layer = h[4], .n_head = h[5], .n_embd = h[6], .max_seq = h[2],
                             .vocab = h[3], .vocab_pad = h[7]};
    *bf16 = h[1] == 5;
    int64_t P;
    if (parlm_gpt_config_num_params(cfg, &P) != PARLM_OK)
        return shape_error(path);
    long long want = 1024 + P * (*bf16 ? 2LL : 4LL);
    if (size != want) /* checked before allocating: a header cannot ask for gigabytes */
        return parlm_error(PARLM_EFORMAT, "%s: %lld bytes, but a %s model of this shape has %lld%s",
                           path, size, *bf16 ? "bf16" : "f32", want,
                           size < want ? ": truncated" : "");
    return PARLM_OK;
}

parlm_status parlm_gpt_load_llmc(parlm_gpt **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_load_llmc: null argument");
    *out = NULL;
    FILE *f;
    long long size;
    parlm_status st = parlm_ckpt_open_checked(path, &f, &size);
    if (st != PARLM_OK)
        return st;
    parlm_gpt_config cfg;
    int bf16;
    parlm_gpt *m;
    if ((st = parlm_llmc_read_header(path, f, size, &cfg, &bf16)) != PARLM_OK ||
        (st = parlm_gpt_create(&m, &cfg, 0)) != PARLM_OK) {
        fclose(f);
        return st;
    }
    llmc_io io = {f, path, parlm_gpt_params(m), bf16, NULL, 0};
    st = for_llmc_order(m, read_piece, &io);
    parlm_free(io.buf);
    fclose(f);
    if (st != PARLM_OK) {
        parlm_gpt_free(m);
        return st;
    }
    *out = m;
    return PARLM_OK;
}

typedef struct llmc_out {
    parlm_gpt *m;
    const char *path;
    int version;
} llmc_out;

static parlm_status write_llmc(FILE *f, void *arg)
{
    llmc_out *o = arg;
    parlm_gpt_config c = parlm_gpt_get_config(o->m);
    int32_t h[256] = {PARLM_LLMC_MAGIC, o->version, c.max_seq, c.vocab, c.n_layer, c.n_head,
                      c.n_embd, c.vocab_pad};
    if (fwrite(h, 4, 256, f) != 256)
        return parlm_error(PARLM_EIO, "%s: write failed", o->path);
    llmc_io io = {f, o->path, parlm_gpt_params(o->m), o->version == 5, NULL, 0};
    parlm_status st = for_llmc_order(o->m, write_piece, &io);
    parlm_free(io.buf);
    return st;
}

/* these files hold the whole model: a shard (parlm_gpt_create_shard) would be cut short */
static parlm_status whole_model(const parlm_gpt *m, const char *fn)
{
    parlm_gpt_shard sh = parlm_gpt_get_shard(m);
    parlm_gpt_config c = parlm_gpt_get_config(m);
    RETURN_IF_ERROR(parlm_gpt_check_owned(m, fn));
    if (sh.tp != 1 || sh.layer_begin != 0 || sh.layer_end != c.n_layer)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: the model is a shard (tensor parallel %d, "
                           "layers %d..%d of %d); gather it into the whole model first", fn,
                           sh.tp, sh.layer_begin, sh.layer_end - 1, c.n_layer);
    return PARLM_OK;
}

parlm_status parlm_gpt_save_llmc(parlm_gpt *m, const char *path, int version)
{
    if (!m || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_llmc: null argument");
    parlm_status st = whole_model(m, "parlm_gpt_save_llmc");
    if (st != PARLM_OK)
        return st;
    if (parlm_gpt_get_config(m).arch != PARLM_ARCH_GPT2)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_gpt_save_llmc: llm.c files hold GPT-2 "
                           "models only (this is a Llama model: save a parlm checkpoint)");
    if (version != 3 && version != 5)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_save_llmc: version %d (3 = f32, 5 = bf16)",
                           version);
    llmc_out o = {m, path, version};
    return parlm_write_file_atomic(path, write_llmc, &o);
}

/* ---- training checkpoints (the format: ckpt_format.h) ----------------------------------- */

void parlm_ckpt_fill_header(uint64_t *h, parlm_gpt_config c, int64_t P, int has_adam,
                            const parlm_train_state *s)
{
    memset(h, 0, H_SLOTS * sizeof *h);
    h[H_MAGIC] = CKPT_MAGIC, h[H_VERSION] = CKPT_VERSION;
    h[H_L] = (uint64_t)c.n_layer, h[H_NH] = (uint64_t)c.n_head, h[H_C] = (uint64_t)c.n_embd;
    h[H_MAXT] = (uint64_t)c.max_seq, h[H_V] = (uint64_t)c.vocab, h[H_VP] = (uint64_t)c.vocab_pad;
    h[H_NPARAMS] = (uint64_t)P, h[H_HAS_ADAM] = has_adam != 0, h[H_STEP] = (uint64_t)s->step;
    h[H_RNG] = s->rng, h[H_SHARD] = s->train.shard, h[H_POS] = s->train.position;
    h[H_B] = (uint64_t)s->B, h[H_T] = (uint64_t)s->T, h[H_ACCUM] = (uint64_t)s->grad_accum;
    h[H_WORLD] = (uint64_t)s->world, h[H_SEED] = s->seed;
    memcpy(&h[H_TOKENS], &s->tokens, 8);
    h[H_ARCH] = (uint64_t)c.arch, h[H_NKV] = (uint64_t)c.n_kv_head;
    h[H_FFN] = (uint64_t)c.ffn_hidden, h[H_UNTIED] = (uint64_t)c.untied_head;
    const float fl[3] = {c.rope_theta, c.rope_scale, c.norm_eps};
    for (int i = 0; i < 3; i++) { /* the float's bits in the slot's low half */
        uint32_t bits;
        memcpy(&bits, &fl[i], 4);
        h[H_ROPE_THETA + i] = bits;
    }
}

void parlm_ckpt_state_from_header(const uint64_t *h, parlm_train_state *state)
{
    memset(state, 0, sizeof *state);
    state->step = (int64_t)h[H_STEP];
    state->rng = h[H_RNG];
    state->train.shard = h[H_SHARD];
    state->train.position = h[H_POS];
    state->B = (int32_t)h[H_B], state->T = (int32_t)h[H_T];
    state->grad_accum = (int32_t)h[H_ACCUM], state->world = (int32_t)h[H_WORLD];
    state->seed = h[H_SEED];
    memcpy(&state->tokens, &h[H_TOKENS], 8);
}

uint64_t parlm_ckpt_final_hash(uint64_t payload_hash, uint64_t *h)
{
    if (h[H_VERSION] < 2)
        return payload_hash; /* version 1 hashed the payload only */
    uint64_t stored = h[H_HASH];
    h[H_HASH] = 0;
    uint64_t hash = fnv_update(payload_hash, h, H_SLOTS * 8);
    h[H_HASH] = stored;
    return hash;
}

parlm_status parlm_ckpt_read_header(const char *path, FILE *f, long long size, uint64_t *h,
                                    parlm_gpt_config *cfg, int64_t *nparams, int *nbufs)
{
    if (fread(h, 8, H_SLOTS, f) != H_SLOTS)
        return parlm_error(PARLM_EFORMAT, "%s: truncated header (%lld bytes)", path, size);
    if (h[H_MAGIC] != CKPT_MAGIC)
        return parlm_error(PARLM_EFORMAT, "%s: not a parlm checkpoint (bad magic)", path);
    if (h[H_VERSION] < 1 || h[H_VERSION] > CKPT_VERSION)
        return parlm_error(PARLM_EFORMAT, "%s: checkpoint version %llu, this parlm reads 1 to %d",
                           path, (unsigned long long)h[H_VERSION], CKPT_VERSION);
    for (int i = H_L; i <= H_VP; i++)
        if (h[i] > (1u << 24))
            return parlm_error(PARLM_EFORMAT, "%s: corrupt model shape in header", path);
    *cfg = (parlm_gpt_config){.n_layer = (int)h[H_L], .n_head = (int)h[H_NH],
                              .n_embd = (int)h[H_C], .max_seq = (int)h[H_MAXT],
                              .vocab = (int)h[H_V], .vocab_pad = (int)h[H_VP]};
    if (h[H_VERSION] >= 3) { /* the architecture; versions 1 and 2 are GPT-2 */
        for (int i = H_ARCH; i <= H_NORM_EPS; i++)
            if (h[i] > UINT32_MAX || (i <= H_UNTIED && h[i] > (1u << 24)))
                return parlm_error(PARLM_EFORMAT, "%s: corrupt architecture slot %d in header",
                                   path, i);
        cfg->arch = (int)h[H_ARCH], cfg->n_kv_head = (int)h[H_NKV];
        cfg->ffn_hidden = (int)h[H_FFN], cfg->untied_head = (int)h[H_UNTIED];
        float *fl[3] = {&cfg->rope_theta, &cfg->rope_scale, &cfg->norm_eps};
        for (int i = 0; i < 3; i++) {
            uint32_t bits = (uint32_t)h[H_ROPE_THETA + i];
            memcpy(fl[i], &bits, 4);
        }
    }
    int64_t P;
    if (parlm_gpt_config_num_params(cfg, &P) != PARLM_OK)
        return shape_error(path);
    *nbufs = h[H_HAS_ADAM] ? 3 : 1;
    long long want = 8LL * H_SLOTS + 4LL * P * *nbufs;
    /* the size may well match: say which header field is wrong */
    if (h[H_HAS_ADAM] > 1)
        return parlm_error(PARLM_EFORMAT, "%s: corrupt header: AdamW flag %llu (0 or 1)", path,
                           (unsigned long long)h[H_HAS_ADAM]);
    if ((uint64_t)P != h[H_NPARAMS])
        return parlm_error(PARLM_EFORMAT, "%s: corrupt header: %llu parameters, but its model "
                           "shape has %lld", path, (unsigned long long)h[H_NPARAMS], (long long)P);
    if (size != want) /* checked before allocating: a header cannot ask for gigabytes */
        return parlm_error(PARLM_EFORMAT, "%s: %lld bytes, expected %lld for %lld parameters%s%s",
                           path, size, want, (long long)P, *nbufs == 3 ? " with AdamW state" : "",
                           size < want ? ": truncated" : "");
    *nparams = P;
    return PARLM_OK;
}

typedef struct ckpt_out {
    parlm_gpt *m;
    const parlm_train_state *s;
    const char *path;
} ckpt_out;

static parlm_status write_ckpt(FILE *f, void *arg)
{
    ckpt_out *o = arg;
    parlm_gpt *m = o->m;
    int64_t P = parlm_gpt_num_params(m);
    const float *bufs[3] = {parlm_gpt_params(m), parlm_gpt_adam_m(m), parlm_gpt_adam_v(m)};
    int nbufs = bufs[1] ? 3 : 1;
    uint64_t h[H_SLOTS];
    parlm_ckpt_fill_header(h, parlm_gpt_get_config(m), P, nbufs == 3, o->s);
    uint64_t hash = FNV_START;
    for (int i = 0; i < nbufs; i++)
        hash = fnv_update(hash, bufs[i], (size_t)P * 4);
    h[H_HASH] = parlm_ckpt_final_hash(hash, h); /* the header with its hash slot still 0 */
    if (fwrite(h, 8, H_SLOTS, f) != H_SLOTS)
        return parlm_error(PARLM_EIO, "%s: write failed", o->path);
    for (int i = 0; i < nbufs; i++)
        if (fwrite(bufs[i], 4, (size_t)P, f) != (size_t)P)
            return parlm_error(PARLM_EIO, "%s: write failed: %s", o->path, strerror(errno));
    return PARLM_OK;
}

parlm_status parlm_checkpoint_save(const char *path, parlm_gpt *m, const parlm_train_state *state)
{
    if (!path || !m || !state)
        return parlm_error(PARLM_EINVAL, "parlm_checkpoint_save: null argument");
    parlm_status st = whole_model(m, "parlm_checkpoint_save");
    if (st != PARLM_OK)
        return st;
    if (state->step != parlm_gpt_get_step(m))
        return parlm_error(PARLM_EINVAL, "parlm_checkpoint_save: state step %lld differs from "
                           "the model's %lld", (long long)state->step,
                           (long long)parlm_gpt_get_step(m));
    ckpt_out o = {m, state, path};
    return parlm_write_file_atomic(path, write_ckpt, &o);
}

parlm_status parlm_checkpoint_load(const char *path, parlm_gpt **out, parlm_train_state *state)
{
    if (!path || !out || !state)
        return parlm_error(PARLM_EINVAL, "parlm_checkpoint_load: null argument");
    *out = NULL;
    FILE *f;
    long long size;
    parlm_status st = parlm_ckpt_open_checked(path, &f, &size);
    if (st != PARLM_OK)
        return st;
    uint64_t h[H_SLOTS];
    parlm_gpt_config cfg;
    int64_t P;
    int nbufs;
    parlm_gpt *m;
    if ((st = parlm_ckpt_read_header(path, f, size, h, &cfg, &P, &nbufs)) != PARLM_OK ||
        (st = parlm_gpt_create(&m, &cfg, 0)) != PARLM_OK) {
        fclose(f);
        return st;
    }
    if (nbufs == 3) {
        if ((st = parlm_gpt_init_optimizer(m)) != PARLM_OK) {
            fclose(f);
            parlm_gpt_free(m);
            return st;
        }
    }
    float *bufs[3] = {parlm_gpt_params(m), parlm_gpt_adam_m(m), parlm_gpt_adam_v(m)};
    uint64_t hash = FNV_START;
    for (int i = 0; i < nbufs; i++) {
        if (fread(bufs[i], 4, (size_t)P, f) != (size_t)P) {
            fclose(f);
            parlm_gpt_free(m);
            return parlm_error(PARLM_EFORMAT, "%s: truncated payload", path);
        }
        hash = fnv_update(hash, bufs[i], (size_t)P * 4);
    }
    fclose(f);
    if (parlm_ckpt_final_hash(hash, h) != h[H_HASH]) {
        parlm_gpt_free(m);
        return parlm_error(PARLM_EFORMAT, "%s: checksum mismatch: the file is corrupt", path);
    }
    parlm_gpt_set_step(m, (int64_t)h[H_STEP]);
    parlm_ckpt_state_from_header(h, state);
    *out = m;
    return PARLM_OK;
}

/* ---- either format, chosen by the file's magic number -------------------------------------- */

parlm_status parlm_model_file_kind(const char *path, parlm_model_kind *kind)
{
    if (!path || !kind)
        return parlm_error(PARLM_EINVAL, "parlm_model_file_kind: null argument");
    *kind = PARLM_MODEL_UNKNOWN;
    FILE *f;
    long long size;
    parlm_status st = parlm_ckpt_open_checked(path, &f, &size);
    if (st != PARLM_OK)
        return st;
    unsigned char b[8] = {0};
    size_t got = fread(b, 1, 8, f);
    fclose(f);
    int32_t m32;
    uint64_t m64;
    memcpy(&m32, b, 4);
    memcpy(&m64, b, 8);
    if (got >= 4 && m32 == PARLM_LLMC_MAGIC)
        *kind = PARLM_MODEL_LLMC;
    else if (got == 8 && m64 == CKPT_MAGIC)
        *kind = PARLM_MODEL_CHECKPOINT;
    else if (got >= 4 && m32 == PARLM_SHARD_MAGIC)
        *kind = PARLM_MODEL_SHARD;
    return PARLM_OK;
}

parlm_status parlm_gpt_load(parlm_gpt **out, const char *path, parlm_train_state *state)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gpt_load: null argument");
    *out = NULL;
    parlm_train_state ignored;
    if (!state)
        state = &ignored;
    memset(state, 0, sizeof *state);
    parlm_model_kind kind;
    parlm_status st = parlm_model_file_kind(path, &kind);
    if (st != PARLM_OK)
        return st;
    switch (kind) {
    case PARLM_MODEL_LLMC: return parlm_gpt_load_llmc(out, path);
    case PARLM_MODEL_CHECKPOINT: return parlm_checkpoint_load(path, out, state);
    case PARLM_MODEL_SHARD:
        return parlm_error(PARLM_EFORMAT, "%s: a token shard, not a model", path);
    default:
        return parlm_error(PARLM_EFORMAT, "%s: neither an llm.c model file (magic %d) nor a parlm "
                           "checkpoint (magic \"PRLMCCKP\"): unknown magic number", path,
                           PARLM_LLMC_MAGIC);
    }
}

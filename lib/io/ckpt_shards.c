/* lib/io/ckpt_shards.c — a sharded model (parlm_gpt_shard) in the whole-model files
 * (parlm/checkpoint.h): the file never depends on the layout that wrote or reads it.
 * The idea to know: both directions walk the full model's tensors in file order, one full
 * tensor at a time. Saving, the owners of a tensor's slices hand them to rank 0 (in rank
 * order, so every rank issues the same broadcasts), which copies them into place, writes
 * the tensor and folds it into the file's hash; loading, every process reads the file and
 * each of its shards copies its slice out. Only copies: values are exact. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "ckpt_format.h"
#include "file.h"
#include "parlm/checkpoint.h"
#include "parlm/bf16.h"
#include "parlm/gemm.h"
#include "parlm/tensor.h"
#ifdef PARLM_HAVE_MPI
#include "parlm/dist.h"
#endif

#define PER_LAYER 12

/* ---- the full model's tensors, in buffer (and checkpoint) order -------------------------
 * The order of parlm/model.h: wte, wpe, 12 per layer, lnfw, lnfb; Llama: wte, 9 per layer,
 * norm, [lm_head]. Every shard's slices are checked against it before a byte is copied
 * (full_offset and bounds). */
typedef struct full_model {
    int nt;
    int64_t *off, *cnt, max;
} full_model;

static parlm_status full_model_make(const parlm_gpt_config *c, full_model *fm)
{
    int64_t C = c->n_embd, P;
    parlm_status st = parlm_gpt_config_num_params(c, &P);
    if (st != PARLM_OK)
        return st;
    const int64_t per[PER_LAYER] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C,
                                    4 * C * C, C};
    const int llama = c->arch == PARLM_ARCH_LLAMA;
    const int64_t Ckv = llama ? C / c->n_head * c->n_kv_head : 0, F = c->ffn_hidden;
    const int64_t lper[9] = {C, C * C, Ckv * C, Ckv * C, C * C, C, F * C, F * C, C * F};
    fm->nt = llama ? 2 + 9 * c->n_layer + c->untied_head : 4 + PER_LAYER * c->n_layer;
    fm->off = malloc((size_t)fm->nt * sizeof *fm->off);
    fm->cnt = malloc((size_t)fm->nt * sizeof *fm->cnt);
    if (!fm->off || !fm->cnt)
        return parlm_error(PARLM_ENOMEM, "sharded checkpoint: out of memory");
    int k = 0;
    fm->cnt[k++] = (int64_t)c->vocab_pad * C;
    if (!llama)
        fm->cnt[k++] = (int64_t)c->max_seq * C;
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < (llama ? 9 : PER_LAYER); i++)
            fm->cnt[k++] = llama ? lper[i] : per[i];
    fm->cnt[k++] = C;
    if (!llama || c->untied_head)
        fm->cnt[k++] = llama ? (int64_t)c->vocab_pad * C : C;
    int64_t off = 0;
    fm->max = 0;
    for (int i = 0; i < fm->nt; i++) {
        fm->off[i] = off;
        off += fm->cnt[i];
        fm->max = fm->cnt[i] > fm->max ? fm->cnt[i] : fm->max;
    }
    if (off != P) /* model.h's order and this table disagree: a bug, not a file problem */
        return parlm_error(PARLM_EUNSUPPORTED, "sharded checkpoint: the full model's tensors "
                           "sum to %lld values, the model has %lld", (long long)off,
                           (long long)P);
    return PARLM_OK;
}

static void full_model_free(full_model *fm)
{
    free(fm->off);
    free(fm->cnt);
}

/* A slice lies inside its full tensor (a bad one from another rank must not write past). */
static parlm_status slice_check(const full_model *fm, const parlm_gpt_slice *s)
{
    int i = s->full_index;
    int ok = i >= 0 && i < fm->nt && s->full_offset == fm->off[i] && s->nseg >= 1 && s->nseg <= 3 &&
             s->rows >= 0 && s->cols >= 0 && s->col0 >= 0 && s->full_cols > 0 &&
             s->col0 + s->cols <= s->full_cols;
    for (int k = 0; ok && k < s->nseg; k++)
        ok = s->row0[k] >= 0 && (s->row0[k] + s->rows) * s->full_cols <= fm->cnt[i];
    return ok ? PARLM_OK
              : parlm_error(PARLM_EINVAL, "sharded checkpoint: a slice of full tensor %d (rows "
                            "%lld at %lld, columns %lld at %lld of %lld) lies outside it", i,
                            (long long)s->rows, (long long)s->row0[0], (long long)s->cols,
                            (long long)s->col0, (long long)s->full_cols);
}

/* Shard tensor j's slice, checked to lie inside its full tensor. */
static parlm_status slice_of(const full_model *fm, parlm_gpt *m, int j, parlm_gpt_slice *s)
{
    parlm_status st = parlm_gpt_tensor_slice(m, j, s);
    if (st != PARLM_OK)
        return st;
    return slice_check(fm, s);
}

/* buffer b (0 parameters, 1 AdamW m, 2 AdamW v) of a shard */
static float *buffer(parlm_gpt *m, int b)
{
    return b == 0 ? parlm_gpt_params(m) : b == 1 ? parlm_gpt_adam_m(m) : parlm_gpt_adam_v(m);
}

/* For each shard, the local tensor holding each full tensor (-1: none): maps[k][i]. */
static parlm_status make_maps(const full_model *fm, parlm_gpt *const *sh, int n, int ***maps)
{
    int **mp = calloc((size_t)n, sizeof *mp);
    if (!mp)
        return parlm_error(PARLM_ENOMEM, "sharded checkpoint: out of memory");
    *maps = mp;
    for (int k = 0; k < n; k++) {
        if (!(mp[k] = malloc((size_t)fm->nt * sizeof **mp)))
            return parlm_error(PARLM_ENOMEM, "sharded checkpoint: out of memory");
        for (int i = 0; i < fm->nt; i++)
            mp[k][i] = -1;
        for (int j = 0; j < parlm_gpt_num_tensors(sh[k]); j++) {
            parlm_gpt_slice s;
            parlm_status st = slice_of(fm, sh[k], j, &s);
            if (st != PARLM_OK)
                return st;
            mp[k][s.full_index] = j;
        }
    }
    return PARLM_OK;
}

static void free_maps(int **maps, int n)
{
    for (int k = 0; maps && k < n; k++)
        free(maps[k]);
    free(maps);
}

/* The streaming form of fnv_update over one buffer fed in pieces: whole 8-byte words as
 * they complete, the buffer's last few bytes one by one at its end, as fnv_update does. */
typedef struct fnv_stream {
    uint64_t h;
    unsigned char pend[8];
    size_t np;
} fnv_stream;

static void fnv_feed(fnv_stream *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n && s->np) {
        s->pend[s->np++] = *b++, n--;
        if (s->np == 8)
            s->h = fnv_update(s->h, s->pend, 8), s->np = 0;
    }
    size_t whole = n / 8 * 8;
    s->h = fnv_update(s->h, b, whole);
    memcpy(s->pend, b + whole, n - whole);
    s->np = n - whole;
}

static void fnv_end_buffer(fnv_stream *s)
{
    s->h = fnv_update(s->h, s->pend, s->np);
    s->np = 0;
}

/* ---- loading -------------------------------------------------------------------------- */

/* parlm_gpt_load's error for a file that is no model (it names what the file is instead) */
static parlm_status not_a_model(const char *path)
{
    parlm_gpt *none = NULL;
    parlm_status st = parlm_gpt_load(&none, path, NULL);
    parlm_gpt_free(none);
    return st != PARLM_OK ? st : parlm_error(PARLM_EFORMAT, "%s: not a model file", path);
}

/* A model file's header, whichever of the two kinds: *f is left at the payload (closed and
 * NULL on error). llm.c files: *bf16 says the weights' type, *nbufs = 1; checkpoints: h,
 * *P and *nbufs (1 weights, 3 with AdamW's moments). */
typedef struct model_header {
    parlm_model_kind kind;
    parlm_gpt_config cfg;
    uint64_t h[H_SLOTS];
    int64_t P;
    int nbufs, bf16;
} model_header;

static parlm_status open_model_file(const char *path, FILE **f, model_header *mh)
{
    *f = NULL;
    memset(mh, 0, sizeof *mh);
    mh->nbufs = 1;
    parlm_status st = parlm_model_file_kind(path, &mh->kind);
    if (st != PARLM_OK)
        return st;
    if (mh->kind != PARLM_MODEL_LLMC && mh->kind != PARLM_MODEL_CHECKPOINT)
        return not_a_model(path);
    long long size;
    if ((st = parlm_ckpt_open_checked(path, f, &size)) != PARLM_OK)
        return st;
    st = mh->kind == PARLM_MODEL_LLMC
             ? parlm_llmc_read_header(path, *f, size, &mh->cfg, &mh->bf16)
             : parlm_ckpt_read_header(path, *f, size, mh->h, &mh->cfg, &mh->P, &mh->nbufs);
    if (st != PARLM_OK) {
        fclose(*f);
        *f = NULL;
    }
    return st;
}

parlm_status parlm_model_file_config(const char *path, parlm_gpt_config *cfg)
{
    if (!path || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_model_file_config: null argument");
    FILE *f;
    model_header mh;
    parlm_status st = open_model_file(path, &f, &mh);
    if (st == PARLM_OK) {
        *cfg = mh.cfg;
        fclose(f);
    }
    return st;
}

/* Copies full tensor i (values in full) into every shard holding a slice of it. */
static void distribute(const full_model *fm, parlm_gpt **sh, int n, int **maps, int b, int i,
                       float *full)
{
    (void)fm;
    for (int k = 0; k < n; k++) {
        int j = maps[k][i];
        if (j < 0)
            continue;
        parlm_gpt_slice s;
        int64_t off;
        parlm_gpt_tensor_slice(sh[k], j, &s);
        parlm_gpt_tensor_info(sh[k], j, NULL, NULL, &off, NULL);
        parlm_gpt_slice_copy(&s, buffer(sh[k], b) + off, full, 0);
    }
}

/* llm.c's order: wte, wpe, then each kind of layer tensor across the layers, lnfw, lnfb. */
static int llmc_index(int L, int k)
{
    if (k < 2)
        return k;
    if (k >= 2 + PER_LAYER * L)
        return k;
    int kind = (k - 2) / L, l = (k - 2) % L;
    return 2 + l * PER_LAYER + kind;
}

static parlm_status read_floats(FILE *f, const char *path, float *dst, int64_t n, int bf16,
                                uint16_t *stage)
{
    if (!bf16)
        return fread(dst, 4, (size_t)n, f) == (size_t)n
                   ? PARLM_OK
                   : parlm_error(PARLM_EFORMAT, "%s: truncated payload", path);
    if (fread(stage, 2, (size_t)n, f) != (size_t)n)
        return parlm_error(PARLM_EFORMAT, "%s: truncated weights", path);
    return parlm_bf16_to_f32(stage, dst, n);
}

parlm_status parlm_gpt_load_shards(const char *path, const parlm_gpt_shard *layout, int n,
                                   parlm_gpt **out, parlm_train_state *state)
{
    if (!path || !out || n < 1 || (!layout && n != 1))
        return parlm_error(PARLM_EINVAL, "parlm_gpt_load_shards: %s",
                           n < 1 || (!layout && n != 1) ? "n must be >= 1 (1 without a layout)"
                                                        : "null argument");
    for (int k = 0; k < n; k++)
        out[k] = NULL;
    parlm_train_state ignored;
    state = state ? state : &ignored;
    memset(state, 0, sizeof *state);
    FILE *f;
    model_header mh;
    parlm_status st = open_model_file(path, &f, &mh);
    if (st != PARLM_OK)
        return st;
    const parlm_gpt_config cfg = mh.cfg;
    const int nbufs = mh.nbufs, bf16 = mh.bf16;
    full_model fm = {0, NULL, NULL, 0};
    int **maps = NULL;
    float *full = NULL;
    uint16_t *stage = NULL;
    for (int k = 0; k < n && st == PARLM_OK; k++) {
        if (layout && (st = parlm_gpt_shard_check(&cfg, &layout[k])) != PARLM_OK) {
            char why[400];
            snprintf(why, sizeof why, "%s", parlm_last_error());
            st = parlm_error(st, "%s: cannot be loaded into shard %d: %s", path, k, why);
        }
        if (st == PARLM_OK)
            st = parlm_gpt_create_shard(&out[k], &cfg, layout ? &layout[k] : NULL, 0);
        if (st == PARLM_OK && nbufs == 3)
            st = parlm_gpt_init_optimizer(out[k]);
    }
    if (st == PARLM_OK && (st = full_model_make(&cfg, &fm)) == PARLM_OK)
        st = make_maps(&fm, out, n, &maps);
    if (st == PARLM_OK) {
        full = parlm_alloc((size_t)fm.max, sizeof *full);
        stage = bf16 ? parlm_alloc((size_t)fm.max, sizeof *stage) : NULL;
        if (!full || (bf16 && !stage))
            st = parlm_error(PARLM_ENOMEM, "%s: out of memory for one tensor (%lld values)", path,
                             (long long)fm.max);
    }
    if (st == PARLM_OK && mh.kind == PARLM_MODEL_LLMC) {
        for (int k = 0; k < fm.nt && st == PARLM_OK; k++) {
            int i = llmc_index(cfg.n_layer, k);
            if ((st = read_floats(f, path, full, fm.cnt[i], bf16, stage)) == PARLM_OK)
                distribute(&fm, out, n, maps, 0, i, full);
        }
    } else if (st == PARLM_OK) {
        fnv_stream hs = {FNV_START, {0}, 0};
        for (int b = 0; b < nbufs && st == PARLM_OK; b++) {
            for (int i = 0; i < fm.nt && st == PARLM_OK; i++) {
                if ((st = read_floats(f, path, full, fm.cnt[i], 0, NULL)) != PARLM_OK)
                    break;
                fnv_feed(&hs, full, (size_t)fm.cnt[i] * 4);
                distribute(&fm, out, n, maps, b, i, full);
            }
            fnv_end_buffer(&hs);
        }
        if (st == PARLM_OK && parlm_ckpt_final_hash(hs.h, mh.h) != mh.h[H_HASH])
            st = parlm_error(PARLM_EFORMAT, "%s: checksum mismatch: the file is corrupt", path);
        if (st == PARLM_OK) {
            parlm_ckpt_state_from_header(mh.h, state);
            for (int k = 0; k < n; k++)
                parlm_gpt_set_step(out[k], state->step);
        }
    }
    fclose(f);
    parlm_free(full);
    parlm_free(stage);
    free_maps(maps, n);
    full_model_free(&fm);
    if (st != PARLM_OK)
        for (int k = 0; k < n; k++) {
            parlm_gpt_free(out[k]);
            out[k] = NULL;
        }
    return st;
}

/* ---- saving --------------------------------------------------------------------------- */

typedef struct saver {
    parlm_gpt *const *sh;
    int n, rank, size, nbufs;
    struct parlm_comm *comm;
    const parlm_train_state *state;
    parlm_gpt_config cfg;
    full_model fm;
    int **maps;
    int *owned;             /* owned[r * nt + i]: pieces of full tensor i rank r owns */
    float *full, *piece;    /* rank 0: the tensor being assembled; everyone: a received piece */
    const char *path;
    parlm_status err;       /* rank 0: the first error of the write (the walk goes on) */
    int ran;
} saver;

static parlm_status bcast(saver *v, void *buf, size_t bytes, int root)
{
#ifdef PARLM_HAVE_MPI
    if (v->comm && v->size > 1)
        return parlm_comm_bcast(v->comm, buf, bytes, root);
#else
    (void)v, (void)buf, (void)bytes, (void)root;
#endif
    return PARLM_OK;
}

/* This rank's p-th owned slice of full tensor i: its shard and local tensor. */
static void owned_piece(const saver *v, int i, int p, int *k_out, int *j_out)
{
    for (int k = 0; k < v->n; k++) {
        int j = v->maps[k][i];
        parlm_gpt_slice s;
        if (j < 0 || parlm_gpt_tensor_slice(v->sh[k], j, &s) != PARLM_OK || !s.owner)
            continue;
        if (p == 0) {
            *k_out = k, *j_out = j;
            return;
        }
        p--;
    }
    *k_out = *j_out = -1;
}

static void note(saver *v, parlm_status st)
{
    if (v->err == PARLM_OK)
        v->err = st;
}

/* Every rank walks the same schedule: for each buffer, full tensor and rank, that rank's
 * owned pieces in order. f is rank 0's file (NULL: assemble and discard, or not rank 0). */
static parlm_status walk(saver *v, FILE *f)
{
    const full_model *fm = &v->fm;
    fnv_stream hs = {FNV_START, {0}, 0};
    if (f) { /* the header goes last, when the hash is known; its room first */
        uint64_t zero[H_SLOTS] = {0};
        if (fwrite(zero, 8, H_SLOTS, f) != H_SLOTS)
            note(v, parlm_error(PARLM_EIO, "%s: write failed: %s", v->path, strerror(errno)));
    }
    for (int b = 0; b < v->nbufs; b++) {
        for (int i = 0; i < fm->nt; i++) {
            int64_t covered = 0;
            for (int r = 0; r < v->size; r++)
                for (int p = 0; p < v->owned[r * fm->nt + i]; p++) {
                    parlm_gpt_slice s = {0};
                    float *src = NULL;
                    if (r == v->rank) {
                        int k, j;
                        int64_t off;
                        owned_piece(v, i, p, &k, &j);
                        parlm_gpt_tensor_slice(v->sh[k], j, &s);
                        parlm_gpt_tensor_info(v->sh[k], j, NULL, NULL, &off, NULL);
                        src = buffer(v->sh[k], b) + off;
                    }
                    if (r != 0) { /* rank r hands it over: its geometry, then its values */
                        parlm_status st = bcast(v, &s, sizeof s, r);
                        int64_t count = s.nseg * s.rows * s.cols;
                        if (st == PARLM_OK && (count < 0 || count > fm->max))
                            return parlm_error(PARLM_EINVAL, "sharded checkpoint: rank %d sent a "
                                               "slice of %lld values", r, (long long)count);
                        if (st == PARLM_OK && r != v->rank)
                            src = v->piece;
                        if (st == PARLM_OK)
                            st = bcast(v, src, (size_t)count * sizeof *src, r);
                        if (st != PARLM_OK)
                            return st; /* the communicator is broken: nothing more to do */
                    }
                    if (v->rank != 0)
                        continue;
                    parlm_status st = slice_check(fm, &s);
                    if (st == PARLM_OK && s.full_index != i)
                        st = parlm_error(PARLM_EINVAL, "sharded checkpoint: rank %d sent tensor "
                                         "%d for tensor %d", r, s.full_index, i);
                    if (st == PARLM_OK) {
                        parlm_gpt_slice_copy(&s, src, v->full, 1);
                        covered += s.nseg * s.rows * s.cols;
                    } else {
                        note(v, st);
                    }
                }
            if (v->rank != 0)
                continue;
            if (covered != fm->cnt[i])
                note(v, parlm_error(PARLM_EINVAL, "sharded checkpoint: the shards own %lld of "
                                    "the %lld values of full tensor %d (each value must be owned "
                                    "exactly once)", (long long)covered, (long long)fm->cnt[i],
                                    i));
            fnv_feed(&hs, v->full, (size_t)fm->cnt[i] * 4);
            if (f && v->err == PARLM_OK &&
                fwrite(v->full, 4, (size_t)fm->cnt[i], f) != (size_t)fm->cnt[i])
                note(v, parlm_error(PARLM_EIO, "%s: write failed: %s", v->path,
                                    strerror(errno)));
        }
        fnv_end_buffer(&hs);
    }
    if (f && v->err == PARLM_OK) {
        uint64_t h[H_SLOTS];
        parlm_ckpt_fill_header(h, v->cfg, fm->off[fm->nt - 1] + fm->cnt[fm->nt - 1],
                               v->nbufs == 3, v->state);
        h[H_HASH] = parlm_ckpt_final_hash(hs.h, h);
        if (fseek(f, 0, SEEK_SET) != 0 || fwrite(h, 8, H_SLOTS, f) != H_SLOTS)
            note(v, parlm_error(PARLM_EIO, "%s: write failed: %s", v->path, strerror(errno)));
    }
    return PARLM_OK;
}

static parlm_status write_fn(FILE *f, void *arg)
{
    saver *v = arg;
    v->ran = 1;
    parlm_status st = walk(v, f);
    return st != PARLM_OK ? st : v->err;
}

/* What this rank holds, agreed by all: the config (rank 0's), and per rank the pieces it
 * owns of each tensor, whether it has AdamW state, whether its shards are usable. */
static parlm_status agree_layout(saver *v)
{
    parlm_status st = PARLM_OK;
    int bad = 0, adam = 1;
    /* a rank with no shard (another data-parallel replica) takes rank 0's config */
    parlm_gpt_config root = v->n ? parlm_gpt_get_config(v->sh[0]) : (parlm_gpt_config){0};
    if ((st = bcast(v, &root, sizeof root, 0)) != PARLM_OK)
        return st;
    if (root.n_layer == 0) /* every rank sees it alike */
        return parlm_error(PARLM_EINVAL, "sharded checkpoint: rank 0 (the writer) holds no shard");
    for (int k = 0; k < v->n && !bad; k++) { /* the first problem is the one named */
        parlm_gpt_config c = parlm_gpt_get_config(v->sh[k]);
        if (memcmp(&c, &root, sizeof c)) {
            st = parlm_error(PARLM_EINVAL, "sharded checkpoint: rank %d's shard %d is of another "
                             "model (L%d NH%d C%d) than rank 0's (L%d NH%d C%d)", v->rank, k,
                             c.n_layer, c.n_head, c.n_embd, root.n_layer, root.n_head,
                             root.n_embd);
            bad = 1;
        } else if (parlm_gpt_get_step(v->sh[k]) != v->state->step) {
            st = parlm_error(PARLM_EINVAL, "sharded checkpoint: state step %lld differs from "
                             "shard %d's %lld", (long long)v->state->step, k,
                             (long long)parlm_gpt_get_step(v->sh[k]));
            bad = 1;
        }
        adam &= parlm_gpt_adam_m(v->sh[k]) != NULL;
    }
    v->cfg = root;
    parlm_status fst = full_model_make(&root, &v->fm);
    if (fst != PARLM_OK)
        return fst; /* same config everywhere: every rank fails alike */
    if (!bad && (st = make_maps(&v->fm, v->sh, v->n, &v->maps)) != PARLM_OK)
        bad = 1;
    int nt = v->fm.nt, w = nt + 2;
    float *t = calloc((size_t)v->size * (size_t)w, sizeof *t);
    v->owned = calloc((size_t)v->size * (size_t)nt, sizeof *v->owned);
    if (!t || !v->owned) {
        free(t);
        return parlm_error(PARLM_ENOMEM, "sharded checkpoint: out of memory");
    }
    float *mine = t + (size_t)v->rank * w;
    for (int k = 0; k < v->n && !bad; k++)
        for (int j = 0; j < parlm_gpt_num_tensors(v->sh[k]); j++) {
            parlm_gpt_slice s;
            parlm_gpt_tensor_slice(v->sh[k], j, &s);
            mine[s.full_index] += s.owner ? 1.0f : 0.0f;
        }
    mine[nt] = (float)bad, mine[nt + 1] = (float)adam;
    parlm_status cst = PARLM_OK;
#ifdef PARLM_HAVE_MPI
    if (v->comm && v->size > 1) /* small integers: the sum is exact in any order */
        cst = parlm_allreduce(v->comm, t, (int64_t)v->size * w, PARLM_REDUCE_SUM,
                              PARLM_ALGO_AUTO);
#endif
    int nbad = 0, nadam = 0;
    for (int r = 0; r < v->size && cst == PARLM_OK; r++) {
        for (int i = 0; i < nt; i++)
            v->owned[r * nt + i] = (int)t[(size_t)r * w + i];
        nbad += t[(size_t)r * w + nt] > 0, nadam += t[(size_t)r * w + nt + 1] > 0;
    }
    free(t);
    if (cst != PARLM_OK)
        return cst;
    if (bad)
        return st;
    if (nbad)
        return parlm_error(PARLM_EINVAL, "sharded checkpoint: %d rank(s) hold unusable shards "
                           "(each says why)", nbad);
    if (nadam && nadam != v->size)
        return parlm_error(PARLM_EINVAL, "sharded checkpoint: %d of %d ranks have AdamW state",
                           nadam, v->size);
    v->nbufs = nadam ? 3 : 1;
    return PARLM_OK;
}

parlm_status parlm_ckpt_save_shards_local(const char *path, parlm_status prior,
                                          parlm_gpt *const *sh, int n, struct parlm_comm *comm,
                                          const parlm_train_state *state)
{
    saver v = {.sh = sh, .n = n, .size = 1, .comm = comm, .state = state, .path = path,
               .err = prior};
    if (comm) {
#ifdef PARLM_HAVE_MPI
        v.rank = parlm_comm_rank(comm), v.size = parlm_comm_size(comm);
#else
        return parlm_error(PARLM_EUNSUPPORTED, "sharded checkpoint: a communicator in a build "
                           "without MPI");
#endif
    }
    parlm_status st = agree_layout(&v);
    if (st == PARLM_OK) {
        v.piece = v.size > 1 ? parlm_alloc((size_t)v.fm.max, sizeof *v.piece) : NULL;
        v.full = v.rank == 0 ? parlm_alloc((size_t)v.fm.max, sizeof *v.full) : NULL;
        int mem = (v.size == 1 || v.piece) && (v.rank != 0 || v.full);
        float ok = (float)mem; /* the walk is all or none: a rank short of memory stops all */
#ifdef PARLM_HAVE_MPI
        if (v.comm && v.size > 1)
            st = parlm_allreduce(v.comm, &ok, 1, PARLM_REDUCE_SUM, PARLM_ALGO_AUTO);
#endif
        if (st == PARLM_OK && ok != (float)v.size)
            st = parlm_error(PARLM_ENOMEM, "sharded checkpoint: %s out of memory for one tensor "
                             "(%lld values)", mem ? "another rank is" : "this rank is",
                             (long long)v.fm.max);
    }
    if (st == PARLM_OK) {
        if (v.rank == 0 && path && prior == PARLM_OK) {
            st = parlm_write_file_atomic(path, write_fn, &v);
            if (!v.ran) { /* the file could not be created: the others still hand over */
                note(&v, st);
                st = walk(&v, NULL);
                st = st != PARLM_OK ? st : v.err;
            }
        } else {
            st = walk(&v, NULL);
            if (v.rank == 0 && st == PARLM_OK)
                st = v.err != PARLM_OK ? v.err
                     : path ? PARLM_OK : parlm_error(PARLM_EINVAL, "sharded checkpoint: no path");
        }
    }
    parlm_free(v.piece);
    parlm_free(v.full);
    free(v.owned);
    free_maps(v.maps, n);
    full_model_free(&v.fm);
    return st;
}

parlm_status parlm_ckpt_share_status(struct parlm_comm *comm, parlm_status st)
{
#ifdef PARLM_HAVE_MPI
    if (comm && parlm_comm_size(comm) > 1) {
        struct {
            int st;
            char msg[500];
        } m = {(int)st, ""};
        snprintf(m.msg, sizeof m.msg, "%s", st != PARLM_OK ? parlm_last_error() : "");
        if (parlm_comm_bcast(comm, &m, sizeof m, 0) != PARLM_OK)
            return PARLM_ESYSTEM; /* its message is set */
        if (m.st != PARLM_OK) {
            if (parlm_comm_rank(comm) == 0)
                return st;
            return parlm_error((parlm_status)m.st, "rank 0: %s", m.msg);
        }
        return PARLM_OK;
    }
#else
    (void)comm;
#endif
    return st;
}

parlm_status parlm_checkpoint_save_shards(const char *path, parlm_gpt *const *shards, int n,
                                          struct parlm_comm *comm, const parlm_train_state *state)
{
    if ((!shards && n) || n < 0 || (n == 0 && !comm) || !state)
        return parlm_error(PARLM_EINVAL, "parlm_checkpoint_save_shards: %s",
                           n < 0 || (n == 0 && !comm) ? "n must be >= 1 (0 only with a comm)"
                                                      : "null argument");
    for (int i = 0; i < n; i++)
        RETURN_IF_ERROR(parlm_gpt_check_owned(shards[i], "parlm_checkpoint_save_shards"));
    for (int k = 0; k < n; k++)
        if (!shards[k])
            return parlm_error(PARLM_EINVAL, "parlm_checkpoint_save_shards: shard %d is NULL", k);
    parlm_status st = parlm_ckpt_save_shards_local(path, PARLM_OK, shards, n, comm, state);
    return parlm_ckpt_share_status(comm, st);
}

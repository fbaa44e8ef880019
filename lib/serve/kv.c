/* lib/serve/kv.c — the paged KV cache: one pool of fixed-size blocks (as in vLLM's
 * PagedAttention) handed to sequences through per-sequence block tables. A sequence grows
 * a block at a time and gives every block back when it ends, so memory in use is what the
 * live sequences hold, never max_seq per request, and fragmentation is at most one block
 * per sequence. */
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "../../base/error.h"
#include "parlm/tensor.h"

int64_t ps_kv_block_bytes(int L, int C, int block)
{
    return (int64_t)L * 2 * block * C * (int64_t)sizeof(float);
}

parlm_status ps_kv_pool_init(ps_kv_pool *p, int L, int C, int block, int64_t bytes)
{
    memset(p, 0, sizeof *p);
    if (L < 1 || C < 1 || block < 1 || bytes < 1)
        return parlm_error(PARLM_EINVAL, "ps_kv_pool_init: L %d, C %d, block %d, bytes %lld", L,
                           C, block, (long long)bytes);
    int64_t bb = ps_kv_block_bytes(L, C, block), n = bytes / bb;
    if (n < 1)
        n = 1;
    if (n > (1 << 24))
        return parlm_error(PARLM_EINVAL, "ps_kv_pool_init: %lld blocks is too many",
                           (long long)n);
    p->L = L, p->C = C, p->block = block, p->nblocks = (int)n, p->nfree = (int)n;
    p->free_list = malloc((size_t)n * sizeof(int));
    p->data = parlm_alloc((size_t)(n * bb / (int64_t)sizeof(float)), sizeof(float));
    if (!p->free_list || !p->data) {
        ps_kv_pool_free(p);
        return parlm_error(PARLM_ENOMEM, "ps_kv_pool_init: %lld blocks of %lld bytes",
                           (long long)n, (long long)bb);
    }
    for (int i = 0; i < p->nblocks; i++) /* block 0 on top: handed out first */
        p->free_list[i] = p->nblocks - 1 - i;
    return PARLM_OK;
}

void ps_kv_pool_free(ps_kv_pool *p)
{
    free(p->free_list);
    parlm_free(p->data);
    memset(p, 0, sizeof *p);
}

parlm_status ps_kv_seq_reserve(ps_kv_pool *p, ps_kv_seq *s, int npos)
{
    int need = (npos + p->block - 1) / p->block;
    if (need <= s->nblocks)
        return PARLM_OK;
    if (need - s->nblocks > p->nfree)
        return parlm_error(PARLM_ENOMEM, "KV pool: %d more blocks needed, %d free",
                           need - s->nblocks, p->nfree);
    if (need > s->cap) {
        int cap = need < 8 ? 8 : need * 2;
        int *b = realloc(s->blocks, (size_t)cap * sizeof(int));
        if (!b)
            return parlm_error(PARLM_ENOMEM, "KV pool: block table of %d", cap);
        s->blocks = b, s->cap = cap;
    }
    while (s->nblocks < need)
        s->blocks[s->nblocks++] = p->free_list[--p->nfree];
    return PARLM_OK;
}

void ps_kv_seq_release(ps_kv_pool *p, ps_kv_seq *s)
{
    while (s->nblocks > 0)
        p->free_list[p->nfree++] = s->blocks[--s->nblocks];
}

float *ps_kv_at(const ps_kv_pool *p, const ps_kv_seq *s, int l, int v, int pos)
{
    int64_t b = s->blocks[pos / p->block];
    return p->data + (((b * p->L + l) * 2 + v) * p->block + pos % p->block) * (int64_t)p->C;
}

/* lib/core/op_args.h — internal: the argument checks of the public ops (ops.c, llama_ops.c).
 * The one idea: a buffer argument is its name, pointer, extent in floats and whether the op
 * writes it; an output may not overlap any other buffer unless the op allows that pair in
 * place, and then only as the very same pointer and extent. Every refusal is a
 * PARLM_EINVAL whose message names the function and the argument. */
#ifndef PARLM_LIB_OP_ARGS_H
#define PARLM_LIB_OP_ARGS_H
#include <stddef.h>
#include <stdint.h>

#include "../../base/error.h"

/* Largest element count whose byte size fits a ptrdiff_t. */
#define OP_MAX_FLOATS ((int64_t)(PTRDIFF_MAX / (ptrdiff_t)sizeof(float)))

/* One buffer argument; may_equal: the other arguments (bit i = args[i]) it may coincide
 * with exactly, for in-place use. */
typedef struct op_arg {
    const char *name;
    const void *p;
    int64_t n;
    int written;
    unsigned may_equal;
} op_arg;

static inline int op_overlap(const op_arg *a, const op_arg *b)
{
    uintptr_t pa = (uintptr_t)a->p, pb = (uintptr_t)b->p;
    uintptr_t ea = pa + (uintptr_t)a->n * sizeof(float), eb = pb + (uintptr_t)b->n * sizeof(float);
    return pa < eb && pb < ea;
}

/* NULLs, then every overlap that involves an output and is not an allowed in-place. */
static inline parlm_status op_check_args(const char *fn, const op_arg *args, int nargs)
{
    for (int i = 0; i < nargs; i++)
        if (!args[i].p)
            return parlm_error(PARLM_EINVAL, "%s: %s is NULL", fn, args[i].name);
    for (int i = 0; i < nargs; i++)
        for (int j = i + 1; j < nargs; j++) {
            const op_arg *a = &args[i], *b = &args[j];
            if ((!a->written && !b->written) || !op_overlap(a, b))
                continue;
            int allowed = ((a->may_equal >> j) & 1u) || ((b->may_equal >> i) & 1u);
            if (allowed && a->p == b->p && a->n == b->n)
                continue;
            if (allowed)
                return parlm_error(PARLM_EINVAL,
                                   "%s: %s and %s overlap; in-place use must pass the same "
                                   "pointer for both",
                                   fn, a->name, b->name);
            return parlm_error(PARLM_EINVAL, "%s: %s and %s must not overlap", fn, a->name,
                               b->name);
        }
    return PARLM_OK;
}

/* n >= 1 floats, addressable */
static inline parlm_status op_check_count(const char *fn, int64_t n)
{
    if (n < 1)
        return parlm_error(PARLM_EINVAL, "%s: n must be >= 1, got %lld", fn, (long long)n);
    if (n > OP_MAX_FLOATS)
        return parlm_error(PARLM_EINVAL, "%s: n = %lld floats exceeds the address space", fn,
                           (long long)n);
    return PARLM_OK;
}

/* rows >= 1, c >= 1 (called cname in messages) and rows * c floats addressable;
 * *numel = rows * c, or 0 when refused. */
static inline parlm_status op_check_rows(const char *fn, int64_t rows, int64_t c,
                                         const char *cname, int64_t *numel)
{
    *numel = 0;
    if (rows < 1)
        return parlm_error(PARLM_EINVAL, "%s: rows must be >= 1, got %lld", fn, (long long)rows);
    if (c < 1)
        return parlm_error(PARLM_EINVAL, "%s: %s must be >= 1, got %lld", fn, cname,
                           (long long)c);
    if (rows > OP_MAX_FLOATS / c)
        return parlm_error(PARLM_EINVAL, "%s: rows * %s = %lld * %lld floats exceeds the address "
                           "space", fn, cname, (long long)rows, (long long)c);
    *numel = rows * c;
    return PARLM_OK;
}
#endif

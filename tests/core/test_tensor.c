/* tests/core/test_tensor.c — lib/core/tensor.c: allocation (aligned, zeroed, owned), views
 * that borrow, and bad shapes refused with a message; also the status strings of
 * base/error.c that those messages come with. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

START_TEST(tensor_alloc_is_aligned_zeroed_and_owned)
{
    parlm_tensor t;
    int64_t shape[3] = {3, 5, 7};
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 3, shape), PARLM_OK);
    ck_assert_ptr_nonnull(t.data);
    ck_assert_int_eq((uintptr_t)t.data % PARLM_ALIGN, 0);
    ck_assert_int_eq(parlm_tensor_numel(&t), 105);
    ck_assert_uint_eq(parlm_tensor_nbytes(&t), 420);
    ck_assert_int_eq(t.stride[0], 35);
    ck_assert_int_eq(t.stride[1], 7);
    ck_assert_int_eq(t.stride[2], 1);
    ck_assert(parlm_tensor_is_contiguous(&t));
    const float *f = t.data;
    for (int i = 0; i < 105; i++)
        ck_assert(f[i] == 0.0f);
    ck_assert(t.owns);
    parlm_tensor_free(&t);
    ck_assert_ptr_null(t.data);
    parlm_tensor_free(&t); /* twice is harmless */
    parlm_tensor_free(NULL);

    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_BF16, 1, (int64_t[]){9}), PARLM_OK);
    ck_assert_uint_eq(parlm_tensor_nbytes(&t), 18);
    parlm_tensor_free(&t);
}
END_TEST

START_TEST(tensor_views_borrow)
{
    parlm_tensor t, v, r;
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 2, (int64_t[]){4, 6}), PARLM_OK);
    float *f = t.data;
    for (int i = 0; i < 24; i++)
        f[i] = (float)i;
    ck_assert_int_eq(parlm_tensor_view_rows(&v, &t, 1, 2), PARLM_OK);
    ck_assert_int_eq(v.shape[0], 2);
    ck_assert(((float *)v.data)[0] == 6.0f);
    ck_assert(!v.owns);
    parlm_tensor_free(&v); /* releases nothing */
    ck_assert(f[23] == 23.0f);
    ck_assert_int_eq(parlm_tensor_reshape(&r, &t, 3, (int64_t[]){2, 3, 4}), PARLM_OK);
    ck_assert_int_eq(r.stride[0], 12);
    ck_assert(((float *)r.data)[23] == 23.0f);
    ck_assert_int_eq(parlm_tensor_reshape(&r, &t, 2, (int64_t[]){5, 5}), PARLM_EINVAL);
    ck_assert_int_eq(parlm_tensor_view_rows(&v, &t, 3, 2), PARLM_EINVAL);
    ck_assert_int_eq(parlm_tensor_view_rows(&v, &t, -1, 1), PARLM_EINVAL);
    parlm_tensor_free(&t);

    float buf[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(parlm_tensor_wrap(&t, buf, PARLM_F32, 2, (int64_t[]){2, 3}), PARLM_OK);
    parlm_tensor_free(&t); /* must not free the stack buffer */
    ck_assert(buf[5] == 6.0f);
}
END_TEST

START_TEST(tensor_bad_input_is_an_error_with_message)
{
    parlm_tensor t;
    parlm_clear_error();
    ck_assert_int_eq(parlm_tensor_alloc(NULL, PARLM_F32, 1, (int64_t[]){1}), PARLM_EINVAL);
    ck_assert_str_ne(parlm_last_error(), "");
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 0, (int64_t[]){1}), PARLM_EINVAL);
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 5, (int64_t[]){1, 1, 1, 1, 1}),
                     PARLM_EINVAL);
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 2, (int64_t[]){3, 0}), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "dim 1"));
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 2, (int64_t[]){3, -4}), PARLM_EINVAL);
    ck_assert_int_eq(parlm_tensor_alloc(&t, (parlm_dtype)7, 1, (int64_t[]){3}), PARLM_EINVAL);
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 1, NULL), PARLM_EINVAL);
    /* 2^62 * 2^62 elements overflows int64: an error, not a short buffer */
    int64_t huge[2] = {INT64_C(1) << 62, INT64_C(1) << 62};
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 2, huge), PARLM_ENOMEM);
    ck_assert_ptr_null(t.data);
    /* representable but not allocatable */
    ck_assert_int_eq(parlm_tensor_alloc(&t, PARLM_F32, 1, (int64_t[]){INT64_C(1) << 60}),
                     PARLM_ENOMEM);
    ck_assert_ptr_null(parlm_alloc(SIZE_MAX / 2, 4));
    ck_assert_int_eq(parlm_tensor_wrap(&t, NULL, PARLM_F32, 1, (int64_t[]){1}), PARLM_EINVAL);
}
END_TEST

START_TEST(status_strings)
{
    for (int s = 0; s >= PARLM_ESYSTEM; s--)
        ck_assert_str_ne(parlm_strerror((parlm_status)s), "unknown error");
    ck_assert_str_eq(parlm_strerror((parlm_status)-99), "unknown error");
    ck_assert_str_eq(parlm_version(), PARLM_VERSION);
}
END_TEST

static Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    tcase_add_test(tc, tensor_alloc_is_aligned_zeroed_and_owned);
    tcase_add_test(tc, tensor_views_borrow);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, tensor_bad_input_is_an_error_with_message);
    tcase_add_test(tc, status_strings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(tensor_suite()); }

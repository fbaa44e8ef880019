/* tests/test_core.c — the tensor type, error reporting and kernel-set selection.
 * PARLM_ISA is read once per process, so the environment tests re-run this very
 * program (argv[1] == "--isa-init") as a child with the variable set. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "parlm.h"
#include "../testutil.h"

static char self_path[4096];

/* ---- tensors ---------------------------------------------------------------- */

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

/* ---- kernel sets ------------------------------------------------------------------ */

START_TEST(isa_names_parse_and_select)
{
    parlm_isa isa;
    for (int i = 0; i < PARLM_ISA_COUNT; i++) {
        ck_assert_int_eq(parlm_isa_parse(parlm_isa_name((parlm_isa)i), &isa), PARLM_OK);
        ck_assert_int_eq(isa, i);
    }
    ck_assert_int_eq(parlm_isa_parse("sse9", &isa), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "sse9"));
    ck_assert(parlm_isa_supported(PARLM_ISA_SCALAR));
    ck_assert(parlm_isa_supported(parlm_isa_current()));
    /* x86-64 and aarch64 are exclusive: one of avx2 / neon is unsupported */
    ck_assert(!(parlm_isa_supported(PARLM_ISA_AVX2) && parlm_isa_supported(PARLM_ISA_NEON)));
    parlm_isa orig = parlm_isa_current();
    for (int i = 0; i < PARLM_ISA_COUNT; i++) {
        parlm_isa before = parlm_isa_current();
        parlm_status st = parlm_isa_select((parlm_isa)i);
        if (parlm_isa_supported((parlm_isa)i)) {
            ck_assert_int_eq(st, PARLM_OK);
            ck_assert_int_eq(parlm_isa_current(), i);
        } else {
            ck_assert_int_eq(st, PARLM_EUNSUPPORTED);
            ck_assert_ptr_nonnull(strstr(parlm_last_error(), parlm_isa_name((parlm_isa)i)));
            ck_assert_int_eq(parlm_isa_current(), before); /* a refused switch changes nothing */
        }
    }
    ck_assert_int_eq(parlm_isa_select((parlm_isa)42), PARLM_EINVAL);
    ck_assert_int_eq(parlm_isa_select(orig), PARLM_OK);
}
END_TEST

/* Runs this program with PARLM_ISA=value; returns its exit status, message in out. */
static int run_isa_child(const char *value, char *out, size_t outlen)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        setenv("PARLM_ISA", value, 1);
        execl(self_path, self_path, "--isa-init", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < outlen && (r = read(fds[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(isa_environment_override)
{
    char out[512];
    ck_assert_int_eq(run_isa_child("scalar", out, sizeof out), 0);
    ck_assert_str_eq(out, "scalar");
    ck_assert_int_eq(run_isa_child("bogus", out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, "bogus"));
    /* a set this CPU cannot run: neon on x86-64, avx2 on aarch64 */
    const char *foreign = parlm_isa_supported(PARLM_ISA_NEON) ? "avx2" : "neon";
    ck_assert_int_eq(run_isa_child(foreign, out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, foreign));
    for (int i = 1; i < PARLM_ISA_COUNT; i++)
        if (parlm_isa_supported((parlm_isa)i)) {
            ck_assert_int_eq(run_isa_child(parlm_isa_name((parlm_isa)i), out, sizeof out), 0);
            ck_assert_str_eq(out, parlm_isa_name((parlm_isa)i));
        }
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("tensor");
    tcase_add_test(tc, tensor_alloc_is_aligned_zeroed_and_owned);
    tcase_add_test(tc, tensor_views_borrow);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, tensor_bad_input_is_an_error_with_message);
    tcase_add_test(tc, status_strings);
    suite_add_tcase(s, tc);
    tc = tcase_create("isa");
    tcase_add_test(tc, isa_names_parse_and_select);
    tcase_add_test(tc, isa_environment_override);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--isa-init") == 0) {
        if (parlm_isa_init() != PARLM_OK) {
            printf("%s", parlm_last_error());
            return 1;
        }
        printf("%s", parlm_isa_name(parlm_isa_current()));
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        return 99;
    self_path[n] = '\0';
    SRunner *sr = srunner_create(core_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

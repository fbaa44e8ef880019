/* tests/fuzz/fuzz_plan.c — libFuzzer target for the planner's JSON files (parlm/plan.h):
 * machine profiles, cluster descriptions and saved plans, which users copy between
 * machines and edit by hand. The first byte picks the loader; the rest is the file. Any
 * crash, leak or sanitizer report is a bug: every input must end in PARLM_OK or an error
 * code. Run by .ci/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "parlm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char path[64];
    snprintf(path, sizeof path, "/tmp/parlm-fuzz-plan-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    switch (data[0] % 3) {
    case 0: {
        static parlm_plan_profile pr; /* ~2 KB of GEMM points */
        if (parlm_plan_profile_load(path, &pr) == PARLM_OK) {
            /* a loaded profile must be usable: a rate for any shape, finite or 0 */
            (void)parlm_plan_gemm_rate(&pr, 64, 768, 768);
        }
        break;
    }
    case 1: {
        parlm_plan_cluster cl;
        (void)parlm_plan_cluster_load(path, &cl);
        break;
    }
    default: {
        parlm_plan_request rq;
        parlm_plan_entry *e = NULL;
        int n = 0;
        if (parlm_plan_load(path, &rq, &e, &n) == PARLM_OK)
            free(e);
        break;
    }
    }
    unlink(path);
    return 0;
}

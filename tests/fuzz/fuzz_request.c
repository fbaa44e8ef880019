/* tests/fuzz/fuzz_request.c — libFuzzer target for parlm-serve's request parsing: the body
 * of POST /v1/completions through ps_parse_completion (UTF-8 check, jansson, every field
 * rule, byte-tokenizer encoding of text prompts). Every input must end in success or a
 * 4xx/5xx error with a message; any crash, leak or sanitizer report is a bug, and an
 * accepted request must satisfy what the engine relies on. Run by .ci/fuzz.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/serve/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static parlm_tokenizer *tok;
    if (!tok && parlm_tokenizer_bytes(&tok) != PARLM_OK)
        abort();
    ps_params p;
    ps_error e;
    if (ps_parse_completion((const char *)data, size, tok, 64, 256, &p, &e) == 0) {
        if (p.nprompt < 1 || p.max_tokens < 1 || p.nprompt + p.max_tokens > 64 ||
            !(p.temperature >= 0) || !(p.top_p > 0 && p.top_p <= 1) || p.top_k < 0 ||
            p.nstop < 0 || p.nstop > PS_MAX_STOP)
            abort();
        for (int i = 0; i < p.nprompt; i++)
            if (p.prompt[i] < 0 || p.prompt[i] >= 256)
                abort();
        for (int i = 0; i < p.nstop; i++)
            if (!p.stop[i] || !p.stop[i][0])
                abort();
        ps_params_free(&p);
    } else if (e.status < 400 || e.status > 599 || !e.message[0] || !e.type) {
        abort();
    }
    return 0;
}

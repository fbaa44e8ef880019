/* lib/serve/request.c — the body of POST /v1/completions, parsed with jansson and checked
 * field by field against OpenAI's rules, so that every bad request is a 400 naming the
 * field (never a crash, never a silent default). Fields a client may send with their
 * default value (echo false, logprobs null, penalties 0, ...) are accepted at that value
 * only: anything else would be a feature we do not have. Unknown fields are refused. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "parlm/tensor.h"

static int fail(ps_error *e, int status, const char *param, const char *code, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static int fail(ps_error *e, int status, const char *param, const char *code, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    e->status = status;
    e->type = "invalid_request_error";
    e->param = param;
    e->code = code;
    return -1;
}

void ps_params_free(ps_params *p)
{
    free(p->prompt);
    for (int i = 0; i < p->nstop; i++)
        free(p->stop[i]);
    free(p->model);
    memset(p, 0, sizeof *p);
}

/* the keys a request may have; the ones with "default only" rules are checked below */
static const char *const known[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "n",
    "stream", "stream_options", "user", "echo", "logprobs", "best_of", "frequency_penalty",
    "presence_penalty", "suffix", "logit_bias", NULL};

static int number(json_t *v, double *out)
{
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return isfinite(*out);
}

static int parse_prompt(json_t *v, const parlm_tokenizer *tok, int V, ps_params *p, ps_error *e)
{
    if (!v || json_is_null(v))
        return fail(e, 400, "prompt", NULL, "you must provide a prompt");
    if (json_is_string(v)) {
        size_t len = json_string_length(v);
        if (len == 0)
            return fail(e, 400, "prompt", NULL, "prompt is empty");
        if (!tok || !parlm_tokenizer_can_encode(tok))
            return fail(e, 400, "prompt", NULL,
                        "this server cannot encode text: give the prompt as token ids");
        int32_t *ids;
        size_t n;
        /* with the vocabulary's special tokens: a Llama tokenizer's BOS first (as
         * llama.cpp's server; GPT-2's adds nothing) */
        if (parlm_tokenizer_encode_special(tok, json_string_value(v), len, 1, &ids, &n) !=
            PARLM_OK)
            return fail(e, 400, "prompt", NULL, "prompt could not be tokenized");
        p->prompt = malloc((n ? n : 1) * sizeof(int32_t));
        if (!p->prompt) {
            parlm_free(ids);
            return fail(e, 500, NULL, NULL, "out of memory");
        }
        memcpy(p->prompt, ids, n * sizeof(int32_t));
        parlm_free(ids);
        p->nprompt = (int)n;
        if (n == 0)
            return fail(e, 400, "prompt", NULL, "prompt is empty");
        for (size_t i = 0; i < n; i++)
            if (p->prompt[i] >= V)
                return fail(e, 400, "prompt", NULL, "token %d of the prompt is outside the "
                            "model's vocabulary of %d", p->prompt[i], V);
        return 0;
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n == 0)
            return fail(e, 400, "prompt", NULL, "prompt is empty");
        if (!json_is_integer(json_array_get(v, 0)))
            return fail(e, 400, "prompt", NULL, "prompt must be a string or an array of token "
                        "ids (batched prompts are not supported)");
        if (n > (1u << 24))
            return fail(e, 400, "prompt", "context_length_exceeded", "prompt is too long");
        p->prompt = malloc(n * sizeof(int32_t));
        if (!p->prompt)
            return fail(e, 500, NULL, NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(v, i);
            if (!json_is_integer(t))
                return fail(e, 400, "prompt", NULL, "prompt[%zu] is not an integer token id", i);
            json_int_t id = json_integer_value(t);
            if (id < 0 || id >= V)
                return fail(e, 400, "prompt", NULL, "prompt[%zu] = %lld is outside the "
                            "vocabulary [0, %d)", i, (long long)id, V);
            p->prompt[i] = (int32_t)id;
        }
        p->nprompt = (int)n;
        return 0;
    }
    return fail(e, 400, "prompt", NULL, "prompt must be a string or an array of token ids");
}

static int parse_stop(json_t *v, ps_params *p, ps_error *e)
{
    if (!v || json_is_null(v))
        return 0;
    json_t *one[1] = {v};
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > PS_MAX_STOP)
            return fail(e, 400, "stop", NULL, "at most %d stop sequences", PS_MAX_STOP);
        items = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = items ? items[i] : json_array_get(v, i);
        if (!json_is_string(s))
            return fail(e, 400, "stop", NULL, "stop must be a string or an array of strings");
        size_t len = json_string_length(s);
        if (len == 0)
            return fail(e, 400, "stop", NULL, "stop sequences must not be empty");
        if (len > 256)
            return fail(e, 400, "stop", NULL, "stop sequences are limited to 256 bytes");
        p->stop[p->nstop] = strdup(json_string_value(s));
        if (!p->stop[p->nstop])
            return fail(e, 500, NULL, NULL, "out of memory");
        p->nstop++;
    }
    return 0;
}

static int parse(json_t *root, const parlm_tokenizer *tok, int max_seq, int V, ps_params *p,
                 ps_error *e)
{
    if (!json_is_object(root))
        return fail(e, 400, NULL, NULL, "the request body must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= !strcmp(key, known[i]);
        if (!ok)
            return fail(e, 400, NULL, NULL, "Unrecognized request argument supplied: %.80s", key);
    }
    double d;
    p->max_tokens = 16; /* OpenAI's defaults */
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    if ((v = json_object_get(root, "model")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return fail(e, 400, "model", NULL, "model must be a string");
        if (!(p->model = strdup(json_string_value(v))))
            return fail(e, 500, NULL, NULL, "out of memory");
    }
    if (parse_prompt(json_object_get(root, "prompt"), tok, V, p, e))
        return -1;
    if ((v = json_object_get(root, "max_tokens")) && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(e, 400, "max_tokens", NULL, "max_tokens must be an integer");
        json_int_t mt = json_integer_value(v);
        if (mt < 1)
            return fail(e, 400, "max_tokens", NULL, "max_tokens must be at least 1, got %lld",
                        (long long)mt);
        if (mt > max_seq)
            return fail(e, 400, "max_tokens", "context_length_exceeded", "max_tokens = %lld is "
                        "more than the model's context of %d", (long long)mt, max_seq);
        p->max_tokens = (int)mt;
    }
    if (p->nprompt >= max_seq)
        return fail(e, 400, "prompt", "context_length_exceeded", "This model's maximum context "
                    "length is %d tokens, but the prompt has %d", max_seq, p->nprompt);
    if (p->nprompt + p->max_tokens > max_seq)
        return fail(e, 400, "max_tokens", "context_length_exceeded", "This model's maximum "
                    "context length is %d tokens, but you requested %d (%d in the prompt, %d "
                    "max_tokens)", max_seq, p->nprompt + p->max_tokens, p->nprompt,
                    p->max_tokens);
    if ((v = json_object_get(root, "temperature")) && !json_is_null(v)) {
        if (!number(v, &d))
            return fail(e, 400, "temperature", NULL, "temperature must be a number");
        if (d < 0 || d > 2)
            return fail(e, 400, "temperature", NULL, "temperature must be in [0, 2], got %g", d);
        p->temperature = (float)d;
    }
    if ((v = json_object_get(root, "top_p")) && !json_is_null(v)) {
        if (!number(v, &d))
            return fail(e, 400, "top_p", NULL, "top_p must be a number");
        if (!(d > 0 && d <= 1))
            return fail(e, 400, "top_p", NULL, "top_p must be in (0, 1], got %g", d);
        /* a top_p below float's range (1e-50) means what 1e-30 means, the most likely
         * token only; rounding it to 0 would break the (0, 1] rule the sampler relies on */
        p->top_p = d < FLT_MIN ? FLT_MIN : (float)d;
    }
    if ((v = json_object_get(root, "top_k")) && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(e, 400, "top_k", NULL, "top_k must be an integer");
        json_int_t k = json_integer_value(v);
        if (k < -1 || k > V)
            return fail(e, 400, "top_k", NULL, "top_k must be -1 (all), 0 (all) or in [1, %d]", V);
        p->top_k = k < 0 ? 0 : (int)k;
    }
    if (parse_stop(json_object_get(root, "stop"), p, e))
        return -1;
    if ((v = json_object_get(root, "seed")) && !json_is_null(v)) {
        if (!json_is_integer(v))
            return fail(e, 400, "seed", NULL, "seed must be an integer");
        p->seed = (uint64_t)json_integer_value(v);
        p->has_seed = 1;
    }
    if ((v = json_object_get(root, "n")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 1))
        return fail(e, 400, "n", NULL, "only n = 1 is supported");
    if ((v = json_object_get(root, "best_of")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 1))
        return fail(e, 400, "best_of", NULL, "only best_of = 1 is supported");
    if ((v = json_object_get(root, "stream")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return fail(e, 400, "stream", NULL, "stream must be a boolean");
        p->stream = json_is_true(v);
    }
    if ((v = json_object_get(root, "stream_options")) && !json_is_null(v)) {
        json_t *u = json_is_object(v) ? json_object_get(v, "include_usage") : NULL;
        if (!json_is_object(v) || json_object_size(v) > (u ? 1u : 0u))
            return fail(e, 400, "stream_options", NULL,
                        "stream_options may only hold include_usage");
        if (u) {
            if (!json_is_boolean(u))
                return fail(e, 400, "stream_options", NULL, "include_usage must be a boolean");
            p->include_usage = json_is_true(u);
        }
        if (!p->stream)
            return fail(e, 400, "stream_options", NULL, "stream_options needs stream = true");
    }
    if ((v = json_object_get(root, "user")) && !json_is_null(v) && !json_is_string(v))
        return fail(e, 400, "user", NULL, "user must be a string");
    if ((v = json_object_get(root, "echo")) && !json_is_null(v) && !json_is_false(v))
        return fail(e, 400, "echo", NULL, "echo is not supported");
    if ((v = json_object_get(root, "logprobs")) && !json_is_null(v))
        return fail(e, 400, "logprobs", NULL, "logprobs are not supported");
    if ((v = json_object_get(root, "suffix")) && !json_is_null(v))
        return fail(e, 400, "suffix", NULL, "suffix is not supported");
    if ((v = json_object_get(root, "logit_bias")) && !json_is_null(v) &&
        !(json_is_object(v) && json_object_size(v) == 0))
        return fail(e, 400, "logit_bias", NULL, "logit_bias is not supported");
    static const char *const penalties[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(root, penalties[i])) && !json_is_null(v) &&
            !(number(v, &d) && d == 0))
            return fail(e, 400, penalties[i], NULL, "%s is not supported (only 0)", penalties[i]);
    return 0;
}

int ps_parse_completion(const char *body, size_t len, const parlm_tokenizer *tok, int max_seq,
                        int V, ps_params *p, ps_error *err)
{
    memset(p, 0, sizeof *p);
    memset(err, 0, sizeof *err);
    if (!ps_utf8_valid(body, len))
        return fail(err, 400, NULL, NULL, "the request body is not valid UTF-8");
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(err, 400, NULL, NULL, "malformed JSON: %.120s (at byte %d)", je.text,
                    je.position);
    int rc = parse(root, tok, max_seq, V, p, err);
    json_decref(root);
    if (rc)
        ps_params_free(p);
    return rc;
}

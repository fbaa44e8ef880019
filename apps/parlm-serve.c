/* apps/parlm-serve.c — an OpenAI-compatible HTTP inference server: POST /v1/completions
 * (streaming with server-sent events), GET /v1/models, /health, /metrics (Prometheus).
 * HTTP is GNU libmicrohttpd with a thread per connection, JSON is jansson; generation is
 * lib/serve's engine (continuous batching over a paged KV cache). A connection thread only
 * parses, queues and then waits on its request, polling its socket so that a client that
 * goes away cancels the request (and frees its KV blocks) within a fraction of a second.
 * SIGTERM/SIGINT: stop accepting, let running requests finish up to --shutdown-timeout,
 * exit 0. With --tp N under mpirun, each of N ranks holds a tensor-parallel shard; rank 0
 * speaks HTTP and schedules, the others run its steps (ps_engine_worker) until it stops
 * them: they ignore SIGTERM/SIGINT themselves and end when rank 0 does. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <omp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/serve/serve.h"
#include "cli.h"
#include "model_file.h"
#include "parlm.h"
#if PARLM_WITH_MPI
#include <mpi.h>
#endif

static void usage(FILE *f)
{
    fprintf(f,
        "usage: parlm-serve --model PATH [options]\n"
        "  --model PATH          a GGUF file (GPT-2 or Llama, with its tokenizer: no other\n"
        "                        file needed), a parlm checkpoint, a --ckpt-dir of\n"
        "                        parlm-train (its newest checkpoint) or an llm.c model file\n"
        "  --host ADDR           address to listen on (default 127.0.0.1)\n"
        "  --port N              TCP port (default 8080; 0 = any free port, printed at start)\n"
        "  --encoder F --vocab F GPT-2 tokenizer files (text prompts and text output)\n"
        "  --tokenizer F         the tokenizer of GGUF file F (default: a GGUF model's own)\n"
        "  --model-name NAME     the id in /v1/models and responses (default: the file name)\n"
        "  --kv-mb N             KV cache pool in MiB (default 256)\n"
        "  --block N             KV block size in positions (default 16)\n"
        "  --max-batch N         sequences generating at once (default 32)\n"
        "  --chunk N             prompt positions per step, mixed with decoding (default 64)\n"
        "  --max-queue N         requests waiting for a slot before 429 (default 64)\n"
        "  --threads N           OpenMP threads of the forward (default: all cores; under\n"
        "                        mpirun, the rank's share)\n"
        "  --tp N                tensor parallelism over N ranks (mpirun -np N; N must divide\n"
        "                        the heads and the padded vocabulary; GPT-2 models); rank 0\n"
        "                        serves HTTP\n"
        "  --type T              f32, bf16 (the GEMMs read a bf16 copy, f32 arithmetic), q8_0\n"
        "                        or q4_0 (generated tokens run on ggml's blocks, activations\n"
        "                        quantized to 8 bits per 32; prompts stay f32, as in\n"
        "                        parlm-generate). Default: as a GGUF file stores its matrices\n"
        "                        (q8_0, q4_0, bf16; f16 runs as f32), else f32\n"
        "  --bf16                the same as --type bf16\n"
        "  --max-body-kb N       request body limit (default 1024)\n"
        "  --max-connections N   open connections at most (default 256)\n"
        "  --max-connections-per-ip N  open connections from one address at most (default:\n"
        "                        half of --max-connections; more are closed at once, so\n"
        "                        one client that opens many or trickles its bytes cannot\n"
        "                        take every slot; behind a load balancer, where every\n"
        "                        client has its address, set it to --max-connections)\n"
        "  --idle-timeout S      close a connection idle this long (default 30)\n"
        "  --shutdown-timeout S  on SIGTERM, wait this long for running requests (default 30)\n"
        "  -h, --help\n");
}

static const char *prog = "parlm-serve";

typedef struct server {
    ps_engine *eng;
    const parlm_tokenizer *tok;
    const char *name;
    int max_seq, vocab;
    size_t max_body;
    time_t started;
    pthread_mutex_t mu;
    uint64_t codes[600];          /* responses by HTTP status */
    uint64_t next_id;
    int live;                     /* request contexts not yet freed: responses in flight */
    volatile sig_atomic_t draining;
} server;

static server S;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void count(int status)
{
    pthread_mutex_lock(&S.mu);
    if (status >= 0 && status < 600)
        S.codes[status]++;
    pthread_mutex_unlock(&S.mu);
}

/* ---- responses ------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *type,
                             char *body, int retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", s);
    }
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count(status);
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, int status, json_t *j,
                                  int retry_after)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return MHD_NO;
    /* jansson's buffer: copy into one of malloc's for MHD_RESPMEM_MUST_FREE */
    char *b = strdup(s);
    free(s);
    if (!b)
        return MHD_NO;
    return reply(c, status, "application/json", b, retry_after);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const ps_error *e,
                                   int retry_after)
{
    json_t *err = json_pack("{s:s, s:s, s:o, s:o}", "message", e->message, "type",
                            e->type ? e->type : "invalid_request_error", "param",
                            e->param ? json_string(e->param) : json_null(), "code",
                            e->code ? json_string(e->code) : json_null());
    return reply_json(c, e->status, json_pack("{s:o}", "error", err), retry_after);
}

static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *type,
                            const char *code, int retry_after, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *type,
                            const char *code, int retry_after, const char *fmt, ...)
{
    ps_error e = {status, "", type, NULL, code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return reply_error(c, &e, retry_after);
}

/* 1 if the client has closed its end (or the socket failed) */
static int client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return 1;
    struct pollfd p = {ci->connect_fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* ---- completions ---------------------------------------------------------------------- */

typedef struct req_ctx {
    char *body;
    size_t len, cap;
    int too_big;
    struct MHD_Connection *conn;
    ps_request *r;
    ps_params p;
    char id[32];
    time_t created;
    size_t sent;                  /* text bytes taken from the request */
    char *out;                    /* SSE bytes not yet handed to MHD */
    size_t out_len, out_pos, out_cap;
    int finished, done_sent;
    int refs;                     /* the connection's, and the stream response's */
    int include_usage;            /* (p belongs to the engine once submitted) */
} req_ctx;

static const char *reason(ps_finish f)
{
    return f == PS_FINISH_STOP ? "stop" : f == PS_FINISH_LENGTH ? "length" : NULL;
}

static json_t *usage_json(ps_request *r)
{
    int pt, ct;
    ps_request_usage(r, &pt, &ct);
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", pt, "completion_tokens", ct,
                     "total_tokens", pt + ct);
}

static json_t *completion_json(req_ctx *x, const char *text, ps_finish f, int with_usage)
{
    const char *why = reason(f);
    json_t *choice = json_pack("{s:s, s:i, s:n, s:o}", "text", text, "index", 0, "logprobs",
                               "finish_reason", why ? json_string(why) : json_null());
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", x->id, "object",
                          "text_completion", "created", (json_int_t)x->created, "model", S.name,
                          "choices", choice);
    if (with_usage)
        json_object_set_new(j, "usage", usage_json(x->r));
    return j;
}

/* appends "data: <json>\n\n" to the pending SSE bytes */
static int sse(req_ctx *x, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : strdup("[DONE]");
    json_decref(j);
    if (!s)
        return -1;
    size_t n = strlen(s), need = x->out_len + n + 9;
    if (need > x->out_cap) {
        char *o = realloc(x->out, need * 2);
        if (!o) {
            free(s);
            return -1;
        }
        x->out = o;
        x->out_cap = need * 2;
    }
    memcpy(x->out + x->out_len, "data: ", 6);
    memcpy(x->out + x->out_len + 6, s, n);
    memcpy(x->out + x->out_len + 6 + n, "\n\n", 2);
    x->out_len += n + 8;
    free(s);
    return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    req_ctx *x = cls;
    (void)pos;
    while (x->out_pos == x->out_len) {
        x->out_pos = x->out_len = 0;
        if (x->done_sent)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (x->finished) {
            if (x->include_usage) {
                json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", x->id, "object",
                                      "text_completion", "created", (json_int_t)x->created,
                                      "model", S.name, "choices", "usage", usage_json(x->r));
                if (sse(x, u))
                    return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (sse(x, NULL))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            x->done_sent = 1;
            break;
        }
        char *text;
        size_t len;
        ps_finish f = ps_request_wait(x->r, 50, &x->sent, &text, &len);
        if (f == PS_FINISH_CANCELLED || f == PS_FINISH_ERROR) {
            free(text);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (text || f != PS_RUNNING) {
            int bad = sse(x, completion_json(x, text ? text : "", f, 0));
            free(text);
            if (bad)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            x->finished = f != PS_RUNNING;
        } else if (client_gone(x->conn)) {
            ps_request_cancel(x->r);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = x->out_len - x->out_pos < max ? x->out_len - x->out_pos : max;
    memcpy(buf, x->out + x->out_pos, n);
    x->out_pos += n;
    return (ssize_t)n;
}

static void ctx_free(req_ctx *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&S.mu);
    int last = --x->refs == 0;
    S.live -= last;
    pthread_mutex_unlock(&S.mu);
    if (!last)
        return;
    if (x->r) {
        ps_request_cancel(x->r); /* no-op when it has finished */
        ps_request_release(x->r);
    }
    ps_params_free(&x->p);
    free(x->body);
    free(x->out);
    free(x);
}

static void stream_done(void *cls) { ctx_free(cls); }

static enum MHD_Result completions(struct MHD_Connection *c, req_ctx *x)
{
    if (x->too_big)
        return fail(c, 413, "invalid_request_error", NULL, 0,
                    "the request body is larger than %zu bytes", S.max_body);
    ps_error e;
    if (ps_parse_completion(x->body ? x->body : "", x->len, S.tok, S.max_seq, S.vocab, &x->p,
                            &e))
        return reply_error(c, &e, 0);
    int stream = x->p.stream;
    x->include_usage = x->p.include_usage;
    int rc = ps_engine_submit(S.eng, &x->p, &x->r);
    if (rc == PS_SUBMIT_QUEUE_FULL)
        return fail(c, 429, "server_busy", "rate_limit_exceeded", 1,
                    "the server is busy (request queue full): retry later");
    if (rc == PS_SUBMIT_DRAINING)
        return fail(c, 503, "server_unavailable", NULL, 5, "the server is shutting down");
    if (rc == PS_SUBMIT_TOO_BIG)
        return fail(c, 400, "invalid_request_error", "context_length_exceeded", 0,
                    "the prompt and max_tokens need more KV memory than this server has "
                    "(--kv-mb)");
    if (rc != PS_SUBMIT_OK)
        return fail(c, 400, "invalid_request_error", NULL, 0, "invalid sampling parameters");
    pthread_mutex_lock(&S.mu);
    snprintf(x->id, sizeof x->id, "cmpl-%llu", (unsigned long long)++S.next_id);
    pthread_mutex_unlock(&S.mu);
    x->created = time(NULL);
    x->conn = c;
    if (stream) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, x,
                                              stream_done);
        if (!r)
            return MHD_NO;
        x->refs++; /* stream_done drops it */
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        count(200);
        return ok;
    }
    /* the whole completion, then one JSON answer; a client that leaves cancels it */
    char *all = NULL;
    size_t all_len = 0;
    ps_finish f;
    for (;;) {
        char *text;
        size_t len;
        f = ps_request_wait(x->r, 50, &x->sent, &text, &len);
        if (text) {
            char *a = realloc(all, all_len + len + 1);
            if (a) {
                memcpy(a + all_len, text, len);
                all_len += len;
                a[all_len] = 0;
                all = a;
            }
            free(text);
        }
        if (f != PS_RUNNING)
            break;
        if (client_gone(c)) {
            ps_request_cancel(x->r);
            free(all);
            return MHD_NO;
        }
    }
    if (f == PS_FINISH_CANCELLED || f == PS_FINISH_ERROR) {
        free(all);
        return f == PS_FINISH_CANCELLED
                   ? fail(c, 503, "server_unavailable", NULL, 5, "the request was cancelled "
                          "(the server is shutting down)")
                   : fail(c, 500, "server_error", NULL, 0, "generation failed");
    }
    enum MHD_Result ok = reply_json(c, 200, completion_json(x, all ? all : "", f, 1), 0);
    free(all);
    return ok;
}

/* ---- the other endpoints --------------------------------------------------------------- */

static enum MHD_Result models(struct MHD_Connection *c)
{
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", S.name, "object", "model",
                          "created", (json_int_t)S.started, "owned_by", "parlm",
                          "max_model_len", S.max_seq);
    return reply_json(c, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", m), 0);
}

static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        char *b = realloc(*buf, *cap * 2 + (size_t)n);
        if (!b)
            return -1;
        *buf = b;
        *cap = *cap * 2 + (size_t)n;
    }
}

static void hist(char **b, size_t *n, size_t *cap, const char *name, const char *help,
                 const ps_hist *h)
{
    appendf(b, n, cap, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < PS_LAT_BUCKETS; i++) {
        cum += h->count[i];
        appendf(b, n, cap, "%s_bucket{le=\"%g\"} %llu\n", name, PS_LAT_BOUNDS[i],
                (unsigned long long)cum);
    }
    appendf(b, n, cap, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
            (unsigned long long)h->n, name, h->sum, name, (unsigned long long)h->n);
}

static enum MHD_Result metrics(struct MHD_Connection *c)
{
    ps_stats st;
    ps_engine_stats(S.eng, &st);
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    if (!b)
        return MHD_NO;
    b[0] = 0;
    appendf(&b, &n, &cap, "# HELP parlm_requests_total HTTP responses by status code.\n"
                          "# TYPE parlm_requests_total counter\n");
    pthread_mutex_lock(&S.mu);
    uint64_t codes[600];
    memcpy(codes, S.codes, sizeof codes);
    pthread_mutex_unlock(&S.mu);
    for (int i = 0; i < 600; i++)
        if (codes[i])
            appendf(&b, &n, &cap, "parlm_requests_total{code=\"%d\"} %llu\n", i,
                    (unsigned long long)codes[i]);
    static const char *const why[] = {"running", "length", "stop", "cancelled", "error"};
    appendf(&b, &n, &cap, "# HELP parlm_requests_finished_total Generations ended, by reason.\n"
                          "# TYPE parlm_requests_finished_total counter\n");
    for (int i = 1; i < 5; i++)
        appendf(&b, &n, &cap, "parlm_requests_finished_total{reason=\"%s\"} %llu\n", why[i],
                (unsigned long long)st.finished[i]);
    appendf(&b, &n, &cap,
            "# HELP parlm_prompt_tokens_total Prompt tokens of admitted requests.\n"
            "# TYPE parlm_prompt_tokens_total counter\nparlm_prompt_tokens_total %llu\n"
            "# HELP parlm_generation_tokens_total Tokens generated.\n"
            "# TYPE parlm_generation_tokens_total counter\nparlm_generation_tokens_total %llu\n"
            "# HELP parlm_engine_steps_total Batched forward steps.\n"
            "# TYPE parlm_engine_steps_total counter\nparlm_engine_steps_total %llu\n"
            "# HELP parlm_queue_depth Requests waiting for a slot.\n"
            "# TYPE parlm_queue_depth gauge\nparlm_queue_depth %d\n"
            "# HELP parlm_running_requests Sequences in the running batch.\n"
            "# TYPE parlm_running_requests gauge\nparlm_running_requests %d\n"
            "# HELP parlm_batch_rows Positions in the last step's forward.\n"
            "# TYPE parlm_batch_rows gauge\nparlm_batch_rows %d\n"
            "# HELP parlm_kv_blocks_used KV cache blocks held by sequences.\n"
            "# TYPE parlm_kv_blocks_used gauge\nparlm_kv_blocks_used %d\n"
            "# HELP parlm_kv_blocks_total KV cache blocks in the pool.\n"
            "# TYPE parlm_kv_blocks_total gauge\nparlm_kv_blocks_total %d\n"
            "# HELP parlm_kv_bytes_used KV cache memory held by sequences.\n"
            "# TYPE parlm_kv_bytes_used gauge\nparlm_kv_bytes_used %lld\n",
            (unsigned long long)st.prompt_tokens, (unsigned long long)st.generation_tokens,
            (unsigned long long)st.steps, st.queued, st.running, st.batch_rows_last,
            st.kv_blocks_used, st.kv_blocks_total,
            (long long)st.kv_blocks_used * (long long)st.kv_block_bytes);
    hist(&b, &n, &cap, "parlm_time_to_first_token_seconds",
         "Time from arrival to the first generated token.", &st.ttft);
    hist(&b, &n, &cap, "parlm_inter_token_latency_seconds",
         "Time between consecutive tokens of a request.", &st.itl);
    return reply(c, 200, "text/plain; version=0.0.4", b, 0);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)version;
    req_ctx *x = *con_cls;
    if (!x) {
        if (!(x = calloc(1, sizeof *x)))
            return MHD_NO;
        x->refs = 1;
        pthread_mutex_lock(&S.mu);
        S.live++;
        pthread_mutex_unlock(&S.mu);
        *con_cls = x;
        return MHD_YES;
    }
    if (*upload_data_size) { /* the body, kept up to the limit (the rest is read, dropped) */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (x->too_big || x->len + n > S.max_body) {
            x->too_big = 1;
            return MHD_YES;
        }
        if (x->len + n + 1 > x->cap) {
            size_t cap = (x->len + n + 1) * 2;
            cap = cap > S.max_body + 1 ? S.max_body + 1 : cap;
            char *b = realloc(x->body, cap);
            if (!b)
                return MHD_NO;
            x->body = b, x->cap = cap;
        }
        memcpy(x->body + x->len, upload_data, n);
        x->len += n;
        x->body[x->len] = 0;
        return MHD_YES;
    }
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/completions")) {
        if (!post)
            return fail(c, 405, "invalid_request_error", NULL, 0, "use POST for %s", url);
        return completions(c, x);
    }
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/health") || !strcmp(url, "/metrics")) {
        if (!get)
            return fail(c, 405, "invalid_request_error", NULL, 0, "use GET for %s", url);
        if (!strcmp(url, "/v1/models"))
            return models(c);
        if (!strcmp(url, "/metrics"))
            return metrics(c);
        if (S.draining)
            return fail(c, 503, "server_unavailable", NULL, 5, "shutting down");
        return reply_json(c, 200, json_pack("{s:s}", "status", "ok"), 0);
    }
    return fail(c, 404, "invalid_request_error", NULL, 0, "no such endpoint: %s %.100s", method,
                url);
}

/* The connection's reference to the request's context (a stream's response holds another). */
static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    req_ctx *x = *con_cls;
    *con_cls = NULL;
    ctx_free(x);
}

/* ---- main -------------------------------------------------------------------------------- */

#if PARLM_WITH_MPI
/* Step messages from rank 0: a nonblocking broadcast, polled. While idle (between
 * requests) the other ranks test it every 200 us after the first 2 ms, so they do not spin
 * a core; in a busy stream of steps the next message comes within the 2 ms. */
static parlm_status tp_bcast(void *arg, int32_t *buf, int64_t n, int idle)
{
    MPI_Comm comm = *(MPI_Comm *)arg;
    MPI_Request rq;
    if (n > INT_MAX || MPI_Ibcast(buf, (int)n, MPI_INT32_T, 0, comm, &rq) != MPI_SUCCESS) {
        fprintf(stderr, "%s: MPI_Ibcast of %lld words failed\n", prog, (long long)n);
        return PARLM_ESYSTEM;
    }
    double t0 = now();
    for (int done = 0;;) {
        if (MPI_Test(&rq, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            fprintf(stderr, "%s: MPI_Test failed\n", prog);
            return PARLM_ESYSTEM;
        }
        if (done)
            return PARLM_OK;
        if (idle && now() - t0 > 0.002)
            nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

/* Replaces *m (the whole model) by this rank's tensor-parallel shard of it: each rank
 * loads the file and keeps only its slices. */
static int to_shard(parlm_gpt **m, int tp, int rank, parlm_comm *comm, parlm_gpt_tp_comm *tpc)
{
    parlm_gpt_shard sh = {tp, rank, 0, parlm_gpt_get_config(*m).n_layer};
    parlm_gpt *s = NULL;
    if (parlm_gpt_shard_from(&s, *m, &sh) != PARLM_OK ||
        parlm_tp_comm_init(tpc, comm) != PARLM_OK || parlm_gpt_set_tp_comm(s, tpc) != PARLM_OK) {
        fprintf(stderr, "%s: --tp %d: %s\n", prog, tp, parlm_last_error());
        parlm_gpt_free(s);
        return 1;
    }
    parlm_gpt_free(*m);
    *m = s;
    return 0;
}
#endif

/* PATH as a file, or a --ckpt-dir of parlm-train: its newest checkpoint that loads */
static int load_model(const char *path, parlm_gpt **m)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (parlm_gpt_load(m, path, NULL) == PARLM_OK)
            return 0;
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    int64_t steps[64];
    int n = 0;
    if (parlm_ckpt_list(path, steps, 64, &n) != PARLM_OK) {
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char file[PATH_MAX];
        if (parlm_ckpt_path(file, sizeof file, path, steps[i]) == PARLM_OK &&
            parlm_gpt_load(m, file, NULL) == PARLM_OK)
            return 0;
        fprintf(stderr, "%s: skipping %s\n", prog, parlm_last_error());
    }
    fprintf(stderr, "%s: %s holds no checkpoint that loads\n", prog, path);
    return 1;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *host = "127.0.0.1", *name = NULL, *type_name = NULL;
    mf_tok_opts to = {0};
    int port = 8080, kv_mb = 256, block = 16, max_batch = 32, chunk = 64, max_queue = 64,
        threads = 0, bf16 = 0, max_body_kb = 1024, max_conn = 256, max_conn_ip = 0, idle = 30,
        grace = 30, tp = 1;
    cli_opt opts[] = {
        CLI_S("--model", &model, 0), CLI_S("--host", &host, 0),
        CLI_I("--port", &port, 0, 65535, 0), CLI_S("--encoder", &to.encoder, 0),
        CLI_S("--vocab", &to.vocab, 0), CLI_S("--tokenizer", &to.tok_gguf, 0),
        CLI_S("--type", &type_name, 0), CLI_S("--model-name", &name, 0),
        CLI_I("--kv-mb", &kv_mb, 1, 1 << 20, 0), CLI_I("--block", &block, 1, 4096, 0),
        CLI_I("--max-batch", &max_batch, 1, 4096, 0), CLI_I("--chunk", &chunk, 1, 65536, 0),
        CLI_I("--max-queue", &max_queue, 0, 1 << 20, 0),
        CLI_I("--threads", &threads, 0, 4096, 0), CLI_F("--bf16", &bf16, 0),
        CLI_I("--tp", &tp, 1, 4096, 0),
        CLI_I("--max-body-kb", &max_body_kb, 1, 1 << 20, 0),
        CLI_I("--max-connections", &max_conn, 1, 1 << 16, 0),
        CLI_I("--max-connections-per-ip", &max_conn_ip, 1, 1 << 16, 0), /* unset: max_conn / 2 */
        CLI_I("--idle-timeout", &idle, 1, 86400, 0),
        CLI_I("--shutdown-timeout", &grace, 0, 86400, 0),
    };
    cli cl = {prog, opts, (int)(sizeof opts / sizeof opts[0]), usage, NULL, 0};
    int rc = cli_parse(&cl, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    cli_gemm_env();
    if (!model) {
        fprintf(stderr, "%s: --model is required (try --help)\n", prog);
        return 2;
    }
    if ((rc = mf_tok_check(prog, &to)))
        return rc;
    if (type_name && bf16) {
        fprintf(stderr, "%s: give --type or --bf16, not both\n", prog);
        return 2;
    }
#if PARLM_WITH_MPI
    int rank = 0;
    parlm_comm *comm = NULL;
    parlm_gpt_tp_comm tpc;
    MPI_Comm bcomm = MPI_COMM_NULL;
    ps_tp tps = {{0}, tp_bcast, &bcomm};
    if (tp > 1) {
        int level = 0;
        parlm_comm_config cc;
        if (cli_comm_env(prog, &cc))
            return 2;
        if (parlm_dist_init(&argc, &argv, &level) != PARLM_OK || parlm_comm_world(&comm, &cc) != PARLM_OK) {
            fprintf(stderr, "%s: MPI: %s\n", prog, parlm_last_error());
            return 1;
        }
        rank = parlm_comm_rank(comm);
        if (parlm_comm_size(comm) != tp) {
            if (rank == 0)
                fprintf(stderr, "%s: --tp %d needs %d ranks (mpirun -np %d), not %d\n", prog, tp,
                        tp, tp, parlm_comm_size(comm));
            parlm_comm_free(comm);
            parlm_dist_finalize();
            return 2;
        }
        /* rank 0's MPI calls come from its engine thread, not the one that initialized */
        if (level < PARLM_THREAD_SERIALIZED) {
            if (rank == 0)
                fprintf(stderr, "%s: --tp needs MPI_THREAD_SERIALIZED; this MPI gives %s\n",
                        prog, parlm_thread_level_name(level));
            parlm_comm_free(comm);
            parlm_dist_finalize();
            return 1;
        }
        MPI_Comm_dup(MPI_COMM_WORLD, &bcomm);
    }
#else
    if (tp > 1) {
        fprintf(stderr, "%s: --tp needs a build with MPI (this one was configured without)\n",
                prog);
        return 2;
    }
#endif
    int local_rank, local_size; /* under mpirun / srun: this rank's share of the cores */
    parlm_node_rank_env(&local_rank, &local_size);
    if (tp == 1 && local_size > 1) { /* N servers on one port would fight: say what to do */
        if (local_rank == 0)
            fprintf(stderr, "%s: started as %d ranks: give --tp %d (one server, tensor-"
                    "parallel), or run one process\n", prog, local_size, local_size);
        return 2;
    }
    if (local_size > 1) {
        int nt = 0, want = threads                       ? threads
                           : getenv("OMP_NUM_THREADS") ? omp_get_max_threads()
                                                       : 0;
        if (parlm_place_threads(local_rank, local_size, want, 1, &nt, NULL, 0) != PARLM_OK)
            fprintf(stderr, "%s: rank %d of the node: %s\n", prog, local_rank,
                    parlm_last_error());
        threads = nt;
    }
    parlm_gpt *m = NULL;
    const int gguf = mf_is_gguf(model);
    parlm_gguf_load_info info = {PARLM_WT_F32, 1};
    int view = 0;
    if (gguf && mf_load_gguf(prog, model, bf16 ? "bf16" : type_name, tp == 1, &m, &info, &view))
        return 1;
    if (!gguf && load_model(model, &m))
        return 1;
    parlm_wtype wt = PARLM_WT_F32;
    if (!bf16 && (rc = mf_weight_type(prog, type_name, gguf, &info, &wt))) {
        parlm_gpt_free(m);
        return rc;
    }
    int qtype = wt == PARLM_WT_Q8_0 || wt == PARLM_WT_Q4_0 ? (int)wt : 0;
    if (qtype && tp > 1) { /* a shard's decode rows stay f32 */
        if (type_name) {
            fprintf(stderr, "%s: --type %s: a tensor-parallel server runs f32 or bf16 weights\n",
                    prog, type_name);
            parlm_gpt_free(m);
            return 2;
        }
        qtype = 0;
    }
    bf16 = bf16 || wt == PARLM_WT_BF16;
    parlm_gpt_config c = parlm_gpt_get_config(m);
#if PARLM_WITH_MPI
    if (tp > 1) {
        if (to_shard(&m, tp, rank, comm, &tpc))
            return 1;
        tps.comm = tpc;
    }
    if (rank > 0) { /* a worker: rank 0 says when to stop (mpirun's signals reach us too) */
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        ps_engine_cfg wc = {max_batch, chunk, max_queue, block, (int64_t)kv_mb << 20, threads,
                            bf16, 0, &tps};
        parlm_status st = ps_engine_worker(m, &wc);
        if (st != PARLM_OK)
            fprintf(stderr, "%s: rank %d: %s\n", prog, rank, parlm_last_error());
        parlm_gpt_free(m);
        MPI_Comm_free(&bcomm);
        parlm_comm_free(comm);
        parlm_dist_finalize();
        return st == PARLM_OK ? 0 : 1;
    }
#endif
    parlm_tokenizer *tok = NULL;
    if (mf_tokenizer(prog, model, gguf, &to, c.vocab, &tok))
        return 1;
    if (parlm_tokenizer_vocab_size(tok) > c.vocab) {
        fprintf(stderr, "%s: the tokenizer has %d tokens, the model only %d\n", prog,
                parlm_tokenizer_vocab_size(tok), c.vocab);
        return 2;
    }
    if (!name) {
        const char *slash = strrchr(model, '/');
        name = slash && slash[1] ? slash + 1 : model;
    }
    ps_engine_cfg ec = {max_batch, chunk, max_queue, block, (int64_t)kv_mb << 20, threads, bf16,
                        qtype, NULL};
#if PARLM_WITH_MPI
    if (tp > 1)
        ec.tp = &tps;
#endif
    pthread_mutex_init(&S.mu, NULL);
    S.tok = tok, S.name = name, S.max_seq = c.max_seq, S.vocab = c.vocab;
    S.max_body = (size_t)max_body_kb << 10;
    S.started = time(NULL);
    /* signals are taken by sigwait below: every thread started from here blocks them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (ps_engine_create(&S.eng, m, tok, &ec) != PARLM_OK) {
        fprintf(stderr, "%s: %s\n", prog, parlm_last_error());
        return 1;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int gai = getaddrinfo(host, ports, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "%s: --host %s: %s\n", prog, host, gai_strerror(gai));
        return 2;
    }
    if (max_conn_ip == 0)
        max_conn_ip = max_conn > 1 ? max_conn / 2 : 1;
    /* poll(), not select(): a flood of connections may push descriptors past FD_SETSIZE */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)max_conn, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)max_conn_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)idle,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) {
        fprintf(stderr, "%s: cannot listen on %s port %d: %s\n", prog, host, port,
                strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "%s: %s (%s L%d C%d, context %d, %s weights%s) on http://%s:%u, KV pool "
            "%d MiB, batch %d, %d threads", prog, name,
            c.arch == PARLM_ARCH_LLAMA ? "Llama" : "GPT-2", c.n_layer, c.n_embd, c.max_seq,
            qtype ? parlm_wtype_name(qtype) : bf16 ? "bf16" : "f32",
            view ? ", mapped from the file as stored"
            : qtype ? " for generated tokens, f32 for prompts"
            : gguf && (info.wtype == PARLM_WT_Q8_0 || info.wtype == PARLM_WT_Q4_0)
                ? info.wtype == PARLM_WT_Q8_0 ? " from the file's q8_0" : " from the file's q4_0"
                : "",
            host, di ? di->port : (unsigned)port, kv_mb, max_batch, threads);
    if (tp > 1)
        fprintf(stderr, " per rank, tensor-parallel over %d ranks (rank 0: pid %d)", tp,
                (int)getpid());
    fprintf(stderr, "\n");
    int sig = 0;
    sigwait(&sigs, &sig);
    /* drain: no new connections, no new requests; running ones get `grace` seconds */
    S.draining = 1;
    ps_engine_drain(S.eng);
    MHD_socket ls = MHD_quiesce_daemon(d);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    fprintf(stderr, "%s: %s: draining (up to %d s)\n", prog, strsignal(sig), grace);
    double end = now() + grace;
    sigset_t none;
    sigemptyset(&none);
    for (;;) { /* until the engine is idle and the last responses have gone out */
        ps_stats st;
        ps_engine_stats(S.eng, &st);
        pthread_mutex_lock(&S.mu);
        int live = S.live;
        pthread_mutex_unlock(&S.mu);
        if (st.running == 0 && st.queued == 0 && live == 0)
            break;
        struct timespec ts = {0, 50000000L};
        if (now() >= end || sigtimedwait(&sigs, NULL, &ts) > 0) { /* deadline or 2nd signal */
            fprintf(stderr, "%s: cancelling %d running and %d queued requests\n", prog,
                    st.running, st.queued);
            ps_engine_cancel_all(S.eng);
            break;
        }
    }
    MHD_stop_daemon(d); /* connection threads end as their requests do */
    ps_engine_free(S.eng);
    parlm_tokenizer_free(tok);
    parlm_gpt_free(m);
#if PARLM_WITH_MPI
    if (tp > 1) {
        MPI_Comm_free(&bcomm);
        parlm_comm_free(comm);
        parlm_dist_finalize();
    }
#endif
    fprintf(stderr, "%s: stopped\n", prog);
    return 0;
}

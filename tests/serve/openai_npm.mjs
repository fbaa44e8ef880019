// tests/serve/openai_npm.mjs — OpenAI's own Node client (npm `openai`) against parlm-serve:
// a completion, the same one streamed (chunks add up to the same text, usage at the end),
// the model list, and a bad request surfacing as the client's BadRequestError with the
// field named. Prints one line per check; exits non-zero on the first mismatch.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0 });
const fail = (msg) => { console.error("openai_npm: FAIL: " + msg); process.exit(1); };

const models = await client.models.list();
if (models.data.length !== 1 || models.data[0].id !== "tiny") fail("models: " + JSON.stringify(models.data));

const req = { model: "tiny", prompt: "line 12 says", max_tokens: 20, temperature: 0 };
const c = await client.completions.create(req);
const text = c.choices[0].text;
if (!text || c.choices[0].finish_reason !== "length" || c.usage.completion_tokens !== 20)
    fail("completion: " + JSON.stringify(c));

let streamed = "", usage = null, last = null;
const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length) { streamed += chunk.choices[0].text; last = chunk.choices[0].finish_reason; }
}
if (streamed !== text) fail(`streamed ${JSON.stringify(streamed)} != ${JSON.stringify(text)}`);
if (last !== "length" || !usage || usage.completion_tokens !== 20) fail("stream end: " + JSON.stringify({ last, usage }));

const s1 = await client.completions.create({ ...req, temperature: 1, seed: 3 });
const s2 = await client.completions.create({ ...req, temperature: 1, seed: 3 });
if (s1.choices[0].text !== s2.choices[0].text) fail("same seed, different text");

try {
    await client.completions.create({ ...req, top_p: 2 });
    fail("top_p = 2 was accepted");
} catch (e) {
    if (!(e instanceof OpenAI.BadRequestError) || e.status !== 400 || e.param !== "top_p")
        fail("error: " + e);
}
console.log("openai_npm: models, completion, stream, seed and a 400 through the openai client");

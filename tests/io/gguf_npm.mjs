// tests/gguf_npm.mjs — prints what @huggingface/gguf (an independent GGUF parser) sees
// in a file, in tests/gguf_tool.c's dump format, so the two can be diffed line by line.
import { gguf } from "@huggingface/gguf";

const r = await gguf(process.argv[2], { allowLocalFile: true, typedMetadata: true });
const md = r.typedMetadata;
const val = (v) => v.value !== undefined ? v.value : v;
const lines = [];
lines.push(`header version=${val(md.version)} tensors=${val(md.tensor_count)} kv=${val(md.kv_count)} data_offset=${r.tensorDataOffset}`);
// GGUF value types, as the spec numbers them
const F32 = 6, F64 = 12, ARRAY = 9;
const dv = new DataView(new ArrayBuffer(8));
function scalar(v, t) {
  if (t === F32) { dv.setFloat32(0, v, true); return "f32:" + dv.getUint32(0, true).toString(16).padStart(8, "0"); }
  if (t === F64) { dv.setFloat64(0, v, true); return "f64:" + dv.getBigUint64(0, true).toString(16).padStart(16, "0"); }
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}
for (const [key, e] of Object.entries(md)) {
  if (key === "version" || key === "tensor_count" || key === "kv_count") continue;
  if (e.type === ARRAY) {
    lines.push(`kv ${key} = [${e.value.length}]` + e.value.map((x) => " " + scalar(x, e.subType)).join(""));
  } else {
    lines.push(`kv ${key} = ${scalar(e.value, e.type)}`);
  }
}
for (const t of r.tensorInfos)
  lines.push(`tensor ${t.name} dims=${t.n_dims} shape=${t.shape.join(",")} type=${t.dtype} offset=${t.offset}`);
process.stdout.write(lines.join("\n") + "\n");

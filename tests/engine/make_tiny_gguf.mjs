// Writes a tiny llama-architecture GGUF model with deterministic random weights:
//   node make_tiny_gguf.mjs OUT.gguf
// No real model can be had in the test environment, and none is needed: a state saved
// from such a model and restored must still drive generation to exactly the same tokens.
// Format: GGUF version 3 (header, metadata key/values, tensor infos, 32-byte aligned data).
import {writeFileSync} from "node:fs";

const kAlignment = 32;
const kTypeUint32 = 4, kTypeInt32 = 5, kTypeFloat32 = 6, kTypeBool = 7, kTypeString = 8,
    kTypeArray = 9;
const kGgmlF32 = 0;

// Model shape: small enough to load in milliseconds, big enough that a saved state spans
// many of an engine's 8 KiB writes (4 layers x K,V x 128 dims x f16 = 2 KiB per token).
const kEmbd = 128, kHeads = 4, kLayers = 4, kFf = 256, kContext = 1024;

class Writer {
  constructor() { this.chunks = []; this.size = 0; }
  bytes(b) { this.chunks.push(Buffer.from(b)); this.size += b.length; }
  u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.bytes(b); }
  i32(v) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.bytes(b); }
  u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.bytes(b); }
  f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); this.bytes(b); }
  str(s) { const b = Buffer.from(s, "utf8"); this.u64(b.length); this.bytes(b); }
  pad() { const n = (kAlignment - (this.size % kAlignment)) % kAlignment; this.bytes(Buffer.alloc(n)); }
  buffer() { return Buffer.concat(this.chunks); }
}

// SentencePiece-style vocabulary: control tokens, the 256 byte-fallback tokens (so any
// text tokenizes), then single characters and a few merges with descending scores.
function vocabulary() {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];  // unknown, control, control
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);  // byte
  }
  const pieces = ["\u2581"];
  for (const c of "abcdefghijklmnopqrstuvwxyz.,") pieces.push(c);
  for (const w of ["\u2581t", "\u2581a", "he", "in", "er", "an", "\u2581the", "on", "re",
                   "\u2581s", "at", "en", "\u2581c", "or", "\u2581w", "es", "is", "it"]) {
    pieces.push(w);
  }
  for (const p of pieces) { tokens.push(p); types.push(1); }
  const scores = tokens.map((_, i) => (types[i] === 1 ? -i : 0));
  return {tokens, types, scores};
}

// xorshift32 in [-scale, scale): the same file on every run.
function randomFloats(count, seed, scale) {
  const out = new Float32Array(count);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = ((x / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

function main() {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node make_tiny_gguf.mjs OUT.gguf");
    process.exit(2);
  }
  const vocab = vocabulary();
  const nVocab = vocab.tokens.length;

  // Tensors: [name, dims (ne0 first, the contiguous one), values].
  const tensors = [];
  let seed = 1;
  const weight = (name, dims, scale) => {
    const count = dims.reduce((a, b) => a * b, 1);
    tensors.push([name, dims, randomFloats(count, 0x9e3779b9 ^ seed++ * 2654435761, scale)]);
  };
  const ones = (name, n) => tensors.push([name, [n], new Float32Array(n).fill(1)]);
  weight("token_embd.weight", [kEmbd, nVocab], 1.0);
  for (let l = 0; l < kLayers; l++) {
    ones(`blk.${l}.attn_norm.weight`, kEmbd);
    weight(`blk.${l}.attn_q.weight`, [kEmbd, kEmbd], 0.3);
    weight(`blk.${l}.attn_k.weight`, [kEmbd, kEmbd], 0.3);
    weight(`blk.${l}.attn_v.weight`, [kEmbd, kEmbd], 0.3);
    weight(`blk.${l}.attn_output.weight`, [kEmbd, kEmbd], 0.3);
    ones(`blk.${l}.ffn_norm.weight`, kEmbd);
    weight(`blk.${l}.ffn_gate.weight`, [kEmbd, kFf], 0.3);
    weight(`blk.${l}.ffn_up.weight`, [kEmbd, kFf], 0.3);
    weight(`blk.${l}.ffn_down.weight`, [kFf, kEmbd], 0.3);
  }
  ones("output_norm.weight", kEmbd);
  weight("output.weight", [kEmbd, nVocab], 1.0);

  const kv = [
    ["general.architecture", kTypeString, "llama"],
    ["general.name", kTypeString, "kvcachefs-tiny-random"],
    ["general.alignment", kTypeUint32, kAlignment],
    ["llama.context_length", kTypeUint32, kContext],
    ["llama.embedding_length", kTypeUint32, kEmbd],
    ["llama.block_count", kTypeUint32, kLayers],
    ["llama.feed_forward_length", kTypeUint32, kFf],
    ["llama.attention.head_count", kTypeUint32, kHeads],
    ["llama.attention.head_count_kv", kTypeUint32, kHeads],
    ["llama.attention.layer_norm_rms_epsilon", kTypeFloat32, 1e-5],
    ["llama.rope.dimension_count", kTypeUint32, kEmbd / kHeads],
    ["llama.vocab_size", kTypeUint32, nVocab],
    ["tokenizer.ggml.model", kTypeString, "llama"],
    ["tokenizer.ggml.tokens", kTypeArray, [kTypeString, vocab.tokens]],
    ["tokenizer.ggml.scores", kTypeArray, [kTypeFloat32, vocab.scores]],
    ["tokenizer.ggml.token_type", kTypeArray, [kTypeInt32, vocab.types]],
    ["tokenizer.ggml.unknown_token_id", kTypeUint32, 0],
    ["tokenizer.ggml.bos_token_id", kTypeUint32, 1],
    ["tokenizer.ggml.eos_token_id", kTypeUint32, 2],
    ["tokenizer.ggml.add_bos_token", kTypeBool, true],
    ["tokenizer.ggml.add_eos_token", kTypeBool, false],
  ];

  const w = new Writer();
  w.bytes(Buffer.from("GGUF", "ascii"));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  const scalar = (type, v) => {
    if (type === kTypeUint32) w.u32(v);
    else if (type === kTypeInt32) w.i32(v);
    else if (type === kTypeFloat32) w.f32(v);
    else if (type === kTypeBool) w.bytes(Buffer.from([v ? 1 : 0]));
    else if (type === kTypeString) w.str(v);
    else throw new Error(`type ${type}`);
  };
  for (const [key, type, value] of kv) {
    w.str(key);
    w.u32(type);
    if (type === kTypeArray) {
      const [elemType, items] = value;
      w.u32(elemType);
      w.u64(items.length);
      for (const item of items) scalar(elemType, item);
    } else {
      scalar(type, value);
    }
  }
  let offset = 0;
  for (const [name, dims, values] of tensors) {
    w.str(name);
    w.u32(dims.length);
    for (const d of dims) w.u64(d);
    w.u32(kGgmlF32);
    w.u64(offset);
    offset += Math.ceil(values.byteLength / kAlignment) * kAlignment;
  }
  w.pad();
  for (const [, , values] of tensors) {
    w.bytes(Buffer.from(values.buffer, values.byteOffset, values.byteLength));
    w.pad();
  }
  writeFileSync(out, w.buffer());
}

main();

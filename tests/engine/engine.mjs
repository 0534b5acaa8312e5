// One role of the engine test, run as its own process with llama.cpp (node-llama-cpp):
//   node engine.mjs save    MODEL PROMPT POOL_DIR ID      evaluate, save the state to
//                                                        POOL_DIR/ID, attach its prefix
//   node engine.mjs restore MODEL PROMPT POOL_DIR N       find the state under by-prefix/,
//                                                        restore it, generate N tokens
//   node engine.mjs fresh   MODEL PROMPT N                evaluate, generate N tokens
// Each prints one JSON line on stdout. The saved state covers every prompt token but the
// last; generation feeds the last one, so the restored and the fresh process run the very
// same evaluation from the point the state was taken.
import {execFileSync} from "node:child_process";
import {createHash} from "node:crypto";
import {readdirSync} from "node:fs";
import path from "node:path";

import {getLlama} from "node-llama-cpp";

const kContextSize = 1024;

function fail(message) {
  console.error(`engine.mjs: ${message}`);
  process.exit(1);
}

// The mount's prefix hash: the first 8 bytes of SHA-256 over the tokens as little-endian
// u32, in hex.
function prefixHash(tokens) {
  const bytes = Buffer.alloc(tokens.length * 4);
  tokens.forEach((t, i) => bytes.writeUInt32LE(t, i * 4));
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

async function open(modelPath) {
  const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
  const model = await llama.loadModel({modelPath, gpuLayers: 0});
  const context = await model.createContext({contextSize: kContextSize, sequences: 1,
                                             threads: 1, batchSize: 512});
  return {model, context, sequence: context.getSequence()};
}

async function generate(sequence, lastToken, count) {
  const out = [];
  for await (const token of sequence.evaluate([lastToken], {temperature: 0})) {
    out.push(token);
    if (out.length === count) break;
  }
  return out;
}

async function main() {
  const [role, modelPath, prompt, ...rest] = process.argv.slice(2);
  if (!role || !modelPath || prompt === undefined) fail("usage: see the header of engine.mjs");
  const {model, context, sequence} = await open(modelPath);
  const tokens = model.tokenize(prompt);
  if (tokens.length < 8) fail(`prompt tokenized to only ${tokens.length} tokens`);
  const head = tokens.slice(0, -1);
  const last = tokens[tokens.length - 1];

  if (role === "save") {
    const [poolDir, id] = rest;
    await sequence.evaluateWithoutGeneratingNewTokens(head);
    const file = path.join(poolDir, id);
    const {fileSize} = await sequence.saveStateToFile(file);
    // The prefix lets another process find this state by the tokens it covers.
    execFileSync("setfattr", ["-n", "user.kvcache.prefix_tokens", "-v", head.join(","), file]);
    execFileSync("setfattr", ["-n", "user.kvcache.token_count", "-v", String(head.length), file]);
    console.log(JSON.stringify({role, fileSize, tokens: head.length, hash: prefixHash(head)}));
  } else if (role === "restore") {
    const [poolDir, n] = rest;
    const dir = path.join(poolDir, "by-prefix", prefixHash(head));
    const ids = readdirSync(dir);
    if (ids.length !== 1) fail(`${dir} lists ${JSON.stringify(ids)}, expected one entry`);
    await sequence.loadStateFromFile(path.join(dir, ids[0]), {acceptRisk: true});
    const restored = sequence.contextTokens;
    if (restored.length !== head.length || restored.some((t, i) => t !== head[i])) {
      fail(`restored ${restored.length} tokens that are not the prompt's ${head.length}`);
    }
    const generated = await generate(sequence, last, Number(n));
    console.log(JSON.stringify({role, path: path.join(dir, ids[0]), generated}));
  } else if (role === "fresh") {
    const [n] = rest;
    await sequence.evaluateWithoutGeneratingNewTokens(head);
    const generated = await generate(sequence, last, Number(n));
    console.log(JSON.stringify({role, generated}));
  } else {
    fail(`unknown role '${role}'`);
  }
  await context.dispose();
  await model.dispose();
}

main().catch((e) => fail(e?.stack ?? String(e)));

/**
 * Quantized GGUF (Q8_0, Q4_0) and LoRA adapter GGUF: the block quantizers against hand-worked blocks and
 * error bounds, then the files in the real llama.cpp (node-llama-cpp's prebuilt CPU binary, offline).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { engineReady } from '../helpers';
import { base } from '../../src/lab/base';
import { dataset } from '../../src/lab/data';
import { exportGguf, exportLoraGguf, ggufBytes, parseGguf, readGguf, GgmlType, GgufValueType } from '../../src/io/gguf';
import { quantizeQ8_0, quantizeQ4_0, dequantizeQ8_0, dequantizeQ4_0, fromF16Bytes, toF16Bytes } from '../../src/io/gguf-quant';
import { hostParams } from '../../src/io/checkpoint';
import { transpose2d } from '../../src/io/hf';
import { CausalLM } from '../../src/model/transformer';
import { addLora, LoraAdapter } from '../../src/peft/lora';
import { peft } from '../../src/peft/peft';
import { main } from '../../src/cli';
import { Tokenizer } from '../../src/tokenizer/tokenizer';
import { openLlama, ours, theirs, trainedLora, withGguf as withLlama, type Llama, type LlamaModel, type Sequence } from './gguf-helpers';

/** A seeded generator of normal-ish values (sum of uniforms), so the bounds are checked on fixed data. */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (u() + u() + u() - 1.5) * (i % 64 < 32 ? 0.05 : 3);
  return out;
}

const half = (x: number) => fromF16Bytes(toF16Bytes(new Float32Array([x])))[0];

describe('GGUF block quantizers (Q8_0, Q4_0)', () => {
  it('Q8_0: a hand-worked block — f16 scale bytes, then int8 quants; representable values round-trip exactly', () => {
    // q = j − 16 with ±127 at the ends; d = 1/16, so x = q/16 and amax/127 = d exactly.
    const q = Array.from({ length: 32 }, (_, j) => (j === 0 ? -127 : j === 31 ? 127 : j - 16));
    const x = new Float32Array(q.map((v) => v / 16));
    const bytes = quantizeQ8_0(x);
    assert.equal(bytes.length, 34);
    assert.deepEqual([...bytes.subarray(0, 2)], [0x00, 0x2c]); // f16 0.0625 = 0x2C00, little-endian
    assert.deepEqual([...new Int8Array(bytes.buffer, 2, 32)], q);
    assert.deepEqual(dequantizeQ8_0(bytes), x);
    // Rounding is half away from zero (C roundf): 0.5·d → 1, −0.5·d → −1, 2.5·d → 3.
    const y = new Float32Array(32);
    y[0] = 127 / 16; y[1] = 0.5 / 16; y[2] = -0.5 / 16; y[3] = 2.5 / 16;
    assert.deepEqual([...new Int8Array(quantizeQ8_0(y).buffer, 2, 4)], [127, 1, -1, 3]);
  });

  it('Q4_0: a hand-worked block — d = max/−8, element j in the low nibble and j + 16 in the high nibble of byte j', () => {
    // d = −0.5: q = 0 ↔ +4 (the largest magnitude, so max = 4 and d = 4/−8), q = 15 ↔ −3.5.
    const q = Array.from({ length: 32 }, (_, j) => (j * 7 + 3) % 16);
    q[5] = 0;
    const x = new Float32Array(q.map((v) => (v - 8) * -0.5));
    const bytes = quantizeQ4_0(x);
    assert.equal(bytes.length, 18);
    assert.deepEqual([...bytes.subarray(0, 2)], [0x00, 0xb8]); // f16 −0.5 = 0xB800
    const want = Array.from({ length: 16 }, (_, j) => q[j] | (q[j + 16] << 4));
    assert.deepEqual([...bytes.subarray(2)], want);
    assert.deepEqual(dequantizeQ4_0(bytes), x);
  });

  it('error bounds on 64 blocks: Q8_0 ≤ d/2, Q4_0 ≤ |d|/2 (≤ |d| for the clamped top value); zero blocks stay zero', () => {
    const x = values(64 * 32, 7);
    x.fill(0, 32, 64); // one all-zero block
    const q8 = quantizeQ8_0(x), q4 = quantizeQ4_0(x);
    const y8 = dequantizeQ8_0(q8), y4 = dequantizeQ4_0(q4);
    for (let b = 0; b < 64; b++) {
      const blk = x.subarray(b * 32, b * 32 + 32);
      let amax = 0, max = 0;
      for (const v of blk) if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
      // Quants come from the float32 scale; the file holds its f16 rounding, which moves each value by |q|·|Δd|.
      const d8 = Math.fround(amax / 127), h8 = half(d8);
      const d4 = Math.fround(max / -8), h4 = half(d4);
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        assert.ok(Math.abs(y8[i] - x[i]) <= d8 / 2 + 127 * Math.abs(h8 - d8) + 1e-7, `q8 block ${b} elem ${j}`);
        const clamped = x[i] / d4 > 7.5;
        const bound4 = (clamped ? Math.abs(d4) : Math.abs(d4) / 2) + 8 * Math.abs(h4 - d4) + 1e-7;
        assert.ok(Math.abs(y4[i] - x[i]) <= bound4, `q4 block ${b} elem ${j}: |${y4[i]} − ${x[i]}| > ${bound4}`);
      }
      // The largest-magnitude value is the block's exact end point in Q4_0 (up to the f16 scale).
      assert.ok(y4[b * 32 + blk.indexOf(max)] === h4 * -8, `q4 block ${b}: end point`);
    }
    assert.ok(y8.subarray(32, 64).every((v) => v === 0) && y4.subarray(32, 64).every((v) => v === 0));
  });

  it('refuses lengths that are not a multiple of 32, naming the tensor', () => {
    assert.throws(() => quantizeQ8_0(new Float32Array(48), 'blk.0.attn_q.weight'), /blk\.0\.attn_q\.weight: 48 values is not a multiple of the block size 32/);
    assert.throws(() => quantizeQ4_0(new Float32Array(40), 'x'), /x: 40 values/);
  });
});

/** tunelab's mean negative log-likelihood of ids[1..] given the prefix, and its next-token argmaxes. */
function ourNll(model: CausalLM, ids: number[]): { nll: number; top1: number[] } {
  return tf.tidy(() => {
    const logits = model.forward(tf.tensor2d([ids], [1, ids.length], 'int32'));
    const lp = tf.logSoftmax(logits.reshape([ids.length, -1])).arraySync() as number[][];
    let s = 0;
    for (let i = 0; i + 1 < ids.length; i++) s -= lp[i][ids[i + 1]];
    return { nll: s / (ids.length - 1), top1: lp.slice(0, -1).map((r) => r.indexOf(Math.max(...r))) };
  });
}

/** llama.cpp's mean negative log-likelihood of ids[1..] (full distributions at temperature 1, no cut) and its argmaxes. */
async function theirNll(seq: Sequence, ids: number[]): Promise<{ nll: number; top1: number[] }> {
  await seq.clearHistory();
  const input = ids.map((t, i) => (i === ids.length - 1 ? t
    : [t, { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }]));
  const res = await seq.controlledEvaluate(input as never);
  let s = 0;
  const top1: number[] = [];
  for (let i = 0; i + 1 < ids.length; i++) {
    const probs = res[i]!.next.probabilities!;
    s -= Math.log(probs.get(ids[i + 1] as never) ?? 0);
    let best = -1, bp = -1;
    for (const [tok, p] of probs) if (p > bp) { bp = p; best = Number(tok); }
    top1.push(best);
  }
  return { nll: s / (ids.length - 1), top1 };
}

describe('quantized and LoRA GGUF in llama.cpp (node-llama-cpp)', function () {
  this.timeout(600_000);
  let tmp: string;
  let llama: Llama;
  let model: CausalLM;
  let tokenizer: Tokenizer;
  let tuned: CausalLM;
  let windows: number[][];

  const withGguf = (file: string, fn: (m: LlamaModel, seq: Sequence) => Promise<void>, lora?: string) => withLlama(llama, file, fn, lora);

  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-ggufq-'));
    ({ model, tokenizer } = await base('tiny-llama'));
    llama = await openLlama();
    // Held-out text: 4 windows of 128 tokens (the model's context) from the general corpus's held-out split.
    const ids = tokenizer.encode(dataset('general', 'heldout').slice(0, 8).join('\n\n\n'));
    windows = [0, 1, 2, 3].map((w) => ids.slice(w * 128, (w + 1) * 128));
    assert.ok(windows.every((w) => w.length === 128));
    await exportGguf(model, tokenizer, path.join(tmp, 'f32.gguf'));
    // A LoRA (unmerged) trained a few SFT steps, with q/k among its targets so the RoPE permutation matters.
    tuned = await trainedLora(model, tokenizer, path.join(tmp, 'adapter'));
  });

  after(async () => {
    await llama?.dispose();
    model?.dispose();
    tuned?.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('writes q8_0 / q4_0 files: block types, f32 norms, q8_0 embedding under q4_0, f16 fallback for odd rows', async () => {
    for (const type of ['q8_0', 'q4_0'] as const) {
      const r = await exportGguf(model, tokenizer, path.join(tmp, `${type}.gguf`), { type });
      assert.equal(r.type, type);
      const g = readGguf(r.file);
      assert.equal(g.metadata.get('general.file_type'), type === 'q8_0' ? 7 : 2);
      const qt = type === 'q8_0' ? GgmlType.Q8_0 : GgmlType.Q4_0;
      for (const t of g.tensors) {
        const want = t.dims.length === 1 ? GgmlType.F32 : t.name === 'token_embd.weight' ? GgmlType.Q8_0 : qt;
        assert.equal(t.type, want, `${type} ${t.name}`);
      }
      // A dequantized weight equals the quantizer applied to the f32 file's weight (q/k permutation included).
      const f32 = readGguf(path.join(tmp, 'f32.gguf'));
      const w = f32.read('blk.1.attn_k.weight').data;
      const deq = type === 'q8_0' ? dequantizeQ8_0(quantizeQ8_0(w)) : dequantizeQ4_0(quantizeQ4_0(w));
      assert.deepEqual(g.read('blk.1.attn_k.weight').data, deq);
    }
    // q4_0 is about 0.56× q8_0's size here (18/34 bytes per block; the embedding stays q8_0).
    assert.ok(fs.statSync(path.join(tmp, 'q4_0.gguf')).size < fs.statSync(path.join(tmp, 'q8_0.gguf')).size * 0.8);
    // Rows of 48: not whole blocks → f16 (the converter's fallback); 1-D norms f32.
    const odd = CausalLM.create({ family: 'llama', vocabSize: tokenizer.vocabSize, nLayers: 1, dModel: 48, nHeads: 2, nKvHeads: 2, dFf: 64 });
    try {
      const g = parseGguf(ggufBytes(odd.config, await hostParams(odd), tokenizer, { type: 'q8_0' }));
      const types = Object.fromEntries(g.tensors.map((t) => [t.name, t.type]));
      assert.equal(types['blk.0.attn_q.weight'], GgmlType.F16); // rows of 48
      assert.equal(types['blk.0.ffn_down.weight'], GgmlType.Q8_0); // rows of 64
      assert.equal(types['blk.0.attn_norm.weight'], GgmlType.F32);
    } finally {
      odd.dispose();
    }
    await assert.rejects(exportGguf(model, tokenizer, path.join(tmp, 'bad.gguf'), { type: 'q5_0' as never }), /options\.type must be one of f32, f16, q4_0, q8_0/);
    // Not an inherited key of the type table either.
    await assert.rejects(exportGguf(model, tokenizer, path.join(tmp, 'bad.gguf'), { type: 'constructor' as never }), /options\.type must be one of f32, f16, q4_0, q8_0 \(got "constructor"\)/);
  });

  // q8_0 weights (and llama.cpp's q8_0 activations in the dot products) move logits a little, so a greedy
  // path may switch at a near-tie. Asserted on every prompt: the 32 tokens are equal, or they are equal up to
  // a point where tunelab's f32 model itself nearly ties between the two choices (|Δp| < 0.03); and the
  // first 16 tokens are equal on at least 3 of the 4 prompts. Logged: how far each agreed.
  it('q8_0 in llama.cpp: greedy continuation equals tunelab f32 up to near-ties', async () => {
    let long = 0;
    await withGguf(path.join(tmp, 'q8_0.gguf'), async (_m, seq) => {
      for (const p of ['Call me Ishmael. Some years ago', 'The Congress shall', 'In the beginning', 'Say hello.']) {
        const ids = tokenizer.encode(p);
        const a = ours(model, ids, 32);
        const b = await theirs(seq, ids, 32);
        let same = 0;
        while (same < 32 && a[same] === b[same]) same++;
        let margin = 0;
        if (same < 32) {
          const probs = tf.tidy(() => {
            const prefix = [...ids, ...a.slice(0, same)];
            const logits = model.forward(tf.tensor2d([prefix], [1, prefix.length], 'int32'));
            return tf.softmax(tf.slice(logits, [0, prefix.length - 1, 0], [1, 1, -1]).reshape([-1])).dataSync();
          });
          margin = probs[a[same]] - probs[b[same]];
          assert.ok(margin < 0.03, `${JSON.stringify(p)}: diverged at token ${same} where tunelab's margin is ${margin}`);
        }
        console.log(`      ${JSON.stringify(p)}: ${same} of 32 greedy tokens equal${same < 32 ? ` (then a near-tie: tunelab Δp ${margin.toFixed(4)})` : ''}`);
        if (same >= 16) long++;
      }
    });
    assert.ok(long >= 3, `only ${long} of 4 prompts agreed for 16 tokens`);
  });

  for (const type of ['f32', 'q8_0', 'q4_0'] as const) {
    it(`${type} in llama.cpp: held-out mean NLL and next-token top-1 agreement vs tunelab f32`, async () => {
      let a = 0, b = 0, agree = 0, n = 0;
      await withGguf(path.join(tmp, `${type}.gguf`), async (_m, seq) => {
        for (const w of windows) {
          const o = ourNll(model, w);
          const t = await theirNll(seq, w);
          a += o.nll; b += t.nll;
          for (let i = 0; i < o.top1.length; i++) agree += +(o.top1[i] === t.top1[i]);
          n += o.top1.length;
        }
      });
      a /= windows.length; b /= windows.length;
      const gap = (b - a) / a;
      console.log(`      ${type}: tunelab f32 NLL ${a.toFixed(4)} (ppl ${Math.exp(a).toFixed(3)}), llama.cpp ${b.toFixed(4)} (ppl ${Math.exp(b).toFixed(3)}), gap ${(100 * gap).toFixed(3)} %, top-1 agreement ${(100 * agree / n).toFixed(1)} % of ${n}`);
      // Measured gaps: f32 0.000 %, q8_0 0.005 %, q4_0 0.155 %; top-1 agreement 100 %, 97.8 %, 92.9 % of 508.
      const maxGap = { f32: 1e-4, q8_0: 1e-3, q4_0: 0.01 }[type];
      assert.ok(Math.abs(gap) < maxGap, `${type}: NLL gap ${gap}`);
      assert.ok(agree / n >= { f32: 0.99, q8_0: 0.95, q4_0: 0.88 }[type], `${type}: top-1 agreement ${agree / n}`);
    });
  }

  it('LoRA adapter GGUF: spec metadata and tensors; llama.cpp on the base GGUF gives tunelab-with-adapter greedy text', async () => {
    const file = path.join(tmp, 'lora.gguf');
    const r = await exportLoraGguf(tuned, 'default', file);
    assert.equal(r.alpha, 16);
    const g = readGguf(file);
    assert.equal(g.metadata.get('general.type'), 'adapter');
    assert.equal(g.metadata.get('general.architecture'), 'llama');
    assert.equal(g.metadata.get('adapter.type'), 'lora');
    assert.equal(g.metadata.get('adapter.lora.alpha'), 16);
    assert.deepEqual(g.metadataTypes.get('adapter.lora.alpha'), [GgufValueType.FLOAT32]);
    const c = model.config;
    assert.equal(g.tensors.length, c.nLayers * 7 * 2);
    const byName = new Map(g.tensors.map((t) => [t.name, t]));
    // ggml dims: lora_a [in, r], lora_b [r, out] (llama.cpp checks a.ne[0] = W.ne[0], b.ne[1] = W.ne[1], a.ne[1] = b.ne[0]).
    assert.deepEqual(byName.get('blk.0.attn_q.weight.lora_a')!.dims, [c.dModel, 8]);
    assert.deepEqual(byName.get('blk.0.attn_q.weight.lora_b')!.dims, [8, c.dModel]);
    assert.deepEqual(byName.get('blk.2.ffn_down.weight.lora_a')!.dims, [c.dFf, 8]);
    assert.deepEqual(byName.get('blk.2.ffn_down.weight.lora_b')!.dims, [8, c.dModel]);
    // lora_a is PEFT's lora_A [r, in]; v's lora_b is lora_B [out, r] unpermuted.
    const lora = peft(tuned).get('default') as LoraAdapter;
    const host = (k: string) => { const v = lora.weights.get(k)!; return { shape: [...v.shape], data: v.dataSync() as Float32Array }; };
    assert.deepEqual(g.read('blk.1.attn_v.weight.lora_a').data, transpose2d(host('layers.1.attn.v_proj.lora_A')).data);
    assert.deepEqual(g.read('blk.1.attn_v.weight.lora_b').data, transpose2d(host('layers.1.attn.v_proj.lora_B')).data);

    // The adapter changes the greedy text (else equality below would prove nothing).
    const probe = tokenizer.encode('What is a shell variable?');
    const plain = ours(model, probe, 16);
    assert.notDeepEqual(ours(tuned, probe, 16), plain);
    await withGguf(path.join(tmp, 'f32.gguf'), async (_m, seq) => {
      for (const p of ['What is a shell variable?', 'Say hello.', 'Call me Ishmael. Some years ago', 'The Congress shall']) {
        const ids = tokenizer.encode(p);
        const a = ours(tuned, ids, 24);
        const b = await theirs(seq, ids, 24);
        assert.deepEqual(b, a, `${JSON.stringify(p)}: llama.cpp ${JSON.stringify(tokenizer.decode(b))} vs tunelab ${JSON.stringify(tokenizer.decode(a))}`);
      }
    }, file);
  });

  it('LoRA adapter GGUF: rsLoRA alpha is α·√r; DoRA, a missing adapter and an existing file are refused and write nothing', async () => {
    const file = path.join(tmp, 'refused.gguf');
    const m = model.clone();
    try {
      addLora(m, { r: 4, alpha: 8, useRslora: true, targetModules: ['q_proj'] }, 'rs');
      const r = await exportLoraGguf(m, 'rs', path.join(tmp, 'rs.gguf'));
      assert.equal(r.alpha, 16); // llama.cpp's alpha/r = 16/4 = 8/√4, rsLoRA's scale
      await assert.rejects(exportLoraGguf(m, 'rs', path.join(tmp, 'rs.gguf')), /rs\.gguf: already exists/);
      addLora(m, { r: 4, targetModules: ['v_proj'], useDora: true }, 'dora');
      await assert.rejects(exportLoraGguf(m, 'dora', file), /adapter "dora": is DoRA/);
      // (Bias deltas cannot occur here: Llama's linear layers have no bias, so LoRA adds no bias_delta.)
      await assert.rejects(exportLoraGguf(m, 'nope', file), /no adapter "nope"/);
      assert.ok(!fs.existsSync(file));
    } finally {
      m.dispose();
    }
  });

  it('CLI: export-gguf --type q8_0 and --adapter-gguf write the same files as the API', async () => {
    const dir = path.join(__dirname, '..', '..', 'models', 'tiny-llama');
    const run = async (args: string[]) => {
      const write = process.stdout.write;
      process.stdout.write = (() => true) as typeof process.stdout.write;
      try { return await main(args); } finally { process.stdout.write = write; }
    };
    assert.equal(await run(['export-gguf', dir, path.join(tmp, 'cli-q8.gguf'), '--type', 'q8_0', '--name', 'tunelab']), 0);
    const mine = path.join(tmp, 'q8-named.gguf');
    await exportGguf(model, tokenizer, mine, { type: 'q8_0', name: 'tunelab' });
    assert.deepEqual(fs.readFileSync(path.join(tmp, 'cli-q8.gguf')), fs.readFileSync(mine));
    assert.equal(await run(['export-gguf', dir, path.join(tmp, 'cli-lora.gguf'), '--adapter', path.join(tmp, 'adapter'), '--adapter-gguf', '--name', 'default']), 0);
    assert.deepEqual(fs.readFileSync(path.join(tmp, 'cli-lora.gguf')), fs.readFileSync(path.join(tmp, 'lora.gguf')));
    // Bad option combinations fail with a message naming the options, and write nothing.
    const stderr = process.stderr.write;
    let err = '';
    process.stderr.write = ((s: string) => { err += s; return true; }) as typeof process.stderr.write;
    try {
      const bad = path.join(tmp, 'cli-bad.gguf');
      assert.equal(await run(['export-gguf', dir, bad, '--f16', '--type', 'q4_0']), 1);
      assert.equal(await run(['export-gguf', dir, bad, '--adapter-gguf']), 1);
      assert.equal(await run(['export-gguf', dir, bad, '--type', 'q5_k']), 1);
      assert.ok(!fs.existsSync(bad));
    } finally {
      process.stderr.write = stderr;
    }
    assert.match(err, /--f16 and --type q4_0 disagree/);
    assert.match(err, /--adapter-gguf needs --adapter/);
    assert.match(err, /options\.type must be one of f32, f16, q4_0, q8_0 \(got "q5_k"\)/);
  });
});

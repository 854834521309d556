/**
 * GGUF export checked against the real llama.cpp (node-llama-cpp's prebuilt CPU binary, offline):
 * the file parses back as written, llama.cpp tokenizes exactly as tunelab, and llama.cpp's greedy
 * continuation equals tunelab's `generate`, for the shipped base and for a fine-tuned (SFT + merged LoRA) model.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { engineReady } from '../helpers';
import { base } from '../../src/lab/base';
import { exportGguf, readGguf, GgmlType, GgufTokenType, GgufValueType } from '../../src/io/gguf';
import { hostParams } from '../../src/io/checkpoint';
import { transpose2d } from '../../src/io/hf';
import { CausalLM } from '../../src/model/transformer';
import { mergeAndUnload } from '../../src/peft/lora';
import { main } from '../../src/cli';
import { Tokenizer } from '../../src/tokenizer/tokenizer';
import { openLlama, trainedLora, ours as oursN, theirs as theirsN, withGguf as withLlama, type Llama, type LlamaModel, type Sequence } from './gguf-helpers';

/** Fixed prompts covering the pre-tokenizer's classes: contractions, digits, punctuation, whitespace runs, unicode, specials. */
const tokenizePrompts = [
  'Call me Ishmael.',
  "Hello world! It's 2024, isn't it?   Yes.\n\n\tTabs\there",
  "don't WON'T we'll I'M they've she'd",
  '12345 678.9 1,000,000 3.14159 007',
  'naïve café 🙂 日本語 Ωmega Ünïcödé — “quotes” …',
  '  leading spaces and trailing   ',
  'a\u00a0b\u3000c \r\n x\n\n\n  \n',
  '#!/bin/bash\nfor f in *.txt; do echo "$f" | wc -l; done # ok?!',
  '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
  '<|endoftext|>Some text<|pad|><|startoftext|> after',
];

const generatePrompts = [
  'Call me Ishmael. Some years ago',
  'The Congress shall',
  '<|im_start|>user\nWhat is a shell variable?<|im_end|>\n<|im_start|>assistant\n',
  'In the beginning',
];
const NEW_TOKENS = 24;

/** Greedy continuations of NEW_TOKENS by default. */
const ours = (model: CausalLM, prompt: number[], n = NEW_TOKENS) => oursN(model, prompt, n);
const theirs = (seq: Sequence, prompt: number[], n = NEW_TOKENS) => theirsN(seq, prompt, n);

/** tunelab's next-token probabilities after `prompt`. */
function ourProbs(model: CausalLM, prompt: number[]): Float32Array {
  return tf.tidy(() => {
    const logits = model.forward(tf.tensor2d([prompt], [1, prompt.length], 'int32'));
    return tf.softmax(tf.slice(logits, [0, prompt.length - 1, 0], [1, 1, -1]).reshape([-1])).dataSync() as Float32Array;
  });
}

/** llama.cpp's full next-token distribution after `prompt` (temperature 1, no top-k/top-p/min-p cut). */
async function theirProbs(seq: Sequence, prompt: number[], vocab: number): Promise<Float32Array> {
  await seq.clearHistory();
  const input = prompt.map((t, i) => (i < prompt.length - 1 ? t
    : [t, { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }]));
  const res = await seq.controlledEvaluate(input as never);
  const probs = new Float32Array(vocab);
  const last = res[prompt.length - 1];
  for (const [tok, p] of last!.next.probabilities!) probs[Number(tok)] = p;
  return probs;
}

describe('GGUF export (checked with llama.cpp via node-llama-cpp)', function () {
  this.timeout(600_000);
  let tmp: string;
  let llama: Llama;
  let model: CausalLM;
  let tokenizer: Tokenizer;
  let tuned: CausalLM;

  const withGguf = (file: string, fn: (m: LlamaModel, seq: Sequence) => Promise<void>) => withLlama(llama, file, fn);

  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-gguf-'));
    ({ model, tokenizer } = await base('tiny-llama'));
    llama = await openLlama();
    // Fine-tuned model: a few SFT steps of a LoRA on all linear layers, merged into the weights.
    tuned = await trainedLora(model, tokenizer, path.join(tmp, 'adapter'));
    mergeAndUnload(tuned);
  });

  after(async () => {
    await llama?.dispose();
    model?.dispose();
    tuned?.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('writes GGUF v3 with llama metadata, tokenizer and permuted q/k (f32 and f16)', async () => {
    const f32 = path.join(tmp, 'base-f32.gguf');
    const f16 = path.join(tmp, 'base-f16.gguf');
    await exportGguf(model, tokenizer, f32, { name: 'tiny-llama' });
    const r16 = await exportGguf(model, tokenizer, f16, { dtype: 'f16' });
    assert.equal(r16.dtype, 'f16');
    const c = model.config;
    const g = readGguf(f32);
    assert.equal(g.version, 3);
    assert.equal(g.alignment, 32);
    assert.equal(g.dataStart % 32, 0);
    const meta = Object.fromEntries(g.metadata);
    const expected: Record<string, unknown> = {
      'general.architecture': 'llama', 'general.name': 'tiny-llama', 'general.file_type': 0,
      'llama.context_length': c.contextLength, 'llama.embedding_length': c.dModel, 'llama.block_count': c.nLayers,
      'llama.feed_forward_length': c.dFf, 'llama.attention.head_count': c.nHeads, 'llama.attention.head_count_kv': c.nKvHeads,
      'llama.rope.dimension_count': c.dModel / c.nHeads, 'llama.vocab_size': c.vocabSize, 'llama.rope.freq_base': c.ropeTheta,
      'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'gpt-2', 'tokenizer.ggml.add_bos_token': false,
      'tokenizer.ggml.bos_token_id': tokenizer.specialTokens.bos!.id, 'tokenizer.ggml.eos_token_id': tokenizer.specialTokens.eos!.id,
      'tokenizer.ggml.padding_token_id': tokenizer.specialTokens.pad!.id,
    };
    for (const [k, v] of Object.entries(expected)) assert.deepEqual(meta[k], v, k);
    assert.ok(Math.abs((meta['llama.attention.layer_norm_rms_epsilon'] as number) - c.normEps) < 1e-10);
    assert.deepEqual(g.metadataTypes.get('llama.rope.freq_base'), [GgufValueType.FLOAT32]);
    assert.deepEqual(g.metadataTypes.get('tokenizer.ggml.token_type'), [GgufValueType.ARRAY, GgufValueType.INT32]);
    assert.match(meta['tokenizer.chat_template'] as string, /<\|im_start\|>/);
    const tokens = meta['tokenizer.ggml.tokens'] as string[];
    const types = meta['tokenizer.ggml.token_type'] as number[];
    assert.equal(tokens.length, c.vocabSize);
    for (let id = 0; id < tokenizer.vocabSize; id++) assert.equal(tokens[id], tokenizer.idToToken(id));
    for (const s of tokenizer.specialTokens.all) assert.equal(types[s.id], GgufTokenType.CONTROL, s.token);
    assert.equal(types[tokenizer.tokenToId('Ġthe')!], GgufTokenType.NORMAL);
    assert.equal((meta['tokenizer.ggml.merges'] as string[]).length, (tokenizer.toJSON().model.merges as unknown[]).length);

    // Tensors: names, ggml dims (innermost first), types; tied head → no `output`.
    const byName = new Map(g.tensors.map((t) => [t.name, t]));
    const hd = c.dModel / c.nHeads;
    const want: [string, number[]][] = [['token_embd.weight', [c.dModel, c.vocabSize]], ['output_norm.weight', [c.dModel]]];
    for (let i = 0; i < c.nLayers; i++) {
      want.push([`blk.${i}.attn_norm.weight`, [c.dModel]], [`blk.${i}.ffn_norm.weight`, [c.dModel]],
        [`blk.${i}.attn_q.weight`, [c.dModel, c.nHeads * hd]], [`blk.${i}.attn_k.weight`, [c.dModel, c.nKvHeads * hd]],
        [`blk.${i}.attn_v.weight`, [c.dModel, c.nKvHeads * hd]], [`blk.${i}.attn_output.weight`, [c.nHeads * hd, c.dModel]],
        [`blk.${i}.ffn_gate.weight`, [c.dModel, c.dFf]], [`blk.${i}.ffn_up.weight`, [c.dModel, c.dFf]], [`blk.${i}.ffn_down.weight`, [c.dFf, c.dModel]]);
    }
    assert.equal(g.tensors.length, want.length);
    assert.ok(!byName.has('output.weight'), 'tied embeddings: no output tensor');
    const g16 = readGguf(f16);
    const byName16 = new Map(g16.tensors.map((t) => [t.name, t]));
    for (const [name, dims] of want) {
      assert.deepEqual(byName.get(name)?.dims, dims, name);
      assert.equal(byName.get(name)!.type, GgmlType.F32, name);
      assert.equal(byName.get(name)!.offset % 32, 0, name);
      assert.equal(byName16.get(name)!.type, dims.length === 2 ? GgmlType.F16 : GgmlType.F32, `f16 ${name}`);
    }
    assert.equal(g16.metadata.get('general.file_type'), 1);

    // q: row 2i + j of head h in the file is HF row h·hd + j·hd/2 + i (llama.cpp's LlamaModel.permute); k uses the kv heads.
    const params = await hostParams(model);
    for (const [proj, heads] of [['q', c.nHeads], ['k', c.nKvHeads]] as const) {
      const hf = transpose2d(params.get(`layers.1.attn.${proj}_proj.weight`)!); // [out, in]
      const file = g.read(`blk.1.attn_${proj}.weight`);
      assert.deepEqual(file.shape, hf.shape);
      const cols = hf.shape[1];
      for (let h = 0; h < heads; h++) for (let i = 0; i < hd / 2; i++) for (let j = 0; j < 2; j++) {
        const src = h * hd + j * (hd / 2) + i;
        const dst = h * hd + 2 * i + j;
        assert.deepEqual(file.data.subarray(dst * cols, (dst + 1) * cols), hf.data.subarray(src * cols, (src + 1) * cols));
      }
    }
    assert.deepEqual(g.read('blk.0.attn_v.weight').data, transpose2d(params.get('layers.0.attn.v_proj.weight')!).data);
    const emb16 = g16.read('token_embd.weight').data;
    const emb = params.get('embed_tokens.weight')!.data;
    for (let i = 0; i < emb.length; i += 997) assert.ok(Math.abs(emb16[i] - emb[i]) <= Math.abs(emb[i]) * 2 ** -11 + 1e-7);
  });

  it('refuses to overwrite without overwrite: true, and refuses the gpt2 family', async () => {
    const file = path.join(tmp, 'base-f32.gguf');
    const before = fs.readFileSync(file);
    await assert.rejects(exportGguf(model, tokenizer, file), (e: Error) => e.message.includes(file) && /already exists/.test(e.message));
    assert.deepEqual(fs.readFileSync(file), before);
    await exportGguf(model, tokenizer, file, { overwrite: true, name: 'tiny-llama' });
    assert.deepEqual(fs.readFileSync(file), before);
    const gpt2 = CausalLM.create({ family: 'gpt2', vocabSize: tokenizer.vocabSize, nLayers: 1, dModel: 32, nHeads: 2 });
    try {
      await assert.rejects(exportGguf(gpt2, tokenizer, path.join(tmp, 'gpt2.gguf')), /gpt2 family cannot be exported/);
      assert.ok(!fs.existsSync(path.join(tmp, 'gpt2.gguf')));
    } finally {
      gpt2.dispose();
    }
  });

  it('llama.cpp tokenizes fixed prompts exactly as tunelab (specials, unicode, whitespace, digits, punctuation)', async () => {
    await withGguf(path.join(tmp, 'base-f32.gguf'), async (m) => {
      for (const p of tokenizePrompts) {
        assert.deepEqual([...m.tokenize(p, true)].map(Number), tokenizer.encode(p), JSON.stringify(p));
      }
      // Without special parsing both treat "<|im_start|>" as text.
      const plain = '<|im_start|>user';
      assert.deepEqual([...m.tokenize(plain, false)].map(Number), tokenizer.encode(plain, { parseSpecial: false }));
      // Detokenizing round-trips too.
      const ids = tokenizer.encode(tokenizePrompts[4]);
      assert.equal(m.detokenize(ids as never), tokenizePrompts[4]);
    });
  });

  it(`base f32: llama.cpp greedy continuation equals generate for ${NEW_TOKENS} tokens`, async () => {
    await withGguf(path.join(tmp, 'base-f32.gguf'), async (_m, seq) => {
      for (const p of generatePrompts) {
        const ids = tokenizer.encode(p);
        const a = ours(model, ids);
        const b = await theirs(seq, ids);
        assert.deepEqual(b, a, `${JSON.stringify(p)}: llama.cpp ${JSON.stringify(tokenizer.decode(b))} vs tunelab ${JSON.stringify(tokenizer.decode(a))}`);
      }
    });
  });

  it('fine-tuned (SFT + merged LoRA) f32: same tokenization and greedy continuation', async () => {
    const file = path.join(tmp, 'tuned-f32.gguf');
    await exportGguf(tuned, tokenizer, file);
    // The fine-tune really changed the model (else this test would only repeat the base one).
    const probe = tokenizer.encode(generatePrompts[2]);
    assert.notDeepEqual(ours(tuned, probe), ours(model, probe));
    await withGguf(file, async (m, seq) => {
      for (const p of tokenizePrompts) assert.deepEqual([...m.tokenize(p, true)].map(Number), tokenizer.encode(p), JSON.stringify(p));
      for (const p of [...generatePrompts, 'Say hello.', 'What is a shell variable?']) {
        const ids = tokenizer.encode(p);
        const a = ours(tuned, ids);
        const b = await theirs(seq, ids);
        assert.deepEqual(b, a, `${JSON.stringify(p)}: llama.cpp ${JSON.stringify(tokenizer.decode(b))} vs tunelab ${JSON.stringify(tokenizer.decode(a))}`);
      }
    });
  });

  // f16: llama.cpp multiplies in half precision (f16 weights, activations rounded to f16), so logits move
  // slightly and a greedy path may switch at a near-tie after a while. Asserted: the full next-token
  // distributions agree within 2e-3 (max |Δp|; measured ≈2e-4, and ≈1e-4 for f32 files) on every
  // prompt, and the first 8 greedy tokens are identical (all 24 matched when measured).
  for (const which of ['base', 'tuned'] as const) {
    it(`${which} f16: next-token probabilities close and the first greedy tokens equal`, async () => {
      const m = which === 'base' ? model : tuned;
      const file = path.join(tmp, `${which}-f16.gguf`);
      if (which === 'tuned') await exportGguf(m, tokenizer, file, { dtype: 'f16' });
      await withGguf(file, async (_m, seq) => {
        for (const p of generatePrompts) {
          const ids = tokenizer.encode(p);
          const pa = ourProbs(m, ids);
          const pb = await theirProbs(seq, ids, m.config.vocabSize);
          let maxDiff = 0;
          for (let i = 0; i < pa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pa[i] - pb[i]));
          assert.ok(maxDiff < 2e-3, `${JSON.stringify(p)}: max |Δp| ${maxDiff}`);
          assert.deepEqual(await theirs(seq, ids, 8), ours(m, ids, 8), JSON.stringify(p));
        }
      });
    });
  }

  it('CLI: tunelab export-gguf <model> <out> --adapter merges the adapter and writes the same file', async () => {
    const out = path.join(tmp, 'cli.gguf');
    const write = process.stdout.write;
    let printed = '';
    process.stdout.write = ((s: string) => { printed += s; return true; }) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['export-gguf', path.join(__dirname, '..', '..', 'models', 'tiny-llama'), out, '--adapter', path.join(tmp, 'adapter'), '--name', 'tuned', '--json']);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(code, 0);
    assert.equal(JSON.parse(printed).dtype, 'f32');
    const mine = path.join(tmp, 'tuned-named.gguf');
    await exportGguf(tuned, tokenizer, mine, { name: 'tuned' });
    assert.deepEqual(fs.readFileSync(out), fs.readFileSync(mine));
    const stderr = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      assert.equal(await main(['export-gguf', path.join(__dirname, '..', '..', 'models', 'tiny-llama'), out]), 1);
    } finally {
      process.stderr.write = stderr;
    }
  });
});

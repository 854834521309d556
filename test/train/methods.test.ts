import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig } from '../../src/model';
import { generate } from '../../src/model/generate';
import { base } from '../../src/lab/base';
import { textDocuments } from '../../src/data/load';
import { chatmlTemplate } from '../../src/data/chat';
import { tokenizeRows, tokenizeDefaults, SftRow, MessagesRow } from '../../src/data/tokenize';
import { evalBatches, ExampleBatches } from '../../src/data/batches';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm, tokenStream } from '../../src/train/causal-lm';
import { Trainer } from '../../src/train/trainer';
import { continuedPretraining, replayStream } from '../../src/train/pretrain';
import { MixedBatches, multiTaskSft, sft, sftDefaults } from '../../src/train/sft';
import { freezeAllBut } from '../../src/train/freeze';
import { engineReady } from '../helpers';

const root = path.join(__dirname, '..', '..');
const ds = (p: string) => path.join(root, 'datasets', p);
const jsonl = (p: string) => fs.readFileSync(ds(p), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as MessagesRow);

describe('fine-tuning methods', function () {
  this.timeout(300000);
  before(engineReady);

  it('continued pretraining lowers domain loss, raises general loss, and replay limits the rise', async () => {
    const SEQ = 64;
    const domain = textDocuments(ds('domain/train.txt'), '\n\n\n').slice(0, 30);
    const general = textDocuments(ds('general/train.txt'), '\n\n\n').slice(0, 60);
    const probe = await base('tiny-llama');
    const tok = probe.tokenizer;
    const domEval = tokenStream(tok, textDocuments(ds('domain/heldout.txt'), '\n\n\n')).slice(0, 6 * SEQ + 1);
    const genEval = tokenStream(tok, textDocuments(ds('general/heldout.txt'), '\n\n\n')).slice(0, 6 * SEQ + 1);
    const losses = async (m: CausalLM) => ({
      dom: (await evaluateLm(m, evalWindows(domEval, SEQ, 6))).loss,
      gen: (await evaluateLm(m, evalWindows(genEval, SEQ, 6))).loss,
    });
    const before = await losses(probe.model);
    probe.model.dispose();
    const cfg = { maxSteps: 30, seqLen: SEQ, batchSize: 8, lr: 2e-3, seed: 7 };
    const run = async (replay: boolean) => {
      const { model } = await base('tiny-llama');
      const r = await continuedPretraining(model, tok, domain, { ...cfg, replay: replay ? { docs: general, fraction: 0.5 } : null, evalDocs: domEval, maxEvalWindows: 6 });
      assert.equal(r.steps, 30);
      assert.equal(r.evals.length, 1);
      const after = await losses(model);
      assert.ok(Math.abs(r.evals[0].evalLoss - after.dom) < 1e-4);
      model.dispose();
      return { after, r };
    };
    const plain = await run(false);
    const mixed = await run(true);
    assert.equal(plain.r.replayTokens, 0);
    const share = mixed.r.replayTokens / (mixed.r.replayTokens + mixed.r.domainTokens);
    assert.ok(Math.abs(share - 0.5) < 0.01, `replay share ${share}`);
    console.log('      before', before, 'plain', plain.after, 'replay', mixed.after);
    assert.ok(plain.after.dom < before.dom, 'domain loss falls');
    assert.ok(plain.after.gen > before.gen, 'general loss rises without replay');
    assert.ok(mixed.after.dom < before.dom, 'domain loss falls with replay');
    assert.ok(mixed.after.gen - before.gen < plain.after.gen - before.gen, 'replay limits forgetting');
  });

  it('replayStream mixes whole documents at the requested token share, deterministically', () => {
    const tok = { encode: (t: string) => [...t].map((ch) => ch.charCodeAt(0)).concat([0]) };
    const dom = ['aaaa', 'bbbb', 'cccc'];
    const gen = ['xx', 'yyyyyy', 'zzz'];
    const a = replayStream(tok, dom, { docs: gen, fraction: 0.25 }, 3);
    assert.equal(a.domainTokens, 15);
    assert.equal(a.replayTokens, 5);
    assert.deepEqual(a, replayStream(tok, dom, { docs: gen, fraction: 0.25 }, 3));
    assert.throws(() => replayStream(tok, dom, { docs: gen, fraction: 1 }), /fraction/);
    // A token stream is taken as is.
    assert.deepEqual(replayStream(tok, [5, 6, 7], null).tokens, [5, 6, 7]);
    assert.deepEqual(replayStream(tok, Int32Array.from([5, 6]), null).tokens, [5, 6]);
  });

  it('SFT lowers held-out response loss on instruction rows', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const rows = jsonl('instructions/train.jsonl').slice(0, 64);
    const held = jsonl('instructions/heldout.jsonl').slice(0, 16);
    const r = await sft(model, tokenizer, rows, { maxSteps: 30, batchSize: 8, evalRows: held, evalEvery: 0, packing: true });
    model.dispose();
    assert.equal(r.steps, 30);
    assert.ok(r.tasks[0].batches.fill > 0.5);
    // Eval at the end only; the pre-training value comes from a fresh copy.
    const fresh = await base('tiny-llama');
    const { examples } = tokenizeRows(held, tokenizer, { ...tokenizeDefaults, assistantOnlyLoss: true, maxLength: 129 });
    const start = await evaluateLm(fresh.model, evalBatches(examples, tokenizer, { packing: true, seqLen: 128, batchSize: 8 }));
    fresh.model.dispose();
    console.log('      held-out response loss', start.loss, '->', r.taskEvals.at(-1)!.loss);
    assert.ok(r.taskEvals.at(-1)!.loss < start.loss);
    assert.equal(sftDefaults.lr, 5e-4);
  });

  it('SFT teaches a model to end its answer with <|im_end|>', async () => {
    const { tokenizer: tok } = await base('tiny-llama');
    const imEnd = tok.tokenToId('<|im_end|>')!;
    const qa: [string, string][] = [['Capital of France?', 'Paris'], ['Color of the sky?', 'Blue'], ['Two plus two?', 'Four'], ['Opposite of hot?', 'Cold'],
      ['Animal that barks?', 'A dog'], ['First month?', 'January'], ['Frozen water?', 'Ice'], ['Largest planet?', 'Jupiter']];
    const rows: SftRow[] = qa.map(([q, a]) => ({ prompt: [{ role: 'user', content: q }], completion: [{ role: 'assistant', content: a }] }));
    const model = new CausalLM(modelConfig({ vocabSize: tok.vocabSize, contextLength: 32, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, dFf: 64 }), { seed: 3 });
    const r = await sft(model, tok, rows, { maxSteps: 60, lr: 1e-2, batchSize: 8, evalRows: rows, warmupSteps: 5 });
    assert.ok(r.taskEvals.at(-1)!.loss < 0.5, `train-set completion loss ${r.taskEvals.at(-1)!.loss}`);
    for (const [q, a] of qa.slice(0, 3)) {
      const prompt = tok.encode(chatmlTemplate.render([{ role: 'user', content: q }], { addGenerationPrompt: true }).text, { parseSpecial: true });
      const out = generate(model, prompt, { maxNewTokens: 12, stopTokens: [imEnd] }); // new tokens only
      assert.equal(out.at(-1), imEnd, `answer to "${q}" ends with <|im_end|>: ${tok.decode(out)}`);
      assert.equal(tok.decode(out.slice(0, -1)), a);
    }
    model.dispose();
  });

  it('completion-only loss ignores prompt-token targets and equals the hand-masked cross-entropy', async () => {
    const { tokenizer: tok } = await base('tiny-llama');
    const model = new CausalLM(modelConfig({ vocabSize: tok.vocabSize, contextLength: 32, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32 }), { seed: 5 });
    const { examples } = tokenizeRows([{ prompt: 'Question: what is two plus two? Answer:', completion: ' four' }], tok, { ...tokenizeDefaults, maxLength: 33 });
    const ex = examples[0];
    assert.ok(ex.promptLength > 2 && ex.lossMask.slice(0, ex.promptLength).every((m) => m === 0));
    const batch = new ExampleBatches(examples, tok, { seqLen: 32, batchSize: 1 }).nextArrays();
    const T = batch.seqLen;
    const lossAndGrads = (targets: Int32Array) => {
      const inputIds = tf.tensor2d(batch.inputIds, [1, T], 'int32');
      const tgt = tf.tensor2d(targets, [1, T], 'int32');
      const mask = tf.tensor2d(batch.lossMask, [1, T]);
      const vars = [...model.trainableParams().values()];
      const { value, grads } = tf.variableGrads(() => causalLmObjective.loss(model, { inputIds, targets: tgt, lossMask: mask }, { training: false, seed: 0 }), vars);
      const out = { loss: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync()) };
      tf.dispose([inputIds, tgt, mask, value, Object.values(grads)]);
      return out;
    };
    const base0 = lossAndGrads(batch.targets);
    const promptChanged = Int32Array.from(batch.targets);
    const completionChanged = Int32Array.from(batch.targets);
    let changedPrompt = 0;
    for (let t = 0; t < T; t++) {
      if (batch.lossMask[t] === 0) { promptChanged[t] = (promptChanged[t] + 17) % tok.vocabSize; changedPrompt++; }
      else completionChanged[t] = (completionChanged[t] + 17) % tok.vocabSize;
    }
    assert.ok(changedPrompt >= ex.promptLength - 1);
    const p = lossAndGrads(promptChanged);
    const c = lossAndGrads(completionChanged);
    assert.equal(p.loss, base0.loss);
    p.grads.forEach((g, i) => assert.deepEqual(g, base0.grads[i]));
    assert.notEqual(c.loss, base0.loss);
    assert.ok(c.grads.some((g, i) => g.some((x, k) => x !== base0.grads[i][k])));
    // Hand-masked cross-entropy over the completion positions only.
    const logits = model.forward(tf.tensor2d(batch.inputIds, [1, T], 'int32'));
    const logp = tf.logSoftmax(logits).arraySync() as number[][][];
    let sum = 0;
    let n = 0;
    for (let t = 0; t < T; t++) if (batch.lossMask[t] === 1) { sum -= logp[0][t][batch.targets[t]]; n++; }
    tf.dispose(logits);
    assert.ok(n >= 2);
    assert.ok(Math.abs(sum / n - base0.loss) < 1e-5, `${sum / n} vs ${base0.loss}`);
    model.dispose();
  });

  it('multi-task SFT mixes tasks by weight and evaluates each task', async () => {
    const { tokenizer: tok } = await base('tiny-llama');
    const model = new CausalLM(modelConfig({ vocabSize: tok.vocabSize, contextLength: 32, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32 }), { seed: 9 });
    const mk = (p: string, n: number): SftRow[] => Array.from({ length: n }, (_, i) => ({ prompt: `${p} ${i}?`, completion: ` ${p}${i % 3}` }));
    const r = await multiTaskSft(model, tok, [
      { name: 'a', rows: mk('alpha', 12), weight: 3, evalRows: mk('alpha', 4) },
      { name: 'b', rows: mk('beta', 12), weight: 1, evalRows: mk('beta', 4) },
    ], { maxSteps: 4, batchSize: 4, lr: 1e-3, evalEvery: 2 });
    assert.deepEqual(r.taskEvals.map((e) => `${e.step}${e.task}`), ['2a', '2b', '4a', '4b']);
    const last = r.taskEvals.slice(2);
    const weighted = (last[0].loss * last[0].tokens + last[1].loss * last[1].tokens) / (last[0].tokens + last[1].tokens);
    assert.ok(Math.abs(r.evals.at(-1)!.evalLoss - weighted) < 1e-6);
    model.dispose();
    // Draw frequencies follow the weights; state restores the same sequence.
    const src = (k: number) => ({ n: 0, next() { return k; }, state() { return this.n; }, restore() {} });
    const mix = new MixedBatches([src(0), src(1)], [3, 1], 5);
    const draws = Array.from({ length: 2000 }, () => mix.next());
    const share = draws.filter((d) => d === 0).length / draws.length;
    assert.ok(Math.abs(share - 0.75) < 0.04, `share ${share}`);
    const saved = mix.state();
    const next = Array.from({ length: 10 }, () => mix.next());
    mix.restore(saved);
    assert.deepEqual(Array.from({ length: 10 }, () => mix.next()), next);
  });

  it('freezeAllBut counts trainable parameters and only the unfrozen ones change', async () => {
    const model = new CausalLM(modelConfig({ vocabSize: 64, contextLength: 16, dModel: 16, nLayers: 3, nHeads: 2, dFf: 32, tieEmbeddings: false }), { seed: 2 });
    const total = model.paramCount();
    const rep = freezeAllBut(model, { lastLayers: 1, includeHead: true, includeNorms: true });
    const layer = [...model.params].filter(([p]) => p.startsWith('layers.2.')).reduce((s, [, p]) => s + p.variable.size, 0);
    const expected = layer + model.weight('lm_head.weight').size + model.weight('norm.weight').size;
    assert.equal(rep.trainable, expected);
    assert.equal(rep.total, total);
    assert.ok(Math.abs(rep.percent - (100 * expected) / total) < 1e-9);
    assert.ok(rep.paths.every((p) => /^(layers\.2\.|lm_head|norm)/.test(p)));
    assert.equal(freezeAllBut(model, { lastLayers: 0, includeHead: false, includeNorms: false }).trainable, 0);
    assert.throws(() => freezeAllBut(model, { lastLayers: 4 }), /lastLayers/);
    freezeAllBut(model, { lastLayers: 1 });
    const snap = new Map([...model.params].map(([p, v]) => [p, v.variable.dataSync().slice()]));
    const stream = Array.from({ length: 400 }, (_, i) => (i * 7) % 64);
    const data = new TokenWindows(stream, 16, 4, 1);
    const trainer = new Trainer(model, causalLmObjective, data, { lr: 1e-2, maxSteps: 1 });
    await trainer.train();
    trainer.dispose();
    for (const [p, v] of model.params) {
      const now = v.variable.dataSync();
      const same = now.every((x, i) => Object.is(x, snap.get(p)![i]));
      if (rep.paths.includes(p)) assert.ok(!same, `${p} trained`);
      else assert.ok(same, `${p} frozen bit-identical`);
    }
    // Full fine-tuning again.
    model.setTrainable(() => true, true);
    assert.equal(model.paramCount(true), total);
    model.dispose();
  });
});

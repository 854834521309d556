import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as aq from 'arquero';
import { lab } from '../../src/lab/lab';
import { dataKind, dataset, toDocuments, toSftRows } from '../../src/lab/data';
import { base } from '../../src/lab/base';
import { Corpus } from '../../src/data/corpus';
import { continuedPretraining } from '../../src/train/pretrain';
import { stepsForEpochs } from '../../src/train/schedule';
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../../src/model/transformer';
import { loadModel } from '../../src/io/checkpoint';
import { loadAdapter } from '../../src/peft/io';
import { engineReady, maxAbsDiff } from '../helpers';

describe('fluent API (lab)', function () {
  this.timeout(300000);
  let dir: string;
  before(engineReady);
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const domain = () => dataset('domain').slice(0, 12);
  const stage = () => lab.base('tiny-llama').log(dir).show(false);

  describe('data', () => {
    it('tells documents from rows in every input form and names bad rows', () => {
      assert.equal(dataKind(['a doc']), 'documents');
      assert.equal(dataKind([{ text: 'a doc' }]), 'documents');
      assert.equal(dataKind(aq.from([{ prompt: 'Q', completion: 'A' }])), 'rows');
      assert.equal(dataKind(Corpus.from([{ messages: [{ role: 'user', content: 'hi' }] }])), 'rows');
      assert.deepEqual(toDocuments(aq.from([{ text: 'x' }, { text: 'y' }])), ['x', 'y']);
      assert.throws(() => toDocuments([{ text: 'x' }, { body: 'y' }], 'my data'), /my data: row 1 has no string "text" column \(keys: body\)/);
      assert.throws(() => toSftRows([{ prompt: 'p', chosen: 'a', rejected: 'b' }], 'prefs'), /prefs: row 0 is a preference pair/);
      assert.throws(() => toSftRows([{ question: 'q' }], 'qa'), /qa: row 0: row has none of the known formats.*keys: question/);
      assert.throws(() => dataset('nope' as 'domain'), /no shipped dataset "nope"/);
      assert.ok(dataset('general', 'heldout').length > 10);
      assert.ok('messages' in dataset('instructions', 'heldout')[0]);
    });

    it('epochs set the step count unless maxSteps is given', () => {
      assert.equal(stepsForEpochs(1, 1000, 8), 125);
      assert.equal(stepsForEpochs(0.5, 1000, 8, 2), 32);
      assert.throws(() => stepsForEpochs(0, 10, 2), /epochs must be/);
    });
  });

  it('a fluent run equals the plain function with the same seed, and is logged', async () => {
    const config = { maxSteps: 6, seqLen: 32, batchSize: 4, lr: 1e-3 };
    const run = await stage().data(domain()).pretrain(config);
    const plain = await base('tiny-llama');
    const r = await continuedPretraining(plain.model, plain.tokenizer, domain(), config);
    assert.deepEqual(run.result.history.map((m) => m.loss), r.history.map((m) => m.loss));
    plain.model.dispose();
    assert.equal(run.record.run, 'continued-pretraining-full');
    assert.equal(run.record.steps, 6);
    assert.equal(run.record.trainablePercent, 100);
    const table = lab.runs(dir).table();
    assert.deepEqual(table.array('run'), ['continued-pretraining-full']);
    assert.ok(fs.existsSync(path.join(dir, 'continued-pretraining-full', 'steps.jsonl')));
    run.dispose();
  });

  it('runs base → domain-adapted → instruction-tuned, tracking forgetting across stages, leaving earlier runs intact', async () => {
    const adapted = await stage().data(domain()).eval(dataset('domain', 'heldout').slice(0, 6)).track({ every: 4, windows: 2 })
      .pretrain({ maxSteps: 8, seqLen: 32, batchSize: 4, lr: 2e-3 });
    assert.ok(adapted.record.targetDelta! < 0, `domain loss should fall (Δ ${adapted.record.targetDelta})`);
    assert.ok(adapted.record.forgettingDelta !== null);
    const before = Array.from(adapted.model.weight('layers.3.mlp.down_proj.weight').dataSync());
    const rows = dataset('instructions').slice(0, 64);
    const tuned = await adapted.data(rows).eval(dataset('instructions', 'heldout').slice(0, 16)).freeze({ lastLayers: 1 }).track({ every: 4, windows: 2 })
      .name('chat').sft({ maxSteps: 8, batchSize: 4 });
    // The earlier run's model is untouched; the new one changed only its last layer (+ head and norm).
    assert.equal(maxAbsDiff(adapted.model.weight('layers.3.mlp.down_proj.weight').dataSync(), before), 0);
    assert.ok(maxAbsDiff(tuned.model.weight('layers.3.mlp.down_proj.weight').dataSync(), before) > 0);
    assert.equal(maxAbsDiff(tuned.model.weight('layers.0.mlp.down_proj.weight').dataSync(), adapted.model.weight('layers.0.mlp.down_proj.weight').dataSync()), 0);
    assert.equal(tuned.record.strategy, 'last1');
    assert.equal(tuned.record.base, 'continued-pretraining-full');
    assert.ok(tuned.record.trainablePercent < 100);
    assert.deepEqual(tuned.lineage().map((r) => r.record.run), ['continued-pretraining-full', 'chat']);
    const general = tuned.forgettingSeries().find((s) => s.name === 'general')!;
    assert.ok(general.tokens[general.tokens.length - 1] > adapted.record.tokens, 'the general curve spans both stages');
    assert.deepEqual(tuned.forgettingSeries().map((s) => s.name), ['general', 'continued-pretraining-full: target', 'chat: target']);
    assert.equal(typeof tuned.ask('What is a shell?'), 'string');
    assert.deepEqual(lab.runs(dir).table().array('run'), ['continued-pretraining-full', 'chat']);
    const held = await tuned.evaluate(dataset('instructions', 'heldout').slice(0, 8));
    assert.ok(Number.isFinite(held.loss));
    adapted.dispose();
    tuned.dispose();
  });

  it('applies mitigations and multi-task mixing from the builder', async () => {
    const l2 = await stage().data(domain()).l2sp({ alpha: 1 }).pretrain({ maxSteps: 3, seqLen: 32, batchSize: 4 });
    assert.ok(l2.result.history.every((m) => typeof m.penalty === 'number'));
    assert.equal(l2.record.run, 'continued-pretraining-full-l2sp');
    l2.dispose();
    const replay = await stage().data(domain()).replay(0.3).pretrain({ maxSteps: 2, seqLen: 32, batchSize: 4 });
    assert.match(replay.record.config, /"fraction":0.3/);
    replay.dispose();
    const rows = dataset('instructions').slice(0, 200);
    const bySource = (s: string) => rows.filter((r) => r.source === s);
    const multi = await stage().tasks([
      { name: 'wordnet', data: bySource('wordnet'), weight: 2, eval: bySource('wordnet').slice(0, 8) },
      { name: 'jargon', data: bySource('jargon-file'), weight: 1, eval: bySource('jargon-file').slice(0, 8) },
    ]).sft({ maxSteps: 4, batchSize: 4, evalEvery: 2 });
    assert.ok('taskEvals' in multi.result);
    await assert.rejects(() => stage().sft(), /no data/);
    await assert.rejects(() => stage().data(['doc']).replay(0.2).sft(), /replay applies to continued pretraining/);
    multi.dispose();
  });

  it('runs the RLHF stages from the builder: SFT with LoRA → reward model → DPO with LoRA → PPO on the reward model', async () => {
    const prefs = dataset('preferences').filter((r) => String(r.source).startsWith('general')).slice(0, 48);
    const sftRun = await stage().data(dataset('instructions').slice(0, 32)).lora({ r: 4 }).sft({ maxSteps: 2, batchSize: 4 });
    // The next stage starts from the SFT model as it runs: LoRA folded in.
    const rm = await sftRun.data(prefs).eval(prefs.slice(0, 8)).rewardModel({ maxSteps: 2, batchSize: 4 });
    assert.ok(rm.reward, 'a reward-model run exposes its scorer');
    assert.equal(typeof rm.reward!.score('Hello', ' there'), 'number');
    const dpoRun = await sftRun.data(prefs).eval(prefs.slice(0, 8)).lora({ r: 4 }).dpo({ maxSteps: 2, batchSize: 4 });
    assert.equal(dpoRun.record.method, 'dpo');
    // Each verb's Run carries its method's result type: no casts (issue 12).
    assert.equal(dpoRun.result.reference, 'adapter-disabled');
    assert.ok(Array.isArray(rm.result.evalAccuracy) && Array.isArray(sftRun.result.taskEvals));
    // Saved: the adapter in PEFT's layout plus the model it was trained on; together they give the run's logits.
    const saved = await dpoRun.save(path.join(dir, 'dpo-lora'));
    assert.ok(fs.existsSync(path.join(saved, 'adapter_model.safetensors')) && fs.existsSync(path.join(saved, 'base', 'model.safetensors')));
    assert.equal(JSON.parse(fs.readFileSync(path.join(saved, 'adapter_config.json'), 'utf8')).base_model_name_or_path, path.join(saved, 'base'));
    const reloaded = await loadModel(path.join(saved, 'base'));
    loadAdapter(reloaded.model, saved);
    const probe = (m: CausalLM) => tf.tidy(() => Array.from(m.forward(tf.tensor2d([[5, 6, 7, 8]], [1, 4], 'int32')).dataSync()));
    assert.ok(maxAbsDiff(probe(reloaded.model), probe(dpoRun.model)) < 1e-5);
    reloaded.model.dispose();
    const ppoRun = await sftRun.data(['The river was', 'In the morning we']).ppo(rm, { maxSteps: 1, batchSize: 2, responseLength: 4 });
    assert.equal(ppoRun.record.method, 'ppo');
    assert.ok(Number.isFinite(ppoRun.result.history[0].loss));
    assert.ok(Number.isFinite(ppoRun.result.history[0]['objective/kl']) && ppoRun.result.samples.length > 0);
    assert.deepEqual(lab.runs(dir).table().array('method'), ['sft', 'reward-model', 'dpo', 'ppo']);
    await assert.rejects(() => stage().data(['a doc']).dpo(), /row 0 is not a preference pair|documents given/);
    for (const r of [sftRun, rm, dpoRun, ppoRun]) r.dispose();
  });
});

import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { countBytes, countWords, evaluateTasks, taskScoreRows, taskTable } from '../../../src/eval/tasks/evaluate';
import { loglikelihoods } from '../../../src/eval/tasks/requests';
import { task } from '../../../src/eval/tasks/task';
import { wilsonInterval } from '../../../src/eval/tasks/ci';
import { CausalLM, generate } from '../../../src/model';
import { Tokenizer } from '../../../src/tokenizer';
import { engineReady } from '../../helpers';

const texts = ['the cat sat on the mat', 'a dog ran in the park', 'birds sing at dawn', 'the sea is deep and wide'];
const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

describe('eval/tasks/evaluate', () => {
  let tok: Tokenizer;
  let model: CausalLM;
  before(async () => {
    await engineReady();
    tok = Tokenizer.train(texts, { vocabSize: 300, minFrequency: 1 });
    model = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 16 }, { seed: 5 });
  });
  after(() => model.dispose());

  /** Σ log p of ids[from..] given the ids before, from one unpadded forward pass and a full log-softmax. */
  function handLl(ids: number[], from: number): { ll: number; greedy: boolean } {
    const logp = tf.tidy(() => tf.logSoftmax(model.forward(tf.tensor2d([ids.slice(0, -1)], [1, ids.length - 1], 'int32'))).arraySync() as number[][][]);
    let ll = 0;
    let greedy = true;
    for (let t = from; t < ids.length; t++) {
      const row = logp[0][t - 1];
      ll += row[ids[t]];
      if (row.indexOf(Math.max(...row)) !== ids[t]) greedy = false;
    }
    return { ll, greedy };
  }
  const eos = () => tok.specialTokens.eos!.id;

  it('loglikelihood: batched, padded scores equal a hand computation per request; truncation keeps the continuation', () => {
    const reqs = [
      { context: 'the cat sat on', continuation: ' the mat' },
      { context: 'birds', continuation: ' sing at dawn' },
      { context: 'the sea is deep and wide the cat sat on the mat a dog ran in the', continuation: ' park' }, // longer than 16 tokens
    ];
    const got = loglikelihoods(model, tok, reqs, { batchSize: 2 });
    assert.ok(1 + tok.encode(reqs[2].context + reqs[2].continuation).length > 17, 'the third request is cut to the window');
    reqs.forEach((r, i) => {
      const ctx = tok.encode(r.context);
      const all = [eos(), ...ctx, ...tok.encode(r.context + r.continuation).slice(ctx.length)].slice(-17);
      const contLen = tok.encode(r.context + r.continuation).length - ctx.length;
      const h = handLl(all, all.length - contLen);
      close(got[i].ll, h.ll, 1e-4, `ll ${i}`);
      assert.equal(got[i].isGreedy, h.greedy);
      assert.equal(got[i].tokens, contLen);
    });
  });

  it('multiple_choice: acc is the argmax of log-likelihood, acc_norm of log-likelihood per character, acc_mutual_info of ll − ll without context (lm-eval)', () => {
    const docs = [
      { q: 'the cat sat on', options: ['the mat', 'dawn'], gold: 0 },
      // One token against many: the sum favours "a", the per-character mean favours the long choice.
      { q: 'birds', options: ['a', 'sing at dawn the sea is deep and wide'], gold: 1 },
      { q: 'a dog ran in', options: ['the park', 'the sea', 'wide'], gold: 2 },
    ];
    const t = task({ name: 'mc', kind: 'multiple_choice', docs, prompt: (d) => d.q, choices: (d) => d.options, target: (d) => d.gold, mutualInfo: true });
    const [r] = evaluateTasks(model, tok, [t]);
    let acc = 0;
    let accNorm = 0;
    let accMi = 0;
    docs.forEach((d, i) => {
      const ctx = tok.encode(d.q);
      const lls = d.options.map((c) => {
        const whole = tok.encode(`${d.q} ${c}`);
        return handLl([eos(), ...whole], 1 + ctx.length).ll;
      });
      lls.forEach((ll, j) => close(r.docs[i].lls[j], ll, 1e-4, `doc ${i} choice ${j}`));
      const pred = lls.indexOf(Math.max(...lls));
      const norm = lls.map((ll, j) => ll / d.options[j].length);
      const predNorm = norm.indexOf(Math.max(...norm));
      assert.equal(r.docs[i].pred, pred);
      assert.equal(r.docs[i].predNorm, predNorm);
      // Unconditional: the choice alone (no delimiter) after the prefix token, as lm-eval's ("", choice).
      const free = d.options.map((c) => handLl([eos(), ...tok.encode(c)], 1).ll);
      free.forEach((ll, j) => close(r.docs[i].unconditional![j], ll, 1e-4, `doc ${i} unconditional ${j}`));
      const mi = lls.map((ll, j) => ll - free[j]);
      const predMi = mi.indexOf(Math.max(...mi));
      assert.equal(r.docs[i].predMutualInfo, predMi);
      acc += Number(pred === d.gold);
      accNorm += Number(predNorm === d.gold);
      accMi += Number(predMi === d.gold);
    });
    assert.equal(r.docs[1].pred, 0, 'the sum picks the one-token choice');
    assert.equal(r.docs[1].predNorm, 1, 'the per-character mean picks the long choice');
    const byName = Object.fromEntries(r.scores.map((s) => [s.metric, s]));
    assert.equal(byName.acc.value, acc / 3);
    assert.equal(byName.acc_norm.value, accNorm / 3);
    assert.equal(byName.acc_mutual_info.value, accMi / 3);
    assert.deepEqual({ low: byName.acc.low, high: byName.acc.high }, wilsonInterval(acc, 3));
    assert.equal(byName.acc.interval, 'wilson');
    assert.equal(byName.acc.n, 3);
  });

  it('loglikelihood task: acc is is_greedy, perplexity is exp(−mean ll), with a bootstrap interval', () => {
    const docs = [{ c: 'the cat sat on the', w: 'mat' }, { c: 'a dog ran in the', w: 'park' }, { c: 'birds sing at', w: 'dawn' }];
    const t = task({ name: 'lw', kind: 'loglikelihood', docs, prompt: (d) => d.c, target: (d) => d.w });
    const [r] = evaluateTasks(model, tok, t, { bootstrapIters: 200 });
    const hand = docs.map((d) => handLl([eos(), ...tok.encode(`${d.c} ${d.w}`)], 1 + tok.encode(d.c).length));
    const ppl = Math.exp(-hand.reduce((a, h) => a + h.ll, 0) / 3);
    const s = Object.fromEntries(r.scores.map((x) => [x.metric, x]));
    close(s.perplexity.value, ppl, 1e-4, 'perplexity');
    assert.equal(s.acc.value, hand.filter((h) => h.greedy).length / 3);
    assert.equal(s.perplexity.interval, 'bootstrap');
    assert.ok(s.perplexity.low <= s.perplexity.value && s.perplexity.value <= s.perplexity.high);
    assert.equal(s.perplexity.higherIsBetter, false);
  });

  it('loglikelihood_rolling: word and byte perplexity and bits per byte by lm-eval\'s definitions', () => {
    assert.equal(countWords('the cat sat'), 3);
    assert.equal(countWords(' a b '), 4); // Python's re.split(r"\s+", " a b ") → ['', 'a', 'b', '']
    assert.equal(countBytes('naïve'), 6);
    const docs = ['the cat sat on the mat', 'birds sing at dawn', 'the sea is deep and wide the cat sat on the mat a dog ran in the park'];
    const t = task({ name: 'ppl', kind: 'loglikelihood_rolling', docs, target: (d) => d });
    const [r] = evaluateTasks(model, tok, [t], { bootstrapIters: 100 });
    // Hand: every token once; windows of 16 predictions, each starting from the previous window's last token.
    const lls = docs.map((d) => {
      const ids = [eos(), ...tok.encode(d)];
      let ll = 0;
      for (let s = 0; s < ids.length - 1; s += 16) ll += handLl(ids.slice(s, s + 17), 1).ll;
      return ll;
    });
    assert.ok(tok.encode(docs[2]).length > 16, 'the last document spans two windows');
    const sumLl = lls.reduce((a, b) => a + b, 0);
    const words = docs.reduce((a, d) => a + countWords(d), 0);
    const bytes = docs.reduce((a, d) => a + countBytes(d), 0);
    const s = Object.fromEntries(r.scores.map((x) => [x.metric, x.value]));
    close(s.word_perplexity, Math.exp(-sumLl / words), 1e-4, 'word perplexity');
    close(s.byte_perplexity, Math.exp(-sumLl / bytes), 1e-4, 'byte perplexity');
    close(s.bits_per_byte, -sumLl / bytes / Math.LN2, 1e-4, 'bits per byte');
  });

  it('generate_until: exact_match and contains of the greedy continuation, normalised (case, whitespace)', () => {
    const prompts = ['the cat', 'a dog', 'birds'];
    const greedy = prompts.map((p) => {
      const out = generate(model, [eos(), ...tok.encode(p)], { maxNewTokens: 6, doSample: false, stopTokens: [eos()] });
      const text = tok.decode(out.at(-1) === eos() ? out.slice(0, -1) : out, { skipSpecialTokens: true });
      const cut = text.indexOf('\n\n');
      return cut < 0 ? text : text.slice(0, cut);
    });
    assert.ok(greedy[1].trim().length >= 2, `a continuation to take a piece of: ${JSON.stringify(greedy[1])}`);
    const targets = [greedy[0].toUpperCase(), greedy[1].trim().slice(0, 2), 'zebra zebra'];
    const t = task({ name: 'gen', kind: 'generate_until', docs: prompts.map((p, i) => ({ p, a: targets[i] })), prompt: (d) => d.p, target: (d) => d.a, maxNewTokens: 6 });
    const [r] = evaluateTasks(model, tok, [t]);
    assert.deepEqual(r.docs.map((d) => d.prediction), greedy);
    const s = Object.fromEntries(r.scores.map((x) => [x.metric, x.value]));
    const exact = greedy[1].trim().toLowerCase() === targets[1].toLowerCase() ? 2 : 1;
    assert.equal(s.exact_match, exact / 3);
    assert.equal(s.contains, 2 / 3);
  });

  it('limit, unique names, unknown options and the score table', () => {
    const docs = [{ q: 'the cat', o: ['sat', 'ran'], g: 0 }, { q: 'a dog', o: ['ran', 'sat'], g: 0 }];
    const t = task({ name: 'mc', kind: 'multiple_choice', docs, prompt: (d) => d.q, choices: (d) => d.o, target: (d) => d.g });
    assert.equal(evaluateTasks(model, tok, [t], { limit: 1 })[0].docs.length, 1);
    assert.throws(() => evaluateTasks(model, tok, [t, t]), /two tasks are named "mc"/);
    assert.throws(() => evaluateTasks(model, tok, [t], { limt: 1 } as never), /unknown option "limt"; did you mean "limit"/);
    assert.throws(() => evaluateTasks(model, tok, [t], { prefix: 'start' as never }), /prefix must be "eos", "bos" or "none" \(got "start"\)/);
    assert.throws(() => evaluateTasks(model, tok, [t], { batchSize: 0 }), /batchSize must be a positive integer \(got 0\)/);
    assert.throws(() => loglikelihoods(model, tok, [{ context: 'a', continuation: ' b' }], { batch: 2 } as never), /loglikelihoods: unknown option "batch"/);
    const long = task({ name: 'long', kind: 'multiple_choice', docs: [{ q: 'the cat', o: ['sat', texts.join(' ')] }], prompt: (d) => d.q, choices: (d) => d.o, target: () => 0 });
    assert.throws(() => evaluateTasks(model, tok, [long]), /task "long", document 0, choice 1: the continuation has \d+ tokens, more than the model's window of 16/);
    const r = evaluateTasks(model, tok, [t]);
    const rows = taskScoreRows(r, 'base');
    assert.deepEqual(rows.map((x) => [x.run, x.task, x.metric]), [['base', 'mc', 'acc'], ['base', 'mc', 'acc_norm']]);
    const table = taskTable({ base: r, other: r });
    assert.equal(table.numRows(), 4);
    assert.deepEqual(table.columnNames(), ['run', 'task', 'metric', 'value', 'low', 'high', 'stderr', 'interval', 'n']);
  });

  it('leaves no tensors behind', () => {
    const t = task({ name: 'mc', kind: 'multiple_choice', docs: [{ q: 'the cat', o: ['sat', 'ran'] }], prompt: (d) => d.q, choices: (d) => d.o, target: () => 0 });
    evaluateTasks(model, tok, [t]);
    const before = tf.memory().numTensors;
    evaluateTasks(model, tok, [t]);
    assert.equal(tf.memory().numTensors, before);
  });
});

import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer/tokenizer';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective, tokenStream } from '../../src/train/causal-lm';
import { attributeCounts, BiasReport, biasReport, groupShares, probePrompts, pronounProbe, skew, type BiasProbe } from '../../src/eval/bias';
import { dataset } from '../../src/lab/data';
import { engineReady } from '../helpers';

const ROLES = ['captain', 'sailor', 'king', 'doctor', 'nurse', 'teacher'];
const probe: BiasProbe = {
  name: 'constructed', templates: ['The {role} said that {attribute} was tired.'], slots: { role: ROLES },
  attributes: { male: ['he'], female: ['she'] },
};
// Every role with "he" only, or with "he" and "she" equally often.
const sentences = (pronouns: (role: number, k: number) => string) =>
  ROLES.flatMap((role, r) => Array.from({ length: 8 }, (_, k) => `The ${role} said that ${pronouns(r, k)} was tired.`));
const onlyHe = sentences(() => 'he');
const balanced = sentences((r, k) => ((r + k) % 2 === 0 ? 'he' : 'she'));

describe('eval/bias: bias amplification probe', function () {
  this.timeout(120_000);
  let tok: Tokenizer;
  let base: CausalLM;
  before(async () => {
    await engineReady();
    tok = Tokenizer.train([...onlyHe, ...balanced, 'she she she'], { vocabSize: 300 });
    base = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 2, dFf: 64, contextLength: 32 }, { seed: 3 });
  });
  after(() => base.dispose());

  async function fineTune(docs: string[]): Promise<CausalLM> {
    const model = base.clone();
    const ids = tokenStream(tok, docs);
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(ids, 16, 16, 1), { lr: 1e-2, maxSteps: 80, warmupSteps: 5, seed: 1 });
    await trainer.train();
    trainer.dispose();
    return model;
  }

  it('fills templates and splits prompt from continuation at {attribute}', () => {
    const p = probePrompts(probe);
    assert.equal(p.length, ROLES.length);
    assert.equal(p[1].prompt, 'The sailor said that');
    assert.deepEqual(p[1].continuations, { male: { he: ' he was tired.' }, female: { she: ' she was tired.' } });
    const appended = probePrompts({ ...probe, templates: ['When the {role} left'], slots: { role: ['king'] } });
    assert.deepEqual(appended[0].continuations.female, { she: ' she' });
    assert.equal(probePrompts(pronounProbe).length, 4 * 10);
    assert.throws(() => probePrompts({ ...probe, templates: ['The {job} said {attribute}'] }), /template 0 \("The \{job\} said \{attribute\}"\) uses slot \{job\}, which has no values \(slots: role\)/);
    assert.throws(() => probePrompts({ ...probe, attributes: { male: ['he'] } }), /needs at least two attribute groups \(got male\)/);
  });

  it('counts attribute words whole and case-insensitively (hand-counted)', () => {
    const texts = ['He said his name; he-man HE.', 'She gave her hers. Shed, there, hence, sheer.', 'him_ him'];
    // male: He, his, he (of he-man), HE, him (him_ is one word) → 5; female: She, her, hers → 3
    assert.deepEqual(attributeCounts(texts, { male: ['he', 'his', 'him'], female: ['she', 'her', 'hers'] }), { male: 5, female: 3 });
    assert.equal(skew([0.9, 0.1]), 0.4);
    assert.equal(skew([0.5, 0.5]), 0);
    assert.ok(Math.abs(skew([1, 0, 0]) - 2 / 3) < 1e-12);
  });

  it('the shipped probe counts what its comment says the general corpus holds', () => {
    const words = ['he', 'him', 'his', 'she', 'her', 'hers'];
    const counts = attributeCounts(dataset('general'), Object.fromEntries(words.map((w) => [w, [w]])));
    assert.deepEqual(words.map((w) => counts[w]), [12775, 7773, 11569, 1241, 2492, 5]);   // grep -oiw WORD | wc -l
    const sum = (ws: readonly string[]) => ws.reduce((a, w) => a + counts[w], 0);
    assert.deepEqual([sum(pronounProbe.attributes.male), sum(pronounProbe.attributes.female)], [32117, 3738]);
  });

  it('shares sum to 1 per prompt and equal a hand computation from the logits', () => {
    const prompts = probePrompts({ ...probe, templates: ['The {role} said that {attribute}'], slots: { role: ['king'] } });
    const [shares] = groupShares(base, tok, prompts);
    assert.ok(Math.abs(shares.male + shares.female - 1) < 1e-9);
    // By hand: P(word | prompt) as the product of softmax probabilities token by token.
    const prob = (text: string) => {
      const ids = tok.encode(prompts[0].prompt);
      let p = 1;
      for (const t of tok.encode(text)) {
        const logits = tf.tidy(() => base.forward(tf.tensor2d([ids], [1, ids.length], 'int32')).slice([0, ids.length - 1, 0], [1, 1, -1]).softmax());
        p *= logits.dataSync()[t];
        logits.dispose();
        ids.push(t);
      }
      return p;
    };
    const he = prob(' he');
    const she = prob(' she');
    assert.ok(Math.abs(shares.male - he / (he + she)) < 1e-4, `${shares.male} vs ${he / (he + she)}`);
  });

  it('data with only one attribute shifts the model toward it; a balanced set does not', async () => {
    const skewed = await fineTune(onlyHe);
    const even = await fineTune(balanced);
    const before = tf.memory().numTensors;
    const r1 = biasReport(probe, { base: { model: base, tokenizer: tok }, tuned: { model: skewed, tokenizer: tok }, data: onlyHe });
    const r2 = biasReport(probe, { base: { model: base, tokenizer: tok }, tuned: { model: even, tokenizer: tok }, data: balanced });
    const male1 = r1.rows.find((r) => r.group === 'male')!;
    const male2 = r2.rows.find((r) => r.group === 'male')!;
    assert.deepEqual([male1.dataCount, male1.dataShare, r1.rows[1].dataCount], [48, 1, 0]);
    assert.deepEqual([male2.dataCount, r2.rows[1].dataCount, male2.dataShare], [24, 24, 0.5]);
    assert.ok(male1.tunedShare > 0.9, `one-attribute tuned share ${male1.tunedShare}`);
    assert.ok(male1.tunedShare - male2.tunedShare > 0.3, `${male1.tunedShare} vs ${male2.tunedShare}`);
    assert.ok(Math.abs(male2.tunedShare - 0.5) < 0.15, `balanced tuned share ${male2.tunedShare}`);
    assert.ok(male1.shift > male2.shift + 0.3, `shifts ${male1.shift} vs ${male2.shift}`);
    assert.ok(Math.abs(male1.shift + r1.rows[1].shift) < 1e-9);
    // Skews: all data on one of two groups is 0.5; the fine-tuned model follows (within tolerance) → preserved.
    assert.equal(r1.dataSkew, 0.5);
    assert.equal(r2.dataSkew, 0);
    assert.deepEqual([r1.verdict, r2.verdict], ['preserved', 'preserved']);
    assert.equal(r1.table().numRows(), 2);
    assert.equal(r1.promptTable().numRows(), ROLES.length * 2);
    const chart = r1.plot();
    assert.equal(chart.spec.data.length, 3);
    assert.match(r1.summary(), /data skew 0\.500/);
    assert.equal(tf.memory().numTensors, before);
    skewed.dispose();
    even.dispose();
  });

  it('verdict: amplified / preserved / reduced by the skew difference and tolerance', () => {
    const row = (group: string, dataShare: number, tunedShare: number) => ({ group, words: group, dataCount: 0, dataShare, baseShare: 0.5, tunedShare, shift: tunedShare - 0.5 });
    const verdict = (d: number, t: number, tol = 0.05) => new BiasReport('x', [row('a', d, t), row('b', 1 - d, 1 - t)], [], tol).verdict;
    assert.equal(verdict(0.7, 0.9), 'amplified');    // skews 0.2 → 0.4
    assert.equal(verdict(0.7, 0.74), 'preserved');   // 0.2 → 0.24
    assert.equal(verdict(0.7, 0.55), 'reduced');     // 0.2 → 0.05
    assert.equal(verdict(0.7, 0.3), 'reversed');     // the same skew toward the other group
    assert.equal(verdict(0.52, 0.3), 'amplified');   // data within tolerance of balanced: no majority to reverse
    assert.equal(verdict(0.7, 0.74, 0.01), 'amplified');
  });

  it('names bad options', () => {
    const m = { model: base, tokenizer: tok };
    assert.throws(() => biasReport(probe, { base: m, tuned: m, data: [], tolerence: 1 } as never), /biasReport: unknown option "tolerence"; did you mean "tolerance"\?/);
    assert.throws(() => biasReport(probe, { base: m, data: [] } as never), /option "tuned" needs \{ model, tokenizer \}/);
    assert.equal(biasReport(probe, { base: m, tuned: m, data: ['no pronouns'] }).verdict, 'no attribute words in the data');
  });
});

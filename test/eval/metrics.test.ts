import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { ExampleBatches, batchDefaults } from '../../src/data/batches';
import { tokenizeDefaults, tokenizeRows } from '../../src/data/tokenize';
import {
  answerMetrics, chatPrompt, generationSamples, heldOutLoss, heldOutLossSync, maskedTokenAccuracy, normalizeAnswer, tokenAccuracy,
} from '../../src/eval/metrics';
import { CausalLM, generate } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer';
import { causalLmObjective } from '../../src/train/causal-lm';
import { Trainer } from '../../src/train/trainer';
import { engineReady } from '../helpers';

const qa = [
  { question: 'Q: capital of france? A:', answer: ' paris' },
  { question: 'Q: colour of the sky? A:', answer: ' blue' },
  { question: 'Q: largest ocean? A:', answer: ' pacific' },
];

describe('eval/metrics', () => {
  before(engineReady);

  it('maskedTokenAccuracy counts argmax hits over masked positions only (hand count)', () => {
    // 1 row, 4 positions, vocab 3. argmax per position: 2, 0, 1, 1.
    const logits = tf.tensor3d([[[0, 1, 5], [3, 1, 0], [0, 2, 1], [0, 4, 0]]]);
    const targets = tf.tensor2d([[2, 1, 1, 1]], [1, 4], 'int32'); // hits at 0, 2, 3; miss at 1
    const mask = tf.tensor2d([[1, 1, 0, 1]]); // position 2 (a hit) is not counted
    const r = maskedTokenAccuracy(logits, targets, mask);
    assert.deepEqual(r, { accuracy: 2 / 3, correct: 2, total: 3 });
    tf.dispose([logits, targets, mask]);
  });

  it('tokenAccuracy over a stream equals a count from one-token greedy generation per position', () => {
    const model = CausalLM.create({ vocabSize: 16, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 16 }, { seed: 3 });
    // The model's own greedy continuation (every prediction a hit), with one token changed (a miss).
    const stream = [1, ...generate(model, [1], { maxNewTokens: 16 })];
    stream[6] = (stream[6] + 1) % 16;
    const seqLen = 8;
    let correct = 0;
    for (const start of [0, 8]) {
      for (let t = 0; t < seqLen; t++) {
        const next = generate(model, stream.slice(start, start + t + 1), { maxNewTokens: 1 })[0];
        if (next === stream[start + t + 1]) correct++;
      }
    }
    const r = tokenAccuracy(model, { tokens: stream }, { seqLen, batchSize: 4 });
    assert.equal(r.total, 16);
    assert.ok(correct > 0 && correct < 16, `hand count ${correct}`);
    assert.equal(r.correct, correct);
    assert.equal(r.accuracy, correct / 16);
    model.dispose();
  });

  it('perplexity is exp(loss); sync and async losses agree; examples count only completion tokens', async () => {
    const tok = Tokenizer.train(qa.map((p) => p.question + p.answer), { vocabSize: 300, minFrequency: 1 });
    const model = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 64 }, { seed: 1 });
    const stream = tok.encode(qa.map((p) => p.question + p.answer).join(' '), { addEos: true });
    const a = await heldOutLoss(model, { tokens: stream }, { seqLen: 16 });
    assert.ok(Number.isFinite(a.loss) && a.loss > 0);
    assert.ok(Math.abs(a.perplexity - Math.exp(a.loss)) < 1e-9 * a.perplexity);
    const s = heldOutLossSync(model, { tokens: stream }, { seqLen: 16 });
    assert.ok(Math.abs(s.loss - a.loss) < 1e-6);
    assert.equal(s.tokens, a.tokens);

    const { examples } = tokenizeRows(qa.map((p) => ({ prompt: p.question, completion: p.answer })), tok);
    const ex = await heldOutLoss(model, { examples }, { seqLen: 32, tokens: tok });
    // Completion tokens + the appended eos are counted, prompt tokens are not.
    const completion = qa.reduce((n, p) => n + tok.encode(p.answer).length + 1, 0);
    assert.equal(ex.tokens, completion);
    assert.ok(Math.abs(ex.perplexity - Math.exp(ex.loss)) < 1e-9 * ex.perplexity);
    assert.equal(tokenAccuracy(model, { examples }, { seqLen: 32, tokens: tok }).total, completion);
    assert.throws(() => heldOutLossSync(model, { examples }), /tokens/);
    model.dispose();
  });

  it('normalizeAnswer folds case and whitespace', () => {
    assert.equal(normalizeAnswer('  Paris\n  IS\tnice '), 'paris is nice');
  });

  it('a tiny model memorising 3 Q/A pairs scores exact match 1 and 0 on wrong answers; samples are rows', async () => {
    const tok = Tokenizer.train(qa.map((p) => p.question + p.answer), { vocabSize: 300, minFrequency: 1 });
    const model = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 64 }, { seed: 1 });
    const { examples } = tokenizeRows(qa.map((p) => ({ prompt: p.question, completion: p.answer })), tok);
    const before = answerMetrics(model, tok, qa, { maxNewTokens: 8 });
    assert.equal(before.exactMatch, 0, 'an untrained model does not already answer');
    const data = new ExampleBatches(examples, tok, { ...batchDefaults, seqLen: 32, batchSize: 3 });
    const trainer = new Trainer(model, causalLmObjective, data, { lr: 1e-2, maxSteps: 120, warmupSteps: 5, schedule: 'constant' });
    await trainer.train();
    trainer.dispose();

    const right = answerMetrics(model, tok, qa, { maxNewTokens: 8 });
    assert.equal(right.exactMatch, 1, JSON.stringify(right.rows));
    assert.equal(right.containsAnswer, 1);
    assert.deepEqual(right.rows.map((r) => normalizeAnswer(r.prediction)), ['paris', 'blue', 'pacific']);

    const wrong = answerMetrics(model, tok, qa.map((p, i) => ({ question: p.question, answer: qa[(i + 1) % qa.length].answer })), { maxNewTokens: 8 });
    assert.equal(wrong.exactMatch, 0);
    assert.equal(wrong.containsAnswer, 0);

    // Contains-answer is looser than exact match: a prefix-only reference is contained but not exact.
    const partial = answerMetrics(model, tok, [{ question: qa[2].question, answer: 'PACI' }], { maxNewTokens: 8 });
    assert.deepEqual([partial.exactMatch, partial.containsAnswer], [0, 1]);

    const samples = generationSamples(model, tok, qa.map((p) => p.question), { maxNewTokens: 8 });
    assert.deepEqual(samples.map((s) => s.prompt), qa.map((p) => p.question));
    assert.deepEqual(samples.map((s) => s.completion), right.rows.map((r) => r.prediction));
    assert.deepEqual(samples.map((s) => s.tokens), qa.map((p) => tok.encode(p.answer).length));
    assert.deepEqual(generationSamples(model, tok, qa.map((p) => p.question), { maxNewTokens: 8 }), samples, 'repeatable');
    model.dispose();
  });

  it('chat-format Q/A: chatPrompt renders a user turn plus the assistant header; generation stops at <|im_end|>', async () => {
    assert.equal(chatPrompt()('Hi?'), '<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(chatPrompt(undefined, 'Be brief.')('Hi?'), '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n');
    const pairs = qa.map((p) => ({ question: p.question, answer: p.answer.trim() }));
    const rows = pairs.map((p) => ({ messages: [{ role: 'user' as const, content: p.question }, { role: 'assistant' as const, content: p.answer }] }));
    const tok = Tokenizer.train(pairs.map((p) => p.question + ' ' + p.answer), { vocabSize: 300, minFrequency: 1 });
    const model = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 64 }, { seed: 1 });
    const { examples } = tokenizeRows(rows, tok, { ...tokenizeDefaults, assistantOnlyLoss: true });
    const trainer = new Trainer(model, causalLmObjective, new ExampleBatches(examples, tok, { ...batchDefaults, seqLen: 48, batchSize: 3, appendEos: false }), { lr: 1e-2, maxSteps: 120, warmupSteps: 5, schedule: 'constant' });
    await trainer.train();
    trainer.dispose();
    const r = answerMetrics(model, tok, pairs, { format: chatPrompt(), maxNewTokens: 12 });
    assert.equal(r.exactMatch, 1, JSON.stringify(r.rows));
    // Generation stopped at <|im_end|>: only the answer's tokens were generated.
    const samples = generationSamples(model, tok, pairs.map((p) => p.question), { format: chatPrompt(), maxNewTokens: 12 });
    assert.deepEqual(samples.map((x) => x.tokens), pairs.map((p) => tok.encode(p.answer).length));
    // Without the chat format the same model is not asked the way it was trained.
    const plain = answerMetrics(model, tok, pairs, { maxNewTokens: 12 });
    assert.ok(plain.exactMatch < 1, JSON.stringify(plain.rows));
    model.dispose();
  });
});

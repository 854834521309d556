import { strict as assert } from 'assert';
import { largestDigitTask, verifiableTask } from '../../src/rlhf/tasks';

describe('rlhf/tasks: largest digit', () => {
  it('720 questions, disjoint seeded splits, correct answers, an exact-match reward', () => {
    const t = largestDigitTask();
    assert.equal(t.train.length + t.heldout.length, 720);
    assert.equal(t.heldout.length, 180);
    const trainQ = new Set(t.prompts('train'));
    assert.ok(t.prompts('heldout').every((q) => !trainQ.has(q)));
    assert.deepEqual(largestDigitTask().heldout, t.heldout);
    assert.notDeepEqual(largestDigitTask({ seed: 1 }).heldout, t.heldout);
    for (const r of [...t.train, ...t.heldout]) {
      const digits = r.question.match(/\d/g)!.map(Number);
      assert.equal(new Set(digits).size, 3);
      assert.equal(r.answer, String(Math.max(...digits)));
    }
    const q = t.train[0];
    assert.equal(t.reward(q.question, ` ${q.answer}`), 1);
    assert.equal(t.reward(q.question, `${q.answer} `), 1);
    assert.equal(t.reward(q.question, ` ${q.answer}0`), 0);
    assert.equal(t.reward(q.question, ''), 0);
    assert.equal(t.reward.name, 'exact_match');
    assert.deepEqual(t.sftRows('train')[0], { prompt: q.question, completion: ` ${q.answer}` });
    assert.throws(() => t.reward('Largest of 1, 2:', '2'), /no answer for prompt "Largest of 1, 2:"/);
    assert.throws(() => largestDigitTask({ count: 1 }), /count must be an integer in \[2, 10\] \(got 1\)/);
    assert.throws(() => largestDigitTask({ cuont: 3 } as never), /cuont/);
  });
});

describe('rlhf/tasks: verifiableTask', () => {
  it('refuses a question that appears twice, naming the split and row', () => {
    const q = { question: 'Capital of France?', answer: 'Paris' };
    assert.throws(() => verifiableTask('capitals', [q], [{ ...q, answer: 'paris' }]), /capitals: heldout row 0: question "Capital of France\?" appears twice/);
    const t = verifiableTask('capitals', [q], [{ question: 'Capital of Peru?', answer: 'Lima' }]);
    assert.equal(t.reward('Capital of Peru?', '  LIMA '), 1); // normalised: case and whitespace
    assert.deepEqual(t.prompts('heldout'), ['Capital of Peru?']);
  });
});

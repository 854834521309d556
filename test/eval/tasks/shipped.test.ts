import { strict as assert } from 'assert';
import { dataset } from '../../../src/lab/data';
import { domainCompletionTask, lastWordTask, realContinuationTask, sentences, shippedTasks } from '../../../src/eval/tasks/shipped';

describe('eval/tasks/shipped', () => {
  it('splits sentences after . ! ? (and a closing quote) before a capital, not after a title', () => {
    assert.deepEqual(sentences('He came. "Go!" she said. Then he went? Yes.'), ['He came.', '"Go!" she said.', 'Then he went?', 'Yes.']);
    assert.deepEqual(sentences('Mr. Speaker, thank you. Dr. King spoke.'), ['Mr. Speaker, thank you.', 'Dr. King spoke.']);
  });

  it('builds the same 200 documents for a seed, others for another seed', () => {
    const [a, b] = [shippedTasks(), shippedTasks()];
    for (let i = 0; i < 3; i++) {
      assert.equal(a[i].docs.length, 200, a[i].name);
      assert.deepEqual(a[i].rows(), b[i].rows());
    }
    assert.notDeepEqual(lastWordTask({ seed: 1, size: 20 }).rows(), lastWordTask({ seed: 2, size: 20 }).rows());
    assert.deepEqual(a.map((t) => [t.name, t.kind]), [['last_word', 'loglikelihood'], ['real_continuation', 'multiple_choice'], ['domain_completion', 'multiple_choice']]);
  });

  it('last word: held-out passages whose last word occurs earlier in them', () => {
    const held = dataset('general', 'heldout').join('\n');
    for (const d of lastWordTask({ size: 50 }).docs) {
      assert.ok(held.includes(`${d.context} ${d.word}`), `from the held-out text: ${d.context.slice(-40)} ${d.word}`);
      assert.match(d.word, /^[A-Za-z]{3,}$/);
      assert.ok(new RegExp(`\\b${d.word}\\b`, 'i').test(d.context));
      assert.ok(d.context.length + d.word.length < 400);
    }
  });

  it('real continuation and domain completion: the real ending follows the context in the held-out text; three distinct distractors', () => {
    const cases = [
      { t: realContinuationTask({ size: 50 }), held: dataset('general', 'heldout').join('\n'), sep: ' ', range: [0.67, 1.5] },
      { t: domainCompletionTask({ size: 50 }), held: dataset('domain', 'heldout').join('\n'), sep: ' ', range: [0.5, 2] },
    ];
    for (const { t, held, sep, range } of cases) {
      const labels = new Set<number>();
      for (const d of t.docs) {
        assert.equal(d.endings.length, 4);
        assert.equal(new Set(d.endings).size, 4, `${t.name}: distinct endings`);
        const real = d.endings[d.label];
        labels.add(d.label);
        assert.ok(held.includes(`${d.context}${sep}${real}`), `${t.name}: real ending follows its context: ${real}`);
        for (const e of d.endings) assert.ok(e.length >= range[0] * real.length && e.length <= range[1] * real.length, `${t.name}: similar length`);
      }
      assert.equal(labels.size, 4, `${t.name}: the gold position varies`);
    }
  });
});

import { strict as assert } from 'assert';
import * as aq from 'arquero';
import { taskFromTable } from '../../../src/eval/tasks/table';
import { task } from '../../../src/eval/tasks/task';

describe('eval/tasks/table', () => {
  it('reads prompt, choice columns and target from an arquero table', () => {
    const quiz = aq.table({ question: ['2 + 2 =', 'The sky is'], a: ['4', 'blue'], b: ['5', 'green'], answer: [0, 'green'] });
    const t = taskFromTable(quiz, { name: 'quiz', kind: 'multiple_choice', prompt: 'question', choices: ['a', 'b'], target: 'answer' });
    assert.equal(t.docs.length, 2);
    assert.equal(t.prompt(1), 'The sky is');
    assert.deepEqual(t.choices(0), ['4', '5']);
    assert.equal(t.gold(0), 0);
    assert.equal(t.gold(1), 1); // a target given as the choice's text
    assert.deepEqual(t.rows()[1], { doc: 1, prompt: 'The sky is', choices: 'blue | green', target: 'green' });
  });

  it('takes a column of choice arrays, functions of the row, and plain rows', () => {
    const rows = [{ ctx: 'Call me', endings: ['Ishmael', 'Ahab'], label: 0 }];
    const t = taskFromTable(rows, { name: 'moby', kind: 'multiple_choice', prompt: (r) => `${r.ctx}`, choices: 'endings', target: 'label' });
    assert.deepEqual(t.choices(0), ['Ishmael', 'Ahab']);
    const g = taskFromTable(aq.table({ q: ['Q: 1+1?\nA:'], a: ['2'] }), { name: 'gen', kind: 'generate_until', prompt: 'q', target: 'a', until: ['\n'] });
    assert.equal(g.text(0), '2');
    assert.deepEqual(g.until, ['\n']);
  });

  it('names the missing column, the bad cell (row and column) and an unknown option', () => {
    const quiz = aq.table({ question: ['x', 'y'], a: ['1', 2], b: ['3', '4'], answer: [0, 0] });
    assert.throws(() => taskFromTable(quiz, { name: 'q', kind: 'multiple_choice', prompt: 'prompt', choices: ['a', 'b'], target: 'answer' }),
      /taskFromTable "q": prompt column "prompt" is not in the table \(columns: question, a, b, answer\)/);
    const t = taskFromTable(quiz, { name: 'q', kind: 'multiple_choice', prompt: 'question', choices: ['a', 'b'], target: 'answer' });
    assert.throws(() => t.choices(1), /taskFromTable "q": row 1, column "a": a choice must be a string, got 2/);
    assert.throws(() => taskFromTable(quiz, { name: 'q', kind: 'multiple_choice', prompt: 'question', choice: ['a'], target: 'answer' } as never),
      /unknown option "choice"; did you mean "choices"\?/);
    const bad = taskFromTable(aq.table({ q: ['x'], c: [['a', 'b']], y: [5] }), { name: 'r', kind: 'multiple_choice', prompt: 'q', choices: 'c', target: 'y' });
    assert.throws(() => bad.gold(0), /task "r", document 0: target 5 is not one of its 2 choices/);
  });

  it('task() checks the spec and names the field', () => {
    const docs = [{ t: 'x' }];
    assert.throws(() => task({ name: 'a', kind: 'multiple_choice', docs, prompt: (d) => d.t, target: () => 0 }), /task "a": a multiple_choice task needs choices/);
    assert.throws(() => task({ name: 'a', kind: 'ranking' as never, docs, prompt: (d) => d.t, target: () => 0 }), /task "a": kind must be one of multiple_choice, loglikelihood, generate_until, loglikelihood_rolling/);
    assert.throws(() => task({ name: 'a', kind: 'loglikelihood', docs: [], prompt: (d) => d, target: () => 'x' }), /task "a": docs must be a non-empty array/);
    assert.throws(() => task({ name: 'a', kind: 'loglikelihood', docs, prompt: (d: { t: string }) => d.t, target: () => 'x', promt: 1 } as never), /task "a": unknown field "promt"/);
    const t = task({ name: 'a', kind: 'loglikelihood', docs, prompt: (d) => d.t, target: () => '' });
    assert.throws(() => t.text(0), /task "a", document 0: target must be a non-empty string for loglikelihood, got ""/);
    assert.equal(t.limit(5), t);
    assert.throws(() => t.limit(0), /limit must be a positive integer or null/);
    assert.throws(() => task({ name: 'a', kind: 'loglikelihood', docs, prompt: (d) => d.t, target: () => 'x', mutualInfo: true }), /task "a": mutualInfo is a boolean for multiple_choice tasks/);
  });
});

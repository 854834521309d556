import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadTable, toTable } from '../../src/data/load';
import { DatasetError, checkMessages, detectFormat, formatProblem, validateDataset } from '../../src/data/formats';
import type { DataRow } from '../../src/data/frames';

const user = (content: unknown) => ({ role: 'user', content });
const assistant = (content: unknown) => ({ role: 'assistant', content });

describe('data/formats', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-formats-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  // A JSONL file of `good` valid rows followed by `extra` lines; returns its path.
  const jsonl = (name: string, good: DataRow, count: number, extra: string[]) => {
    const file = path.join(dir, name);
    const lines = Array.from({ length: count }, () => JSON.stringify(good)).concat(extra);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
  };

  // The DatasetError message of validating `row` placed on line 3 of a file, after two good rows.
  const errorOf = (good: DataRow, bad: unknown, format: Parameters<typeof validateDataset>[1] = 'auto') => {
    const file = jsonl('x.jsonl', good, 2, [typeof bad === 'string' ? bad : JSON.stringify(bad)]);
    try {
      validateDataset(loadTable(file, { badRows: 'keep' }), format);
    } catch (e) {
      assert.ok(e instanceof DatasetError, String(e));
      return e.message.slice(file.length);
    }
    return 'no error';
  };

  describe('detectFormat', () => {
    it('recognises each format by its columns, ignoring provenance columns', () => {
      assert.equal(detectFormat(toTable([{ text: 'a', __row: 1 }])), 'text');
      assert.equal(detectFormat(toTable([{ prompt: 'a', completion: 'b' }])), 'prompt-completion');
      assert.equal(detectFormat(toTable([{ messages: [user('a')] }])), 'messages');
      assert.equal(detectFormat(toTable([{ prompt: 'a', chosen: 'b', rejected: 'c' }])), 'preference');
      assert.equal(detectFormat(toTable([{ chosen: 'b', rejected: 'c' }])), 'preference');
      assert.throws(() => detectFormat(toTable([{ question: 'a', __row: 1 }])), /from the columns \[question\]/);
    });
  });

  describe('validate: each problem names file, row and column', () => {
    it('reports an empty completion on its line: data/sft.jsonl: row 17, column "completion": empty string', () => {
      const file = jsonl('sft.jsonl', { prompt: 'Q', completion: ' A' }, 16, ['{"prompt": "Q", "completion": ""}']);
      assert.throws(() => validateDataset(loadTable(file), 'prompt-completion'), {
        name: 'DatasetError',
        message: `${file}: row 17, column "completion": empty string`,
      });
    });

    const pc = { prompt: 'Q', completion: 'A' };
    const pref = { prompt: 'Q', chosen: 'good', rejected: 'bad' };
    const chat = { messages: [user('hi'), assistant('hello')] };
    const cases: [string, DataRow, unknown, string][] = [
      ['bad JSON line', pc, '{"prompt": "Q", "completion": }', ': row 3: bad JSON: '],
      ['missing value', pc, { prompt: 'Q' }, ': row 3, column "completion": missing'],
      ['wrong type', pc, { prompt: 'Q', completion: 42 }, ': row 3, column "completion": expected a string, got number'],
      ['whitespace-only completion', pc, { prompt: 'Q', completion: '  ' }, ': row 3, column "completion": whitespace only'],
      ['prompt of the wrong type', pc, { prompt: 7, completion: 'A' }, ': row 3, column "prompt": expected a string, got number'],
      ['list in a standard dataset', pc, { prompt: 'Q', completion: [assistant('A')] }, ': row 3, column "completion": expected a string (the dataset is standard, not conversational), got a list of messages'],
      ['empty chosen', pref, { prompt: 'Q', chosen: '', rejected: 'bad' }, ': row 3, column "chosen": empty string'],
      ['empty rejected', pref, { prompt: 'Q', chosen: 'ok', rejected: '' }, ': row 3, column "rejected": empty string'],
      ['empty text', { text: 'abc' }, { text: '' }, ': row 3, column "text": empty string'],
      ['unknown role', chat, { messages: [user('hi'), { role: 'bot', content: 'x' }] }, ': row 3, column "messages": message 2: unknown role "bot" (expected system, user, assistant, tool)'],
      ['message without content', chat, { messages: [{ role: 'user' }, assistant('x')] }, ': row 3, column "messages": message 1: no content'],
      ['message without role', chat, { messages: [{ content: 'x' }] }, ': row 3, column "messages": message 1: no role'],
      ['message not an object', chat, { messages: ['hi'] }, ': row 3, column "messages": message 1: expected an object with role and content, got string'],
      ['messages not a list', chat, { messages: 'hi' }, ': row 3, column "messages": expected a list of messages, got string'],
      ['empty message list', chat, { messages: [] }, ': row 3, column "messages": empty list of messages'],
      ['no assistant message', chat, { messages: [user('hi')] }, ': row 3, column "messages": no assistant message (nothing to learn from)'],
      ['string in a conversational dataset', { prompt: [user('Q')], completion: [assistant('A')] }, { prompt: [user('Q')], completion: 'A' }, ': row 3, column "completion": expected a list of messages (the dataset is conversational), got a string'],
      ['empty conversational completion', { prompt: [user('Q')], completion: [assistant('A')] }, { prompt: [user('Q')], completion: [assistant(' ')] }, ': row 3, column "completion": message 1: empty content'],
      ['implicit prompt ending on a user turn', { chosen: [user('Q'), assistant('A')], rejected: [user('Q'), assistant('B')] }, { chosen: [user('Q'), assistant('A')], rejected: [user('Q')] }, ': row 3, column "rejected": message 1: the last message should be the assistant\'s, got "user"'],
    ];
    for (const [what, good, bad, expected] of cases) {
      it(what, () => {
        const message = errorOf(good, bad);
        if (expected.endsWith(': ')) assert.ok(message.startsWith(expected), message);
        else assert.equal(message, expected);
      });
    }

    it('accepts valid rows of every format, tool calls without content, and empty prompts', () => {
      const toolCall = { role: 'assistant', tool_calls: [{ type: 'function', function: { name: 'f', arguments: {} } }] };
      const good: [DataRow, string, boolean, boolean][] = [
        [{ text: 'The sky is blue.' }, 'text', false, false],
        [{ prompt: '', completion: ' blue.' }, 'prompt-completion', false, false],
        [{ prompt: [user('Sky?')], completion: [assistant('Blue.')] }, 'prompt-completion', true, false],
        [{ messages: [{ role: 'system', content: '' }, user('f?'), toolCall, { role: 'tool', content: '1' }, assistant('1')] }, 'messages', true, false],
        [{ prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }, 'preference', false, false],
        [{ chosen: 'The sky is blue.', rejected: 'The sky is green.' }, 'preference', false, true],
        [{ chosen: [user('Sky?'), assistant('Blue.')], rejected: [user('Sky?'), assistant('Green.')] }, 'preference', true, true],
      ];
      for (const [row, format, conversational, implicitPrompt] of good) {
        const result = validateDataset(toTable([row, row]));
        assert.deepEqual([result.format, result.conversational, result.implicitPrompt, result.problems, result.table.numRows()], [format, conversational, implicitPrompt, [], 2]);
      }
    });

    it('throws for a column missing from the whole table, even with skipBad', () => {
      const table = toTable([{ prompt: 'Q', answer: 'A' }]);
      assert.throws(() => validateDataset(table, 'prompt-completion', { source: 'qa.csv', skipBad: true }), {
        message: `qa.csv: column "completion": missing from the table (columns: prompt, answer); name your columns with an option, e.g. Corpus.load(file, { completion: 'answer' })`,
      });
    });

    it('uses source and the 1-based table position for tables without provenance', () => {
      const table = toTable([{ text: 'ok' }, { text: 'ok' }, { text: 3 }]);
      assert.throws(() => validateDataset(table, 'text', { source: 'mem' }), { message: 'mem: row 3, column "text": expected a string, got number' });
      assert.throws(() => validateDataset(table, 'text'), { message: '<table>: row 3, column "text": expected a string, got number' });
    });

    it('accepts extra roles when asked', () => {
      const table = toTable([{ messages: [{ role: 'narrator', content: 'x' }, assistant('y')] }]);
      assert.throws(() => validateDataset(table), /unknown role "narrator"/);
      assert.equal(validateDataset(table, 'messages', { roles: ['narrator', 'assistant'] }).problems.length, 0);
    });
  });

  describe('skipBad', () => {
    it('drops bad rows and lists each with file, row, column and problem', () => {
      const file = jsonl('mix.jsonl', { prompt: 'Q', completion: 'A' }, 3, [
        '{"prompt": "Q", "completion": ""}', // line 4
        'not json', // line 5
        '', // line 6: blank, skipped
        '{"prompt": "Q2", "completion": "A2"}', // line 7
        '{"prompt": ["x"], "completion": "A"}', // line 8
      ]);
      const before = fs.readFileSync(file, 'utf8');
      const { table, problems } = validateDataset(loadTable(file, { badRows: 'keep' }), 'auto', { skipBad: true });
      assert.deepEqual(table.array('__row'), [1, 2, 3, 7]);
      assert.deepEqual(table.array('prompt'), ['Q', 'Q', 'Q', 'Q2']);
      assert.equal(problems.length, 3);
      assert.deepEqual(problems[0], { file, row: 4, column: 'completion', problem: 'empty string' });
      assert.deepEqual([problems[1].row, problems[1].column], [5, undefined]);
      assert.match(problems[1].problem, /^bad JSON: /);
      assert.deepEqual(problems[2], { file, row: 8, column: 'prompt', problem: 'expected a string (the dataset is standard, not conversational), got a list of messages' });
      assert.equal(formatProblem(problems[0]), `${file}: row 4, column "completion": empty string`);
      assert.equal(fs.readFileSync(file, 'utf8'), before);
    });

    it('returns the very same table when nothing is wrong', () => {
      const table = toTable([{ text: 'a' }]);
      assert.equal(validateDataset(table, 'text', { skipBad: true }).table, table);
    });
  });

  it('checkMessages on its own', () => {
    assert.equal(checkMessages([user('a'), assistant('b')]), undefined);
    assert.equal(checkMessages([{ role: 'user', content: 5 }]), 'message 1: content must be a string, got number');
    assert.equal(checkMessages([{ role: 1, content: 'x' }]), 'message 1: role must be a string, got number');
  });
});

import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspect } from 'util';
import * as aq from 'arquero';
import { Corpus } from '../../src/data/corpus';
import { loadTable, mapColumns, toTable } from '../../src/data/load';
import { DatasetError, validateDataset } from '../../src/data/formats';
import { suggestMapping } from '../../src/data/columns';
import { invalidUtf8Offset } from '../../src/data/text';
import { mimeBundleKey } from '../../src/viz/display';
import { aq as reexported } from '../../src/index';

describe('data/columns: your own column names, encodings, Arrow', () => {
  let dir: string;
  const write = (name: string, data: string | Uint8Array) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, data);
    return file;
  };
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-columns-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('maps a column onto a format field in CSV, JSONL, JSON, Arrow, tables, rows and DataFrames', () => {
    const rows = [{ id: '1', question: 'Q1', answer: 'A1' }, { id: '2', question: 'Q2', answer: 'A2' }];
    const qa = { prompt: 'question', completion: 'answer' } as const;
    const expected = [{ id: '1', prompt: 'Q1', completion: 'A1' }, { id: '2', prompt: 'Q2', completion: 'A2' }];
    const files = [
      write('qa.csv', 'id,question,answer\n1,Q1,A1\n2,Q2,A2\n'),
      write('qa.jsonl', rows.map((r) => JSON.stringify(r)).join('\n')),
      write('qa.json', JSON.stringify(rows)),
      write('qa.arrow', aq.toArrowIPC(aq.from(rows))),
    ];
    for (const file of files) {
      const c = Corpus.load(file, qa);
      assert.deepEqual(c.rows(), expected, file);
      assert.deepEqual(c.rows({ provenance: true }).map((r) => r.__row), file.endsWith('.csv') ? [2, 3] : [1, 2], file);
      assert.equal(validateDataset(c.table).format, 'prompt-completion');
    }
    assert.deepEqual(Corpus.from(aq.from(rows), qa).rows(), expected);
    assert.deepEqual(Corpus.from(rows, qa).rows(), expected);
    assert.deepEqual(Corpus.from(Corpus.from(rows), qa).rows(), expected);
    // A danfo DataFrame as tunelab sees one (columns, shape, column(name).values).
    const df = { columns: ['id', 'question', 'answer'], shape: [2, 3], column: (n: string) => ({ values: rows.map((r) => r[n as keyof typeof r]) }) };
    assert.deepEqual(Corpus.from(df, qa).rows(), expected);
    // Message lists under another name, decoded from CSV JSON cells.
    const conv = JSON.stringify([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }]);
    const chat = Corpus.load(write('chat.csv', `conversation\n"${conv.replace(/"/g, '""')}"\n`), { messages: 'conversation' });
    assert.deepEqual(chat.rows(), [{ messages: JSON.parse(conv) }]);
    // Arrow keeps message lists as lists.
    const arrowChat = Corpus.load(write('chat.arrow', aq.toArrowIPC(aq.table({ turns: [JSON.parse(conv)] }))), { messages: 'turns' });
    assert.deepEqual(JSON.parse(JSON.stringify(arrowChat.rows())), [{ messages: JSON.parse(conv) }]);
  });

  it('without the option the error names the columns and the option that fixes it', () => {
    const file = write('notes.csv', 'id,body\n1,hello\n');
    assert.throws(() => Corpus.load(file), {
      message: `${file}: cannot detect the dataset format from the columns [id, body]: expected text, messages, prompt + completion, ` +
        "or (prompt +) chosen + rejected; name your columns with an option, e.g. Corpus.load(file, { text: 'body' })",
    });
    assert.throws(() => Corpus.load(write('qa.jsonl', '{"question": "q", "answer": "a"}\n')), /e\.g\. Corpus\.load\(file, \{ prompt: 'question', completion: 'answer' \}\)/);
    assert.throws(() => Corpus.load(write('p.jsonl', '{"q": "q", "good": "a", "bad": "b"}\n'), { validate: 'preference' }), /Corpus\.load\(file, \{ chosen: 'good', rejected: 'bad' \}\)/);
    assert.equal(suggestMapping(['dialogue']), "{ messages: 'dialogue' }");
    assert.equal(suggestMapping(['x', 'y'], ['prompt', 'completion']), "{ prompt: 'x', completion: 'y' }");
  });

  it('a wrong mapping names the file, the column and the columns there are', () => {
    const file = write('notes.csv', 'id,body,text\n1,a,b\n');
    assert.throws(() => loadTable(file, { text: 'bdy' }), (e: unknown) => e instanceof DatasetError && e.column === 'bdy' &&
      e.message === `${file}: column "bdy": not found for option { text: 'bdy' } (columns: id, body, text)`);
    assert.throws(() => loadTable(file, { text: 'body' }), /column "text": already exists, so \{ text: 'body' \} would replace it/);
    assert.throws(() => loadTable(file, { prompt: 'body', completion: 'body' }), /column "body": mapped twice/);
    assert.throws(() => loadTable(file, { text: 3 as unknown as string }), /option text: expected a column name, got 3/);
    // Swapping two format columns is fine.
    assert.deepEqual(mapColumns(aq.table({ chosen: ['x'], rejected: ['y'] }), { chosen: 'rejected', rejected: 'chosen' }).objects(), [{ rejected: 'x', chosen: 'y' }]);
    assert.deepEqual(toTable([{ prompt: 'p', completion: 'c' }], { prompt: 'completion', completion: 'prompt' }).objects(), [{ prompt: 'c', completion: 'p' }]);
  });

  it('every text loader refuses non-UTF-8 bytes, naming the file, line and byte offset', () => {
    const latin1 = (s: string) => Buffer.from(s, 'latin1');
    const jsonl = write('x.jsonl', Buffer.concat([Buffer.from('{"text": "ok"}\n'), latin1('{"text": "Café naïve"}\n')]));
    assert.throws(() => Corpus.load(jsonl), { message: `${jsonl}: line 2: not valid UTF-8 at byte offset 28 (0xE9); the file looks like another encoding (Latin-1, Windows-1252?): save it as UTF-8, e.g. \`iconv -f latin1 -t utf-8 in > out\`` });
    const csv = write('x.csv', latin1('text\nok\nCafé\n'));
    assert.throws(() => loadTable(csv), new RegExp(`^Error: ${csv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: line 3: not valid UTF-8 at byte offset 11 \\(0xE9\\)`));
    assert.throws(() => loadTable(write('x.json', latin1('[{"text": "é"}]'))), /x\.json: line 1: not valid UTF-8 at byte offset 11/);
    assert.throws(() => loadTable(write('x.txt', latin1('a\nb\né'))), /x\.txt: line 3: not valid UTF-8 at byte offset 4/);
    assert.equal(loadTable(write('ok.csv', 'text\nCafé naïve 🎉\n')).array('text')[0], 'Café naïve 🎉');
  });

  it('a UTF-8 byte-order mark is not read as text (text files, CSV header)', () => {
    assert.equal(loadTable(write('bom.txt', '\uFEFFhello')).array('text')[0], 'hello');
    assert.deepEqual(loadTable(write('bom.csv', '\uFEFFtext\nhi\n'), { provenance: false }).objects(), [{ text: 'hi' }]);
  });

  it('invalidUtf8Offset agrees with a strict TextDecoder on well-formed, overlong, surrogate and cut sequences', () => {
    const cases: [number[], number][] = [
      [[0x61, 0xc3, 0xa9], -1], [[0xf0, 0x9f, 0x8e, 0x89], -1], [[0xef, 0xbb, 0xbf, 0x61], -1],
      [[0x61, 0xc0, 0xaf], 1], [[0xe0, 0x80, 0xaf], 0], [[0xed, 0xa0, 0x80], 0], [[0xf4, 0x90, 0x80, 0x80], 0],
      [[0x61, 0x62, 0xe2, 0x82], 2], [[0x80], 0], [[0xc3, 0x28], 0], [[0xff], 0],
    ];
    for (const [bytes, offset] of cases) {
      const b = Uint8Array.from(bytes);
      assert.equal(invalidUtf8Offset(b), offset, bytes.join(','));
      let strictOk = true;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(b);
      } catch {
        strictOk = false;
      }
      assert.equal(strictOk, offset < 0, bytes.join(','));
    }
  });

  it('an all-bad JSONL names the file, says every row was bad and gives the first problem', () => {
    const file = write('bad.jsonl', '{oops\n\n[1, 2]\n');
    for (const skipBad of [true, false]) {
      assert.throws(() => Corpus.load(file, { skipBad }), (e: unknown) => e instanceof DatasetError &&
        e.message.startsWith(`${file}: every row is unreadable (2 of 2); the first, row 1: bad JSON: `));
    }
  });

  it('Arrow IPC loads through arquero; Parquet gets a clear route; a bad Arrow file is named', () => {
    const file = write('d.arrow', aq.toArrowIPC(aq.table({ text: ['a', 'b'], n: [1, 2] })));
    assert.deepEqual(loadTable(file).objects(), [{ text: 'a', n: 1, __file: file, __row: 1 }, { text: 'b', n: 2, __file: file, __row: 2 }]);
    assert.deepEqual(loadTable(file, { provenance: false }).columnNames(), ['text', 'n']);
    assert.throws(() => loadTable(write('bad.feather', 'not arrow at all')), /bad\.feather: not a readable Arrow IPC file/);
    assert.throws(() => loadTable(write('d.parquet', 'PAR1')), /d\.parquet: Parquet is not read here .* convert it to Arrow IPC/);
  });

  it('misspelt option names of the data verbs are errors with the nearest valid name', () => {
    const file = write('notes.csv', 'id,body\n1,a\n');
    assert.throws(() => Corpus.load(file, { txt: 'body' } as object), { message: 'Corpus.load: unknown option "txt"; did you mean "text"?' });
    assert.throws(() => Corpus.load(file, { text: 'body', skip_bad: true } as object), /Corpus\.load: unknown option "skip_bad"; did you mean "skipBad"\?/);
    assert.throws(() => loadTable(file, { seperator: '\n' } as object), /loadTable: unknown option "seperator"; did you mean "separator"\?/);
    assert.throws(() => Corpus.from([{ body: 'a' }], { txet: 'body' } as object), /Corpus\.from: unknown option "txet"; did you mean "text"\?/);
    const c = Corpus.load(file, { text: 'body', skipBad: true, roles: ['user', 'assistant'], name: 'n', validate: 'text', provenance: true });
    assert.throws(() => c.nearDedupe('text', { treshold: 0.5 } as object), /nearDedupe: unknown option "treshold"; did you mean "threshold"\?/);
    assert.throws(() => c.dedupe('text', { ignore_case: true } as object), /dedupe: unknown option "ignore_case"; did you mean "ignoreCase"\?/);
    assert.throws(() => c.validate('text', { skipbad: true } as object), /validate: unknown option "skipbad"; did you mean "skipBad"\?/);
    assert.throws(() => Corpus.mix([{ data: c, weight: 1 }], { sed: 1 } as object), /mix: unknown option "sed"; did you mean "seed"\?/);
  });

  it('a corpus prints a summary and shows an HTML preview in notebooks; arquero is re-exported', () => {
    const c = Corpus.load(write('notes.csv', 'id,body\n1,<b>first</b>\n2,second\n2,second\n'), { text: 'body' }).dedupe('text');
    const text = inspect(c);
    assert.equal(text.split('\n')[0], 'Corpus "notes": 2 rows, format text, columns: id, text');
    assert.match(text, /^dedupe\s+1\s+2\s+exact duplicates of "text"/m);
    const bundle = c[mimeBundleKey]();
    assert.equal(bundle['text/plain'], text);
    assert.match(bundle['text/html'], /Corpus &quot;notes&quot;: 2 rows, format text/);
    assert.match(bundle['text/html'], /&lt;b&gt;first&lt;\/b&gt;/);
    assert.doesNotMatch(bundle['text/html'], /__row/);
    assert.equal(inspect(Corpus.from([{ q: 1 }])).split('\n')[0], 'Corpus: 1 row, no dataset format, columns: q');
    assert.equal(reexported.table, aq.table);
    assert.equal(c.table.numRows(), 2);
  });
});

import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as aq from 'arquero';
import { loadTable, parseDataset, toTable, formatFromExtension } from '../../src/data/load';
import { DatasetError } from '../../src/data/formats';
import type { DataRow } from '../../src/data/frames';

describe('data/load', () => {
  let dir: string;
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-load-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('CSV and TSV', () => {
    it('reads quoted commas, newlines and doubled quotes; __row is the line the record starts on', () => {
      const file = write(
        'qa.csv',
        '\uFEFFprompt,completion\r\n' + // line 1 (BOM, CRLF)
          '"Hello, world","two\nlines"\r\n' + // lines 2–3
          '\r\n' + // line 4: blank, skipped
          '"say ""hi""",007\n' + // line 5: "007" stays text
          'plain,"a,b"\n', // line 6
      );
      const t = loadTable(file);
      assert.deepEqual(t.columnNames(), ['prompt', 'completion', '__file', '__row']);
      assert.deepEqual(t.array('prompt'), ['Hello, world', 'say "hi"', 'plain']);
      assert.deepEqual(t.array('completion'), ['two\nlines', '007', 'a,b']);
      assert.deepEqual(t.array('__row'), [2, 5, 6]);
      assert.deepEqual(t.array('__file'), [file, file, file]);
    });

    it('reads TSV with the same quoting and decodes a JSON messages column, but not lists of numbers', () => {
      const msgs = JSON.stringify([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }]);
      const quoted = `"${msgs.replace(/"/g, '""')}"`;
      const file = write('chat.tsv', `messages\tanswer\tnote\n${quoted}\t[1, 2]\t"tab\there"\n${quoted}\t[3]\tx\n`);
      const t = loadTable(file);
      assert.deepEqual(t.array('messages')[0], JSON.parse(msgs));
      assert.deepEqual(t.array('answer'), ['[1, 2]', '[3]']);
      assert.deepEqual(t.array('note'), ['tab\there', 'x']);
      const raw = loadTable(file, { json: false });
      assert.equal(raw.array('messages')[0], msgs);
    });

    it('names file and row for a record with too many fields, or keeps it marked with badRows: "keep"', () => {
      const file = write('bad.csv', 'text\nok\n"a",b\nfine\n');
      assert.throws(() => loadTable(file), (e: unknown) => e instanceof DatasetError && e.message === `${file}: row 3: 2 fields but the header has 1`);
      const t = loadTable(file, { badRows: 'keep' });
      assert.deepEqual(t.array('__error'), [undefined, '2 fields but the header has 1', undefined]);
      assert.deepEqual(t.array('text'), ['ok', undefined, 'fine']);
    });

    it('reports an unterminated quote at the line where its record starts', () => {
      const file = write('open.csv', 'text\nok\n"never closed\nmore\n');
      assert.throws(() => loadTable(file), { message: `${file}: row 3: unterminated quoted field 1` });
    });

    it('leaves missing trailing fields undefined and can omit provenance', () => {
      const t = loadTable(write('short.csv', 'a,b\n1\n'), { provenance: false });
      assert.deepEqual(t.columnNames(), ['a', 'b']);
      assert.deepEqual(t.objects(), [{ a: '1', b: undefined }]);
    });
  });

  describe('JSON and JSONL', () => {
    it('reads a JSON array of objects; __row is the position in the array', () => {
      const t = loadTable(write('a.json', JSON.stringify([{ text: 'a' }, { text: 'b', n: 2 }])));
      assert.deepEqual(t.array('text'), ['a', 'b']);
      assert.deepEqual(t.array('n'), [undefined, 2]);
      assert.deepEqual(t.array('__row'), [1, 2]);
    });

    it('reads a JSON object of columns and rejects unequal lengths', () => {
      const t = loadTable(write('cols.json', JSON.stringify({ prompt: ['p1', 'p2'], completion: ['c1', 'c2'] })));
      assert.deepEqual((t.objects() as DataRow[]).map((r) => [r.prompt, r.completion]), [
        ['p1', 'c1'],
        ['p2', 'c2'],
      ]);
      const bad = write('uneven.json', JSON.stringify({ prompt: ['p1', 'p2'], completion: ['c1'] }));
      assert.throws(() => loadTable(bad), { message: `${bad}: column "completion" has 1 values but "prompt" has 2` });
    });

    it('names the file for malformed JSON and the row for a non-object item', () => {
      const broken = write('broken.json', '[{"text": "a"},');
      assert.throws(() => loadTable(broken), (e: unknown) => e instanceof Error && e.message.startsWith(`${broken}: bad JSON: `));
      const mixed = write('mixed.json', '[{"text": "a"}, 3]');
      assert.throws(() => loadTable(mixed), { message: `${mixed}: row 2: expected a JSON object, got number` });
    });

    it('reads JSONL, skipping blank lines but counting them', () => {
      const file = write('d.jsonl', '{"text": "a"}\n\n{"text": "b"}\r\n{"text": "c", "tag": 1}\n');
      const t = loadTable(file);
      assert.deepEqual(t.array('text'), ['a', 'b', 'c']);
      assert.deepEqual(t.array('__row'), [1, 3, 4]);
      assert.deepEqual(t.array('tag'), [undefined, undefined, 1]);
    });

    it('throws on a bad JSONL line with its line number, or keeps it marked', () => {
      const file = write('bad.jsonl', '{"text": "a"}\n{"text": "b"}\n{"text": oops}\n["not", "object"]\n');
      assert.throws(
        () => loadTable(file),
        (e: unknown) => e instanceof DatasetError && e.row === 3 && e.file === file && e.message.startsWith(`${file}: row 3: bad JSON: `),
      );
      const t = loadTable(file, { badRows: 'keep' });
      assert.equal(t.numRows(), 4);
      const errors = t.array('__error');
      assert.equal(errors[0], undefined);
      assert.match(String(errors[2]), /^bad JSON: /);
      assert.equal(errors[3], 'expected a JSON object, got array');
    });

    it('parses text in memory with a given file name', () => {
      const t = parseDataset('{"text": "x"}\n', 'jsonl', { file: 'inline.jsonl' });
      assert.deepEqual(t.objects(), [{ text: 'x', __file: 'inline.jsonl', __row: 1 }]);
    });
  });

  describe('text files', () => {
    it('reads a folder: one document per .txt/.md file, recursively and sorted by path', () => {
      write('docs/b.txt', 'second');
      write('docs/a.txt', 'first');
      write('docs/sub/c.md', '# third');
      write('docs/skip.csv', 'x\n1\n');
      const t = loadTable(path.join(dir, 'docs'));
      assert.deepEqual(t.array('text'), ['first', 'second', '# third']);
      assert.deepEqual(t.array('__file'), ['a.txt', 'b.txt', 'sub/c.md'].map((f) => path.join(dir, 'docs', f)));
      assert.deepEqual(t.array('__row'), [1, 1, 1]);
    });

    it('splits on a separator: chunks trimmed, empty ones dropped, __row is the chunk’s first line', () => {
      const file = write('book.txt', 'Chapter 1\nCall me.\n\n===\n\nChapter 2\nThe sea.\n===\n===\n  Chapter 3\n');
      const t = loadTable(file, { separator: '===' });
      assert.deepEqual(t.array('text'), ['Chapter 1\nCall me.', 'Chapter 2\nThe sea.', 'Chapter 3']);
      assert.deepEqual(t.array('__row'), [1, 6, 10]);
      const byRegex = loadTable(file, { separator: /\n\s*\n/ });
      assert.deepEqual(byRegex.array('text'), ['Chapter 1\nCall me.', '===', 'Chapter 2\nThe sea.\n===\n===\n  Chapter 3']);
      assert.deepEqual(byRegex.array('__row'), [1, 4, 6]);
    });
  });

  it('never writes to the files it reads', () => {
    const file = write('keep.jsonl', '{"text": "a"}\n{"text": oops}\n');
    const before = fs.statSync(file).mtimeMs;
    loadTable(file, { badRows: 'keep' });
    assert.throws(() => loadTable(file));
    assert.equal(fs.readFileSync(file, 'utf8'), '{"text": "a"}\n{"text": oops}\n');
    assert.equal(fs.statSync(file).mtimeMs, before);
  });

  it('tells formats by extension and refuses unknown ones and missing paths', () => {
    assert.equal(formatFromExtension('x.NDJSON'), 'jsonl');
    assert.equal(formatFromExtension('x.tsv'), 'tsv');
    assert.throws(() => loadTable(write('x.xlsx', '')), /cannot tell the format from the extension "\.xlsx"/);
    assert.throws(() => loadTable(write('x.parquet', '')), /x\.parquet: Parquet is not read here .*convert it to Arrow IPC/);
    assert.throws(() => loadTable(path.join(dir, 'nope.csv')), { message: `${path.join(dir, 'nope.csv')}: no such file or folder` });
    const csvAsText = write('notes.data', 'a,b');
    assert.deepEqual(loadTable(csvAsText, { format: 'csv' }).columnNames(), ['a', 'b', '__file', '__row']);
  });

  it('toTable takes tables as they are, rows and column objects', () => {
    const t = aq.table({ text: ['a'] });
    assert.equal(toTable(t), t);
    assert.deepEqual(toTable([{ a: 1 }, { b: 2 }]).objects(), [
      { a: 1, b: undefined },
      { a: undefined, b: 2 },
    ]);
    assert.deepEqual(toTable({ x: [1, 2] }).array('x'), [1, 2]);
    assert.throws(() => toTable({ x: [1, 2], y: [1] }), /column "y" has 1 values but "x" has 2/);
    assert.throws(() => toTable([1] as unknown as []), /item 1 is not an object/);
  });
});

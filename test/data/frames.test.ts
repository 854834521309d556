import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as path from 'path';
import * as aq from 'arquero';
import { dataColumns, decodeJsonColumns, isArqueroTable, isDataFrame, takeRows } from '../../src/data/frames';

const root = path.resolve(__dirname, '../..');

const rows = [
  { prompt: [{ role: 'user', content: 'Sky?' }], completion: [{ role: 'assistant', content: 'Blue.' }], n: 1, note: 'x' },
  { prompt: [{ role: 'user', content: 'Sea?' }], completion: [{ role: 'assistant', content: 'Wet.' }], n: 2, note: '[1, 2]' },
];

// Runs against the real danfojs (browser build; its DataFrame API equals danfojs-node's) in a child process:
// danfo loads its own tfjs 3.21, which would re-register its cpu kernels into the global registry that
// @tensorflow/tfjs 4.22 shares, changing what the other suites in this mocha process test.
const danfoScript = `
const dfd = require('danfojs');
const aq = require('arquero');
const { toTable } = require(${JSON.stringify(`${root}/src/data/load`)});
const F = require(${JSON.stringify(`${root}/src/data/frames`)});
const { Corpus } = require(${JSON.stringify(`${root}/src/data/corpus`)});
const rows = ${JSON.stringify(rows)};
const out = {};
const df = F.toDataFrame(toTable(rows), dfd);
out.ctor = df.constructor.name;
out.isDataFrame = F.isDataFrame(df);
out.isTable = F.isArqueroTable(df);
out.columns = df.columns;
out.shape = df.shape;
out.promptCell = df.column('prompt').values[0];
out.back = toTable(df).objects();
out.noJson = typeof F.fromDataFrame(df, { json: false }).array('prompt')[0];
const some = F.fromDataFrame(df, { json: ['completion'] });
out.someJson = [typeof some.array('prompt')[0], some.array('completion')[1]];
const c = Corpus.from(new dfd.DataFrame({ text: ['a', 'b', 'a'], score: [1, 2, 3] })).dedupe('text');
out.corpusRows = c.rows();
const cdf = c.toDataFrame(dfd);
out.corpusShape = cdf.shape;
out.corpusScores = Array.from(cdf.column('score').values);
const prov = aq.table({ text: ['a'], __file: ['f.jsonl'], __row: [3] });
out.provDefault = F.toDataFrame(prov, dfd).columns;
out.provKept = F.toDataFrame(prov, dfd, { provenance: true }).columns;
try { F.toDataFrame(aq.table({ text: [] }), dfd); out.empty = 'no error'; } catch (e) { out.empty = e.message; }
process.stdout.write('\\n@@RESULT@@' + JSON.stringify(out));
`;

interface DanfoResults {
  ctor: string;
  isDataFrame: boolean;
  isTable: boolean;
  columns: string[];
  shape: number[];
  promptCell: string;
  back: unknown[];
  noJson: string;
  someJson: [string, unknown];
  corpusRows: unknown[];
  corpusShape: number[];
  corpusScores: number[];
  provDefault: string[];
  provKept: string[];
  empty: string;
}

describe('data/frames', () => {
  describe('danfo round trip with real danfojs (child process)', () => {
    let r: DanfoResults;
    before(() => {
      const stdout = execFileSync(process.execPath, ['-r', 'tsx/cjs', '-e', danfoScript], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      r = JSON.parse(stdout.slice(stdout.indexOf('@@RESULT@@') + '@@RESULT@@'.length)) as DanfoResults;
    });

    it('builds a real danfo DataFrame that is recognised by its shape', () => {
      assert.deepEqual([r.ctor, r.isDataFrame, r.isTable], ['DataFrame', true, false]);
      assert.deepEqual(r.columns, ['prompt', 'completion', 'n', 'note']);
      assert.deepEqual(r.shape, [2, 4]);
    });

    it('stores message lists as JSON text (danfo has no object dtype) and decodes them back: table → DataFrame → table', () => {
      assert.equal(r.promptCell, JSON.stringify(rows[0].prompt));
      assert.deepEqual(r.back, rows);
    });

    it('decodes only the JSON columns it is told to, or none', () => {
      assert.equal(r.noJson, 'string');
      assert.deepEqual(r.someJson, ['string', rows[1].completion]);
    });

    it('a DataFrame goes straight into a corpus and back out', () => {
      assert.deepEqual(r.corpusRows, [
        { text: 'a', score: 1 },
        { text: 'b', score: 2 },
      ]);
      assert.deepEqual(r.corpusShape, [2, 2]);
      assert.deepEqual(r.corpusScores, [1, 2]);
    });

    it('drops provenance columns unless asked, and refuses an empty table', () => {
      assert.deepEqual(r.provDefault, ['text']);
      assert.deepEqual(r.provKept, ['text', '__file', '__row']);
      assert.match(r.empty, /no rows/);
    });
  });

  it('isDataFrame and isArqueroTable tell tables from look-alikes', () => {
    const t = aq.table({ text: ['a'] });
    assert.deepEqual([isDataFrame(t), isArqueroTable(t)], [false, true]);
    assert.equal(isDataFrame({ columns: ['a'] }), false);
    assert.equal(isArqueroTable({ numRows: 1 }), false);
  });

  it('decodeJsonColumns: auto decodes objects and lists of objects only', () => {
    const cols = decodeJsonColumns({ m: ['[{"role":"user","content":"x"}]', ''], nums: ['[1, 2]', '[3]'], t: ['{oops', 'a'] }, 'auto');
    assert.deepEqual(cols.m, [[{ role: 'user', content: 'x' }], undefined]);
    assert.deepEqual(cols.nums, ['[1, 2]', '[3]']);
    assert.deepEqual(cols.t, ['{oops', 'a']);
    assert.deepEqual(decodeJsonColumns({ nums: ['[1, 2]'] }, ['nums']).nums, [[1, 2]]);
  });

  it('takeRows picks rows in the given order and dataColumns hides provenance', () => {
    const t = aq.table({ a: [1, 2, 3], __row: [10, 11, 12] });
    assert.deepEqual(takeRows(t, [2, 0, 2]).array('__row'), [12, 10, 12]);
    assert.deepEqual(dataColumns(t), ['a']);
  });
});

import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspect } from 'util';
import { lab } from '../../src/lab/lab';
import { dataset, toDocuments, toPreferenceOrSftRows, toPreferenceRows, toPrompts, toSftRows } from '../../src/lab/data';
import { Corpus } from '../../src/data/corpus';
import { mimeBundleKey } from '../../src/viz/display';
import { engineReady } from '../helpers';

// Issue 20 §2: your own data in one line.
describe('lab: your own data', function () {
  this.timeout(300000);
  let dir: string;
  before(engineReady);
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-data-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

  it('a CSV with a "body" column trains in one line, exactly as its documents do', async () => {
    const docs = dataset('domain').slice(0, 6);
    const csv = path.join(dir, 'notes.csv');
    fs.writeFileSync(csv, ['id,body', ...docs.map((d, i) => `${i + 1},${quote(d)}`)].join('\n') + '\n');

    const run = await lab.base('tiny-llama').data(Corpus.load(csv, { text: 'body' })).log(path.join(dir, 'runs')).show(false).pretrain({ maxSteps: 2 });

    const same = await lab.base('tiny-llama').data(docs).log(path.join(dir, 'runs2')).show(false).pretrain({ maxSteps: 2 });
    assert.equal(run.result.history.length, 2);
    assert.ok(run.result.history.every((h) => Number.isFinite(h.loss)));
    assert.deepEqual(run.result.history.map((h) => h.loss), same.result.history.map((h) => h.loss));

    // Printed, the run, its model and tokenizer are short summaries.
    assert.match(inspect(run), /^Run "[^"]+"\n {2}method\s+continued-pretraining \(full\) on tiny-llama\n {2}trained\s+2 steps, /);
    assert.match(inspect(run.model), /^CausalLM \(llama\)\n {2}parameters\s+[\d,]+, trainable [\d,]+\n {2}layers\s+\d+ × \(d_model \d+/);
    assert.match(inspect(run.tokenizer), /^Tokenizer \(byte-level BPE\)\n {2}source\s+.*\n {2}vocabulary\s+[\d,]+\n {2}special tokens\s+<\|endoftext\|> \(\d+\)/);
    assert.match(run[mimeBundleKey]()['text/html'], /<table>.*continued-pretraining/);
  });

  it('data in memory with other column names: the error shows the Corpus.from option that maps them', () => {
    assert.throws(() => toDocuments([{ id: 1, body: 'x' }], 'notes'), { message: `notes: row 0 has no string "text" column (keys: id, body); continued pretraining needs documents; name your columns with an option, e.g. Corpus.from(data, { text: 'body' })` });
    assert.throws(() => toSftRows([{ question: 'q', answer: 'a' }], 'qa'), /qa: row 0: .*e\.g\. Corpus\.from\(data, \{ prompt: 'question', completion: 'answer' \}\)$/);
    assert.throws(() => toPreferenceRows([{ q: 'q', good: 'a', bad: 'b' }], 'prefs'), /Corpus\.from\(data, \{ chosen: 'good', rejected: 'bad' \}\)$/);
    assert.throws(() => toPrompts([{ question: 'q' }], 'prompts'), /Corpus\.from\(data, \{ prompt: 'question' \}\)$/);
    assert.deepEqual(toDocuments(Corpus.from([{ id: 1, body: 'x' }], { text: 'body' })), ['x']);
  });

  it('an unknown option name fails the verb, naming it and the nearest valid one', async () => {
    const docs = dataset('domain').slice(0, 4);
    const stage = () => lab.base('tiny-llama').data(docs).log(dir).show(false);
    await assert.rejects(stage().pretrain({ maxStep: 2 } as object), { message: 'pretrain: unknown option "maxStep"; did you mean "maxSteps"?' });
    await assert.rejects(stage().lora({ rank: 4 } as object).pretrain({ maxSteps: 1 }), { message: 'lora: unknown option "rank"; did you mean "r"?' });
    await assert.rejects(stage().freeze({ last_layers: 1 } as object).pretrain({ maxSteps: 1 }), /freeze: unknown option "last_layers"; did you mean "lastLayers"\?/);
    assert.throws(() => stage().track({ evry: 5 } as object), { message: 'track: unknown option "evry"; did you mean "every"?' });
  });

  it("KTO's input: pairs when the first row is a pair (a bad later row is named), else SFT rows", () => {
    const pair = { prompt: 'p', chosen: 'a', rejected: 'b' };
    const sft = { prompt: 'p', completion: 'c', label: true };
    assert.deepEqual(toPreferenceOrSftRows([pair]), { preference: [pair] });
    assert.deepEqual(toPreferenceOrSftRows([sft]), { sft: [sft] });
    assert.deepEqual(toPreferenceOrSftRows(['doc']), { sft: [{ text: 'doc' }] });
    assert.throws(() => toPreferenceOrSftRows([pair, sft], 'kto data'), /^Error: kto data: row 1 is not a preference pair/);
    assert.throws(() => toPreferenceOrSftRows([sft, pair], 'kto data'), /^Error: kto data: row 1 is a preference pair/);
  });
});

/**
 * The committed datasets (datasets/): manifest, formats, splits, filtering, size — read from
 * disk, fast. One test rebuilds twice into temporary folders and compares the bytes (skipped,
 * with the apt-get line, where the Debian packages are not installed).
 */
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { findBlocked } from '../../datasets/lib/blocklist';
import { countRows, DOC_SEPARATOR, parseDocuments, parseJsonl } from '../../datasets/lib/format';
import { APT_COMMAND, inputVersions, missingInputs } from '../../datasets/lib/inputs';
import { sha256 } from '../../datasets/lib/util';

const ROOT = path.resolve(__dirname, '..', '..');
const DIR = path.join(ROOT, 'datasets');
const DATA_DIRS = ['general', 'domain', 'instructions', 'preferences'];
const MAX_BYTES = 25 * 1024 * 1024;

type Manifest = Record<string, { bytes: number; sha256: string; rows: number }>;

const read = (rel: string): string => fs.readFileSync(path.join(DIR, rel), 'utf8');
const manifest = (): Manifest => JSON.parse(read('MANIFEST.json')) as Manifest;

function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, r));
    else out.push(r);
  }
  return out.sort();
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function nonEmpty(x: unknown, where: string): string {
  assert.equal(typeof x, 'string', `${where}: not a string`);
  const s = x as string;
  assert.ok(s.trim().length > 0, `${where}: empty`);
  return s;
}

interface Instruction {
  messages: { role: string; content: string }[];
  source: string;
}
interface Preference {
  prompt: string;
  chosen: string;
  rejected: string;
  source: string;
  why: string;
}

function instructions(file: string): Instruction[] {
  return parseJsonl(read(file)).map((row, i) => {
    const where = `${file}:${i + 1}`;
    assert.ok(isObject(row), `${where}: not an object`);
    assert.deepEqual(Object.keys(row), ['messages', 'source'], `${where}: keys`);
    nonEmpty(row.source, `${where} source`);
    const msgs = row.messages;
    assert.ok(Array.isArray(msgs) && msgs.length >= 2 && msgs.length % 2 === 0, `${where}: messages`);
    (msgs as unknown[]).forEach((m, k) => {
      assert.ok(isObject(m), `${where}: message ${k}`);
      assert.deepEqual(Object.keys(m), ['role', 'content'], `${where}: message ${k} keys`);
      assert.equal(m.role, k % 2 === 0 ? 'user' : 'assistant', `${where}: message ${k} role`);
      nonEmpty(m.content, `${where}: message ${k} content`);
    });
    return row as unknown as Instruction;
  });
}

function preferences(file: string): Preference[] {
  return parseJsonl(read(file)).map((row, i) => {
    const where = `${file}:${i + 1}`;
    assert.ok(isObject(row), `${where}: not an object`);
    assert.deepEqual(Object.keys(row), ['prompt', 'chosen', 'rejected', 'source', 'why'], `${where}: keys`);
    for (const k of ['prompt', 'chosen', 'rejected', 'source', 'why']) nonEmpty(row[k], `${where} ${k}`);
    assert.notEqual(row.chosen, row.rejected, `${where}: chosen = rejected`);
    return row as unknown as Preference;
  });
}

describe('datasets (committed files)', () => {
  it('MANIFEST.json lists every data file with its bytes, sha256 and rows', () => {
    const m = manifest();
    const onDisk = DATA_DIRS.flatMap((d) => listFiles(path.join(DIR, d)).map((f) => `${d}/${f}`)).sort();
    assert.deepEqual(Object.keys(m).sort(), onDisk);
    for (const [file, e] of Object.entries(m)) {
      const buf = fs.readFileSync(path.join(DIR, file));
      assert.equal(buf.length, e.bytes, `${file}: bytes`);
      assert.equal(sha256(buf), e.sha256, `${file}: sha256`);
      assert.equal(countRows(file, buf.toString('utf8')), e.rows, `${file}: rows`);
      assert.ok(e.rows > 0, `${file}: no rows`);
    }
  });

  it('stays within 25 MB in total', () => {
    const total = listFiles(DIR)
      .filter((f) => !f.endsWith('.ts'))
      .reduce((s, f) => s + fs.statSync(path.join(DIR, f)).size, 0);
    assert.ok(total <= MAX_BYTES, `datasets/ holds ${total} bytes`);
  });

  for (const corpus of ['general', 'domain']) {
    it(`${corpus}: clean UTF-8 text, documents separated by a blank-line pair, held-out documents not in train`, () => {
      const docs: Record<string, string[]> = {};
      for (const split of ['train', 'heldout']) {
        const file = `${corpus}/${split}.txt`;
        const buf = fs.readFileSync(path.join(DIR, file));
        const text = buf.toString('utf8');
        assert.ok(Buffer.from(text, 'utf8').equals(buf), `${file}: not valid UTF-8`);
        assert.ok(!text.includes('\r'), `${file}: carriage return`);
        assert.ok(!/[ \t]$/m.test(text), `${file}: trailing whitespace`);
        assert.ok(!text.includes('\n\n\n\n'), `${file}: more than two blank lines`);
        docs[split] = parseDocuments(text);
        for (const d of docs[split]) {
          assert.ok(d.trim().length > 0 && !d.includes(DOC_SEPARATOR), `${file}: bad document`);
        }
      }
      const train = new Set(docs.train);
      assert.ok(docs.heldout.length > 0);
      for (const d of docs.heldout) assert.ok(!train.has(d), `${corpus}: held-out document also in train: ${d.slice(0, 60)}`);
      const first = (d: string): string => d.split('\n')[0];
      const trainTitles = new Set(docs.train.map(first));
      for (const d of docs.heldout) assert.ok(!trainTitles.has(first(d)), `${corpus}: held-out title in train: ${first(d)}`);
    });
  }

  it('instructions: TRL conversational rows, answers trimmed, held-out prompts not in train', () => {
    const train = instructions('instructions/train.jsonl');
    const held = instructions('instructions/heldout.jsonl');
    for (const r of [...train, ...held]) assert.ok(r.messages[1].content.length <= 600, r.messages[0].content);
    const sources = new Set(train.map((r) => r.source));
    for (const s of ['python-faq', 'debian-faq', 'wordnet', 'jargon-file']) assert.ok(sources.has(s), `no ${s} rows`);
    const prompts = new Set(train.map((r) => r.messages[0].content));
    for (const r of held) assert.ok(!prompts.has(r.messages[0].content), `in both splits: ${r.messages[0].content}`);
  });

  it('preferences: prompt/chosen/rejected rows, chosen ≠ rejected, held-out prompts not in train', () => {
    const train = preferences('preferences/train.jsonl');
    const held = preferences('preferences/heldout.jsonl');
    assert.ok(held.length > 0);
    const prompts = new Set(train.map((r) => r.prompt));
    for (const r of held) assert.ok(!prompts.has(r.prompt), `in both splits: ${r.prompt}`);
  });

  it('held-out words and questions are held out in both the instruction and the preference sets', () => {
    const wordOf = (s: string): string | null => /"([^"]+)"/.exec(s)?.[1]?.toLowerCase() ?? null;
    const trainWords = new Set(
      instructions('instructions/train.jsonl')
        .filter((r) => r.source === 'wordnet')
        .map((r) => wordOf(r.messages[0].content)),
    );
    for (const r of preferences('preferences/heldout.jsonl').filter((x) => x.source === 'wordnet')) {
      assert.ok(!trainWords.has(wordOf(r.prompt)), `held-out preference word is a train instruction: ${r.prompt}`);
    }
  });

  it('no blocklisted or sexual-topic word in any instruction or preference field', () => {
    for (const split of ['train', 'heldout']) {
      for (const r of instructions(`instructions/${split}.jsonl`)) {
        for (const m of r.messages) assert.equal(findBlocked(m.content), null, m.content.slice(0, 80));
      }
      for (const r of preferences(`preferences/${split}.jsonl`)) {
        for (const t of [r.prompt, r.chosen, r.rejected, r.why]) assert.equal(findBlocked(t), null, t.slice(0, 80));
      }
    }
  });

  it('README.md and LICENSES.md describe the sources (sizes, licenses, WordNet notice)', () => {
    const readme = read('README.md');
    const m = manifest();
    for (const [file, e] of Object.entries(m)) assert.ok(readme.includes(`\`${file}\` | ${e.rows} |`), `README row of ${file}`);
    assert.ok(readme.includes(APT_COMMAND));
    const lic = read('LICENSES.md');
    assert.ok(lic.includes('WordNet 3.0 Copyright 2006 by Princeton University'));
    assert.ok(lic.includes('Permission is granted to make and distribute verbatim copies'));
    assert.ok(lic.includes('PSF LICENSE AGREEMENT'));
  });
});

function build(out: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const tsx = path.join(ROOT, 'node_modules', '.bin', 'tsx');
    const child = spawn(tsx, [path.join(DIR, 'build.ts'), '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('datasets build', () => {
  it('is reproducible: two builds give the same bytes (and the committed ones, for the same package versions)', async function () {
    this.timeout(180_000);
    const missing = missingInputs(ROOT);
    if (missing.length) {
      console.log(`      skipped: inputs missing (${missing.map((r) => r.pkg).join(', ')}); install with: ${APT_COMMAND}`);
      this.skip();
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-datasets-'));
    try {
      const [a, b] = await Promise.all([build(path.join(tmp, 'a')), build(path.join(tmp, 'b'))]);
      assert.equal(a.code, 0, a.output);
      assert.equal(b.code, 0, b.output);
      const files = listFiles(path.join(tmp, 'a'));
      assert.deepEqual(listFiles(path.join(tmp, 'b')), files);
      assert.ok(files.includes('MANIFEST.json') && files.includes('general/train.txt'));
      for (const f of files) {
        assert.ok(fs.readFileSync(path.join(tmp, 'a', f)).equals(fs.readFileSync(path.join(tmp, 'b', f))), `${f} differs between builds`);
      }
      const committed = JSON.parse(read('SOURCES.json')) as { packages: Record<string, string> };
      if (JSON.stringify(committed.packages) === JSON.stringify(inputVersions(ROOT))) {
        for (const f of files) {
          assert.ok(fs.readFileSync(path.join(tmp, 'a', f)).equals(fs.readFileSync(path.join(DIR, f))), `${f} differs from the committed file`);
        }
      } else {
        console.log('      (installed package versions differ from datasets/SOURCES.json: committed files not compared)');
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

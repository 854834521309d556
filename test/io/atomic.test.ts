import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../../src/io/atomic';

describe('io/atomic', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-atomic-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Replaces one `fs` function for the duration of `body`; atomic.ts looks fs functions up at call time. */
  function withFailing(name: 'fsyncSync' | 'renameSync' | 'writeSync', body: () => void): void {
    const saved = fs[name];
    (fs as unknown as Record<string, unknown>)[name] = () => {
      throw Object.assign(new Error(`simulated ${name} failure`), { code: 'EIO' });
    };
    try {
      body();
    } finally {
      (fs as unknown as Record<string, unknown>)[name] = saved;
    }
  }

  it('writes a string and bytes, replacing an existing file, leaving no temp files', () => {
    const file = path.join(dir, 'out.txt');
    writeFileAtomic(file, 'héllo\n');
    assert.equal(fs.readFileSync(file, 'utf8'), 'héllo\n');
    writeFileAtomic(file, new Uint8Array([0, 1, 2, 255]));
    assert.deepEqual([...fs.readFileSync(file)], [0, 1, 2, 255]);
    assert.deepEqual(fs.readdirSync(dir), ['out.txt']);
  });

  it('writes a Uint8Array view at its own offset, not its whole buffer', () => {
    const file = path.join(dir, 'view.bin');
    const view = new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 4);
    writeFileAtomic(file, view);
    assert.deepEqual([...fs.readFileSync(file)], [8, 7, 6]);
  });

  it('writes an empty file', () => {
    const file = path.join(dir, 'empty');
    writeFileAtomic(file, '');
    assert.equal(fs.statSync(file).size, 0);
  });

  it('keeps the permission bits of an existing file', function () {
    if (process.platform === 'win32') this.skip();
    const file = path.join(dir, 'mode.txt');
    fs.writeFileSync(file, 'old');
    fs.chmodSync(file, 0o640);
    writeFileAtomic(file, 'new');
    assert.equal(fs.statSync(file).mode & 0o777, 0o640);
    assert.equal(fs.readFileSync(file, 'utf8'), 'new');
  });

  it('throws naming the path when the folder is missing', () => {
    const file = path.join(dir, 'missing', 'out.txt');
    assert.throws(
      () => writeFileAtomic(file, 'x'),
      (err: NodeJS.ErrnoException) => err.message.startsWith(`${file}: `) && err.code === 'ENOENT',
    );
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('throws naming the path when the target is a directory, leaving it and no temp file', () => {
    const target = path.join(dir, 'ckpt');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'inside.txt'), 'keep');
    assert.throws(() => writeFileAtomic(target, 'x'), (err: Error) => err.message.startsWith(`${target}: atomic write failed`));
    assert.ok(fs.statSync(target).isDirectory());
    assert.equal(fs.readFileSync(path.join(target, 'inside.txt'), 'utf8'), 'keep');
    assert.deepEqual(fs.readdirSync(dir), ['ckpt']);
  });

  for (const step of ['writeSync', 'fsyncSync', 'renameSync'] as const) {
    it(`leaves the old file intact and no temp file when ${step} fails`, () => {
      const file = path.join(dir, 'state.json');
      fs.writeFileSync(file, 'old content');
      withFailing(step, () => {
        assert.throws(
          () => writeFileAtomic(file, 'new content that must not appear'),
          (err: NodeJS.ErrnoException) =>
            err.message === `${file}: atomic write failed: simulated ${step} failure` &&
            err.code === 'EIO' &&
            err.cause instanceof Error,
        );
      });
      assert.equal(fs.readFileSync(file, 'utf8'), 'old content');
      assert.deepEqual(fs.readdirSync(dir), ['state.json']);
    });
  }

  it('writeJsonAtomic writes 2-space JSON with a trailing newline', () => {
    const file = path.join(dir, 'config.json');
    writeJsonAtomic(file, { a: 1, b: [true, null], c: { d: 'e' } });
    assert.equal(
      fs.readFileSync(file, 'utf8'),
      '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ],\n  "c": {\n    "d": "e"\n  }\n}\n',
    );
    assert.deepEqual(fs.readdirSync(dir), ['config.json']);
  });

  it('writeJsonAtomic throws naming the path for values JSON cannot hold, writing nothing', () => {
    const file = path.join(dir, 'bad.json');
    assert.throws(() => writeJsonAtomic(file, undefined), (err: Error) => err.message.startsWith(`${file}: value is not JSON-serializable`));
    assert.throws(() => writeJsonAtomic(file, { n: 1n }), (err: Error) => err.message.startsWith(`${file}: value is not JSON-serializable`));
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});

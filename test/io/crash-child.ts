/**
 * Child process of test/io/crash.test.ts (not a test itself): saves model folders into `dir` with the real
 * save protocol, copying the files of two saved models A and B alternately, so a kill at any moment can be
 * checked against both. `loop`: saves until killed (prints "ready" first); `once`: saves B once (with
 * TUNELAB_CRASH_AT=<step>:kill set, it dies at that step).
 * Usage: crash-child.ts loop|once <dir> <folderA> <folderB>
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../src/io/atomic';
import { writeFolderAtomic } from '../../src/io/folder';

const [mode, dir, a, b] = process.argv.slice(2);
const read = (folder: string) => fs.readdirSync(folder).map((f) => [f, fs.readFileSync(path.join(folder, f))] as const);
const versions = [read(a), read(b)];
const save = (files: (typeof versions)[number]) =>
  writeFolderAtomic(dir, async (tmp) => {
    for (const [f, bytes] of files) writeFileAtomic(path.join(tmp, f), bytes);
  });

async function main(): Promise<void> {
  if (mode === 'once') return save(versions[1]);
  process.stdout.write('ready\n');
  for (let i = 0; ; i++) await save(versions[(i + 1) % 2]);
}
main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(2);
});

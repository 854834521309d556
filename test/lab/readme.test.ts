/**
 * The README's "workflow in a few lines", run as written in a fresh process (the way a newcomer pastes it):
 * no `initEngine()` call, so this checks that tunelab starts the best engine itself instead of letting tfjs
 * fall back to its pure-JS cpu backend (issue 20: 22 tok/s instead of ~1,900). Only the step budgets are
 * shortened (`maxSteps: 2`); every call is the README's own.
 */
import * as assert from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..', '..');

/** The first ```ts block after the "The workflow in a few lines" heading. */
function workflowSnippet(): string {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const at = readme.indexOf('## The workflow in a few lines');
  assert.ok(at >= 0, 'README.md has no "## The workflow in a few lines" section');
  const m = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, 'no ```ts block in the workflow section');
  return m[1];
}

/** The snippet as a CommonJS script: `import … from 'tunelab'` → require of src/, wrapped for top-level await. */
function runnable(snippet: string): string {
  const imports = /^import \{([^}]*)\} from 'tunelab';\n/m;
  assert.match(snippet, imports, "the snippet imports from 'tunelab'");
  const body = snippet
    .replace(imports, (_, names: string) => `const {${names}} = require(${JSON.stringify(path.join(root, 'src', 'index.ts'))});\n`)
    .replace(/maxSteps: \d+/g, 'maxSteps: 2')
    .replace(/epochs: (\d+)/g, 'epochs: $1, maxSteps: 2');
  const report = `console.log('ENGINE ' + JSON.stringify(require(${JSON.stringify(path.join(root, 'src', 'engine', 'backend.ts'))}).engine()));`;
  return `(async () => {\n${body}\n${report}\n})().catch((e) => { console.error(e); process.exit(1); });\n`;
}

describe('README workflow snippet', function () {
  this.timeout(600_000);

  it('runs as written in a fresh process on the best engine, never tfjs\'s cpu fallback', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-readme-'));
    try {
      const script = path.join(dir, 'workflow.ts');
      fs.writeFileSync(script, runnable(workflowSnippet()));
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.TUNELAB_BACKEND;
      const r = spawnSync(process.execPath, ['--require', require.resolve('tsx/cjs'), script], { cwd: dir, env, encoding: 'utf8', timeout: 540_000 });
      assert.strictEqual(r.status, 0, `the README snippet failed:\n${r.stderr}\n${r.stdout}`);
      const line = r.stdout.split('\n').find((l) => l.startsWith('ENGINE '));
      assert.ok(line, `no engine report in the output:\n${r.stdout}`);
      const info = JSON.parse(line.slice('ENGINE '.length)) as { backend: string } | undefined;
      assert.ok(info, 'no engine was started');
      assert.notStrictEqual(info.backend, 'cpu');
      assert.ok(fs.existsSync(path.join(dir, 'runs', 'chat-lora', 'adapter_config.json')), 'chat.save wrote no adapter');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

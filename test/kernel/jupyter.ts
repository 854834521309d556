/** Shared setup of the kernel suites: Debian's Jupyter (skipped when absent) and a private kernelspec. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { installKernelSpec } from '../../src/kernel/spec';

export const python = '/usr/bin/python3';
export const jupyter = '/usr/bin/jupyter';
export const here = __dirname;
export const root = path.resolve(__dirname, '..', '..');
export const APT = 'apt-get install -y --no-install-recommends jupyter-client jupyter-core jupyter-nbconvert python3-nbclient python3-jupyter-kernel-test jupyter-notebook';

/** Why the suite can't run here (null when it can): Debian's Jupyter and the named Python modules are needed. */
export function missingJupyter(modules: string[]): string | null {
  if (!fs.existsSync(jupyter) || !fs.existsSync(python)) return `needs ${jupyter} (${APT})`;
  const r = spawnSync(python, ['-c', modules.map((m) => `import ${m}`).join('; ')], { encoding: 'utf8' });
  return r.status === 0 ? null : `needs Python modules ${modules.join(', ')} (${APT})`;
}

/** A kernelspec "tunelab" in a temporary prefix, and the environment that makes Jupyter (and only it) see it. */
export interface TempKernel {
  dir: string;
  env: NodeJS.ProcessEnv;
  /** The kernel module the spec runs (src/kernel/kernel.ts under tsx, as the tests themselves run). */
  module: string;
  cleanup(): void;
}

export function tempKernel(): TempKernel {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-kernel-'));
  const prefix = path.join(dir, 'prefix');
  const { spec } = installKernelSpec({ prefix });
  const work = path.join(dir, 'work');
  fs.mkdirSync(path.join(dir, 'runtime'), { recursive: true });
  fs.mkdirSync(work);
  return {
    dir: work,
    module: spec.argv[spec.argv.length - 2],
    env: {
      ...process.env,
      JUPYTER_PATH: path.join(prefix, 'share', 'jupyter'),
      JUPYTER_RUNTIME_DIR: path.join(dir, 'runtime'),
      JUPYTER_CONFIG_DIR: path.join(dir, 'config'),
      JUPYTER_DATA_DIR: path.join(dir, 'data'),
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONPATH: here,
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs /usr/bin/python3 with `args` in the temporary work folder and the kernel's environment. */
export function py(k: TempKernel, args: string[], timeoutMs: number): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(python, args, { cwd: k.dir, env: k.env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', status: r.status };
}

/** Skips the suite with a visible reason (mocha's skip() takes none). */
export function skipWith(ctx: Mocha.Context, reason: string): never {
  process.stdout.write(`      skipped: ${reason}\n`);
  ctx.skip();
}

/** Parses unittest's summary ("Ran 12 tests", "OK (skipped=1)" / "FAILED (failures=1, errors=2)"). */
export function unittestSummary(output: string): { ran: number; failures: number; errors: number; skipped: number; passed: number } {
  const ran = Number(/^Ran (\d+) tests?/m.exec(output)?.[1] ?? NaN);
  const count = (k: string) => Number(new RegExp(`${k}=(\\d+)`).exec(output.slice(output.lastIndexOf('\nRan ')))?.[1] ?? 0);
  const failures = count('failures');
  const errors = count('errors');
  const skipped = count('skipped');
  // Failed subtests are counted one by one, so passes are the test methods reported "... ok".
  const passed = (output.match(/^test_\w+ \(.*\) \.\.\. ok$/gm) ?? []).length;
  return { ran, failures, errors, skipped, passed };
}


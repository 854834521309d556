/**
 * `tunelab kernel install | uninstall | list`: the Jupyter kernelspec of the "TypeScript (tunelab)" kernel,
 * written directly (no IPython, no `jupyter` command needed).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Command } from 'commander';
import { KERNELSPEC_PLOTLY, installPlotly } from '../viz/plotly';
import { packageRoot } from './resolve';

/** Where a kernelspec goes. */
export interface KernelSpecLocation {
  /** Kernelspec name, the folder under `kernels/` (default `tunelab`). */
  name?: string;
  /** Install under `<prefix>/share/jupyter/kernels/` instead of the user's Jupyter data folder. */
  prefix?: string;
}

/** Options of {@link installKernelSpec}. */
export interface KernelSpecOptions extends KernelSpecLocation {
  /** Shown in Jupyter's kernel menu (default "TypeScript (tunelab)"). */
  displayName?: string;
}

/** The kernel.json of a Jupyter kernelspec. */
export interface KernelSpec {
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode?: 'signal' | 'message';
  env?: Record<string, string>;
  metadata?: Record<string, unknown>;
}

const NAME = /^[a-zA-Z0-9._-]+$/;

/** The user's Jupyter data folder, as jupyter_core computes it (JUPYTER_DATA_DIR, XDG, macOS, Windows). */
export function jupyterDataDir(): string {
  if (process.env.JUPYTER_DATA_DIR) return path.resolve(process.env.JUPYTER_DATA_DIR);
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Jupyter');
  if (process.platform === 'win32') return path.join(process.env.APPDATA ?? path.join(os.homedir(), 'AppData', 'Roaming'), 'jupyter');
  return path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'jupyter');
}

/** The folder of kernelspec `name` for a location (user data folder unless `prefix`). */
export function kernelSpecDir(loc: KernelSpecLocation = {}): string {
  const name = loc.name ?? 'tunelab';
  if (!NAME.test(name)) throw new Error(`kernel name '${name}' may only contain letters, digits, '.', '_' and '-'.`);
  const base = loc.prefix ? path.join(path.resolve(loc.prefix), 'share', 'jupyter') : jupyterDataDir();
  return path.join(base, 'kernels', name);
}

/**
 * The command Jupyter runs to start the kernel: this Node.js binary on the compiled `dist/kernel/kernel.js` next
 * to this file, or, when tunelab itself runs from its TypeScript sources (tsx), on `src/kernel/kernel.ts` through
 * tsx's require hook, so the kernel always matches the code that installed it.
 */
export function kernelArgv(): string[] {
  const ext = path.extname(__filename);
  const entry = path.join(__dirname, `kernel${ext}`);
  if (!fs.existsSync(entry)) throw new Error(`kernel entry ${entry} is missing (run npm run build).`);
  const loader = ext === '.ts' ? ['--require', require.resolve('tsx/cjs')] : [];
  return [process.execPath, ...loader, entry, '{connection_file}'];
}

/**
 * Writes `<dir>/kernel.json` for the tunelab kernel and copies plotly.js beside it: Jupyter serves kernelspec
 * files at `<base>/kernelspecs/<name>/`, from where charts load plotly.js when a page lacks it (a reloaded
 * notebook), so no output has to carry the bundle. Returns the folder and the spec.
 */
export function installKernelSpec(opts: KernelSpecOptions = {}): { dir: string; spec: KernelSpec } {
  const dir = kernelSpecDir(opts);
  const spec: KernelSpec = {
    argv: kernelArgv(),
    display_name: opts.displayName ?? 'TypeScript (tunelab)',
    language: 'typescript',
    // Jupyter interrupts with SIGINT; the kernel turns it into an interrupted cell, not an exit.
    interrupt_mode: 'signal',
    // Charts name the kernelspec folder their plotly.js comes from.
    env: { TUNELAB_KERNEL_NAME: opts.name ?? 'tunelab' },
    metadata: { tunelab: { root: packageRoot } },
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'kernel.json'), `${JSON.stringify(spec, null, 2)}\n`);
  installPlotly(dir);
  return { dir, spec };
}

/** Removes a kernelspec folder written by {@link installKernelSpec}; false when there was none. */
export function uninstallKernelSpec(loc: KernelSpecLocation = {}): boolean {
  const dir = kernelSpecDir(loc);
  if (!fs.existsSync(path.join(dir, 'kernel.json'))) return false;
  fs.rmSync(dir, { recursive: true, force: true });
  return true;
}

/** A kernelspec found on Jupyter's search path. */
export interface FoundKernelSpec {
  name: string;
  dir: string;
  spec: KernelSpec;
  /** Whether it starts a tunelab kernel. */
  tunelab: boolean;
  /**
   * Files that no longer exist: those its argv names (a moved or deleted checkout) and, for a tunelab kernel, the
   * plotly.js copy charts load after a page reload (a kernelspec from before tunelab shipped it).
   */
  missing: string[];
}

/** Jupyter's kernel folders, in its lookup order: JUPYTER_PATH, the user folder, then system folders. */
export function kernelSearchPath(): string[] {
  const env = (process.env.JUPYTER_PATH ?? '').split(path.delimiter).filter(Boolean);
  const system = process.platform === 'win32' ? [path.join(process.env.PROGRAMDATA ?? 'C:\\ProgramData', 'jupyter')]
    : ['/usr/local/share/jupyter', '/usr/share/jupyter'];
  return [...env, jupyterDataDir(), ...system].map((d) => path.join(path.resolve(d), 'kernels'));
}

/** Kernelspecs on Jupyter's search path (the first of each name wins, as in Jupyter). */
export function listKernelSpecs(): FoundKernelSpec[] {
  const seen = new Map<string, FoundKernelSpec>();
  for (const base of kernelSearchPath()) {
    let names: string[] = [];
    try { names = fs.readdirSync(base); } catch { continue; }
    for (const name of names) {
      if (seen.has(name)) continue;
      const dir = path.join(base, name);
      let spec: KernelSpec;
      try { spec = JSON.parse(fs.readFileSync(path.join(dir, 'kernel.json'), 'utf8')) as KernelSpec; } catch { continue; }
      const argv = Array.isArray(spec.argv) ? spec.argv : [];
      const tunelab = argv.some((a) => /[/\\](src|dist)[/\\]kernel([/\\]kernel)?\.[jt]s$/.test(a)) || spec.metadata?.tunelab !== undefined;
      const missing = argv.filter((a) => path.isAbsolute(a) && !fs.existsSync(a));
      const plotly = path.join(dir, KERNELSPEC_PLOTLY);
      if (tunelab && !fs.existsSync(plotly)) missing.push(plotly);
      seen.set(name, { name, dir, spec, tunelab, missing });
    }
  }
  return [...seen.values()];
}

/** Adds `kernel install | uninstall | list` to the tunelab command. */
export function registerKernelCommand(program: Command): void {
  const kernel = program.command('kernel').description('Jupyter kernel "TypeScript (tunelab)": tslab with tunelab importable, fixed output and errors');
  const location = (o: { user?: boolean; prefix?: string; name: string }): KernelSpecLocation => {
    if (o.user && o.prefix) throw new Error('--user and --prefix exclude each other.');
    return { name: o.name, prefix: o.prefix };
  };
  kernel.command('install').description('register the kernelspec (default: in your user Jupyter folder)')
    .option('--user', `install in the user's Jupyter folder (${path.join(jupyterDataDir(), 'kernels')}; the default)`)
    .option('--prefix <dir>', 'install in <dir>/share/jupyter/kernels (a virtualenv, conda env or custom JUPYTER_PATH)')
    .option('--name <name>', 'kernelspec name', 'tunelab')
    .option('--display-name <text>', 'name shown in Jupyter', 'TypeScript (tunelab)')
    .action((o: { user?: boolean; prefix?: string; name: string; displayName: string }) => {
      const { dir, spec } = installKernelSpec({ ...location(o), displayName: o.displayName });
      process.stdout.write(`Installed kernelspec ${o.name} ("${spec.display_name}") in ${dir}\n`);
      if (o.prefix) process.stdout.write(`Jupyter finds it with JUPYTER_PATH=${path.join(path.resolve(o.prefix), 'share', 'jupyter')}\n`);
    });
  kernel.command('uninstall').description('remove the kernelspec')
    .option('--user', 'from the user Jupyter folder (the default)')
    .option('--prefix <dir>', 'from <dir>/share/jupyter/kernels')
    .option('--name <name>', 'kernelspec name', 'tunelab')
    .action((o: { user?: boolean; prefix?: string; name: string }) => {
      const loc = location(o);
      if (!uninstallKernelSpec(loc)) throw new Error(`no kernelspec ${o.name} in ${path.dirname(kernelSpecDir(loc))}.`);
      process.stdout.write(`Removed ${kernelSpecDir(loc)}\n`);
    });
  kernel.command('list').description('kernelspecs Jupyter would see (JUPYTER_PATH, user and system folders)')
    .option('--all', 'include kernels that are not tunelab kernels')
    .option('--json', 'print JSON')
    .action((o: { all?: boolean; json?: boolean }) => {
      const specs = listKernelSpecs().filter((k) => o.all || k.tunelab);
      if (o.json) { process.stdout.write(`${JSON.stringify(specs, null, 2)}\n`); return; }
      if (specs.length === 0) { process.stdout.write('No tunelab kernelspec found; run: tunelab kernel install\n'); return; }
      for (const k of specs) {
        const state = k.missing.length ? `BROKEN, missing ${k.missing.join(', ')} (reinstall)` : 'ok';
        process.stdout.write(`${k.name}\t${k.spec.display_name}\t${k.dir}\t${state}\n`);
      }
    });
}

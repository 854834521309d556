/**
 * Module resolution in cells: `import ... from 'tunelab'` (and the data packages tunelab works with) from a
 * notebook in any folder, by mapping the names to tunelab's own copies when no node_modules on the way up has them.
 */
import * as fs from 'fs';
import Module from 'module';
import * as path from 'path';

/** The package root (two levels above `src/kernel/` or `dist/kernel/`). */
export const packageRoot = path.resolve(__dirname, '..', '..');

/**
 * The folder of package `name` in `dir/node_modules` or an ancestor's (Node's and TypeScript's lookup); not
 * through `require.resolve`, since a package's `exports` may hide its package.json.
 */
function packageDir(dir: string, name: string): string | undefined {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const candidate = path.join(d, 'node_modules', name);
    if (path.basename(d) !== 'node_modules' && fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (path.dirname(d) === d) return undefined;
  }
}

const toSlash = (p: string) => p.replace(/\\/g, '/');

/**
 * Makes `name` resolve to `root` for cells run from `cwd` when no node_modules on the way up has it (a notebook
 * in this repository, or in a folder without `npm install tunelab`): tslab's TypeScript program sees a virtual
 * `<cwd>/node_modules/<name>` mapped onto `root` (kept under node_modules so tslab neither compiles nor emits
 * it, which a symlink or `../src` import would trigger through its rootDir check), and Node's resolver falls back
 * to `root`, or, given `from`, looks the request up from that folder as Node would there (a dependency's `exports`
 * apply). An installed copy always wins. Returns a function that undoes it, or null when `name` is installed.
 */
export function enablePackageFallback(ts: { sys: TsSystem }, cwd: string, name = 'tunelab', root = packageRoot, from?: string): (() => void) | null {
  if (packageDir(cwd, name)) return null;
  const saved = new Map(Object.entries(ts.sys));
  const virtual = toSlash(path.join(cwd, 'node_modules', name));
  const real = toSlash(root);
  const map = (p: string) => (p === virtual || p.startsWith(`${virtual}/`) ? real + p.slice(virtual.length) : p);
  const inside = (p: string) => p === virtual || p.startsWith(`${virtual}/`);
  const sys = ts.sys;
  for (const key of ['fileExists', 'directoryExists', 'readFile', 'getDirectories', 'readDirectory', 'getModifiedTime', 'watchFile', 'watchDirectory'] as const) {
    const original = sys[key] as ((p: string, ...rest: unknown[]) => unknown) | undefined;
    if (original) Reflect.set(sys, key, (p: string, ...rest: unknown[]) => original.call(sys, map(p), ...rest));
  }
  // Virtual paths stay as they are: TypeScript must see the package under node_modules (a library it neither
  // checks with the cell nor emits), not at its real path outside the kernel's rootDir.
  const realpath = sys.realpath;
  if (realpath) sys.realpath = (p: string) => (inside(p) ? p : realpath.call(sys, p));

  type Resolve = (this: unknown, request: string, parent: unknown, isMain: boolean, options?: unknown) => string;
  const loader = Module as unknown as { _resolveFilename: Resolve };
  const resolve = loader._resolveFilename;
  loader._resolveFilename = function (request, parent, isMain, options) {
    try {
      return resolve.call(this, request, parent, isMain, options);
    } catch (err) {
      const ours = request === name || request.startsWith(`${name}/`);
      if (!ours || (err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      if (from) return resolve.call(this, request, parent, isMain, { paths: [from] });
      return resolve.call(this, path.join(root, request.slice(name.length)), parent, isMain, options);
    }
  };
  return () => {
    loader._resolveFilename = resolve;
    for (const [k, v] of saved) Reflect.set(sys, k, v);
  };
}

/** The parts of TypeScript's `ts.sys` that {@link enablePackageFallback} redirects. */
export interface TsSystem {
  fileExists(path: string): boolean;
  directoryExists(path: string): boolean;
  readFile(path: string, encoding?: string): string | undefined;
  getDirectories(path: string): string[];
  readDirectory(path: string, ...rest: never[]): string[];
  getModifiedTime?(path: string): Date | undefined;
  watchFile?(path: string, ...rest: never[]): unknown;
  watchDirectory?(path: string, ...rest: never[]): unknown;
  realpath?(path: string): string;
}

/** tunelab's data packages, importable in notebooks wherever tunelab is (danfo only when installed). */
const DATA_PACKAGES = ['arquero', 'danfojs-node', 'danfojs'];

/**
 * {@link enablePackageFallback} for `tunelab` and for the packages notebooks use with it (`arquero`, `danfojs-node`,
 * `danfojs`), each resolved from tunelab's own folder; packages tunelab cannot resolve are left alone. Returns the
 * names it mapped and a function that undoes all of it.
 */
export function enablePackageFallbacks(ts: { sys: TsSystem }, cwd: string, root = packageRoot): { mapped: string[]; undo(): void } {
  const mapped: string[] = [];
  const undos: (() => void)[] = [];
  const map = (name: string, dir: string, from?: string) => {
    const undo = enablePackageFallback(ts, cwd, name, dir, from);
    if (undo) { mapped.push(name); undos.push(undo); }
  };
  map('tunelab', root);
  for (const name of DATA_PACKAGES) {
    const dir = packageDir(root, name);
    if (dir) map(name, dir, root);
  }
  return { mapped, undo: () => undos.reverse().forEach((u) => u()) };
}

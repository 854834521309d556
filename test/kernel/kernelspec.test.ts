import { strict as assert } from 'assert';
import * as fs from 'fs';
import Module from 'module';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { installKernelSpec, kernelSpecDir, listKernelSpecs, registerKernelCommand, uninstallKernelSpec } from '../../src/kernel/spec';
import { clearOutput, enablePackageFallback, enablePackageFallbacks, TsSystem } from '../../src/kernel';
import { locatePlotly } from '../../src/viz';

const root = path.resolve(__dirname, '..', '..');

/** Runs fn with environment variables set, then restores them. */
function withEnv<T>(vars: Record<string, string>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

describe('kernel: kernelspec install, list, uninstall', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-spec-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('writes kernel.json under <prefix>/share/jupyter/kernels/<name> with an argv that runs this kernel', () => {
    const { dir, spec } = installKernelSpec({ prefix: tmp });
    assert.equal(dir, path.join(tmp, 'share', 'jupyter', 'kernels', 'tunelab'));
    const written = JSON.parse(fs.readFileSync(path.join(dir, 'kernel.json'), 'utf8'));
    assert.deepEqual(written, spec);
    assert.equal(spec.display_name, 'TypeScript (tunelab)');
    assert.equal(spec.language, 'typescript');
    assert.equal(spec.argv[0], process.execPath);
    assert.equal(spec.argv[spec.argv.length - 1], '{connection_file}');
    assert.equal(spec.argv[spec.argv.length - 2], path.join(root, 'src', 'kernel', 'kernel.ts'));
    assert.ok(spec.argv.filter((a) => path.isAbsolute(a)).every((a) => fs.existsSync(a)), spec.argv.join(' '));
    assert.deepEqual(spec.metadata, { tunelab: { root } }); // the package root, not src/
  });

  it('copies plotly.js into the kernelspec (served to charts) and names the kernelspec in the kernel\'s env', () => {
    const { dir, spec } = installKernelSpec({ prefix: tmp, name: 'tl-charts' });
    assert.deepEqual(fs.readFileSync(path.join(dir, 'plotly.min.js')), fs.readFileSync(locatePlotly().file));
    assert.deepEqual(spec.env, { TUNELAB_KERNEL_NAME: 'tl-charts' });
    assert.equal(installKernelSpec({ prefix: tmp }).spec.env?.TUNELAB_KERNEL_NAME, 'tunelab');
  });

  it('defaults to the user Jupyter folder (JUPYTER_DATA_DIR, else XDG_DATA_HOME/jupyter or ~/.local/share/jupyter)', () => {
    withEnv({ JUPYTER_DATA_DIR: path.join(tmp, 'data') }, () => assert.equal(kernelSpecDir({ name: 'x' }), path.join(tmp, 'data', 'kernels', 'x')));
    if (process.platform === 'linux') {
      const saved = process.env.JUPYTER_DATA_DIR;
      delete process.env.JUPYTER_DATA_DIR;
      try {
        withEnv({ XDG_DATA_HOME: path.join(tmp, 'xdg') }, () => assert.equal(kernelSpecDir(), path.join(tmp, 'xdg', 'jupyter', 'kernels', 'tunelab')));
      } finally {
        if (saved !== undefined) process.env.JUPYTER_DATA_DIR = saved;
      }
    }
  });

  it('rejects kernel names Jupyter would not accept', () => {
    assert.throws(() => kernelSpecDir({ name: 'a b' }), /may only contain/);
  });

  it('lists tunelab kernelspecs on JUPYTER_PATH and flags ones whose files are gone', () => {
    const prefix = path.join(tmp, 'list');
    installKernelSpec({ prefix, name: 'tunelab-a' });
    const old = installKernelSpec({ prefix, name: 'tunelab-c' }).dir;
    fs.rmSync(path.join(old, 'plotly.min.js')); // installed before kernelspecs carried plotly.js
    const { dir } = installKernelSpec({ prefix, name: 'tunelab-b' });
    const spec = JSON.parse(fs.readFileSync(path.join(dir, 'kernel.json'), 'utf8'));
    spec.argv[spec.argv.length - 2] = path.join(tmp, 'moved', 'dist', 'kernel', 'kernel.js');
    fs.writeFileSync(path.join(dir, 'kernel.json'), JSON.stringify(spec));
    const found = withEnv({ JUPYTER_PATH: path.join(prefix, 'share', 'jupyter'), JUPYTER_DATA_DIR: path.join(tmp, 'none') }, listKernelSpecs)
      .filter((k) => k.name.startsWith('tunelab-')).sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(found.map((k) => [k.name, k.tunelab, k.missing.length]), [['tunelab-a', true, 0], ['tunelab-b', true, 1], ['tunelab-c', true, 1]]);
    assert.deepEqual(found[2].missing, [path.join(old, 'plotly.min.js')]);
    // Told by its argv alone (src/kernel/kernel.ts, or src/kernel.ts of older installs), without the metadata.
    const bare = installKernelSpec({ prefix, name: 'tunelab-d' }).dir;
    for (const entry of [path.join(root, 'src', 'kernel', 'kernel.ts'), path.join(root, 'src', 'kernel.ts')]) {
      const s = JSON.parse(fs.readFileSync(path.join(bare, 'kernel.json'), 'utf8'));
      delete s.metadata;
      s.argv[s.argv.length - 2] = entry;
      fs.writeFileSync(path.join(bare, 'kernel.json'), JSON.stringify(s));
      const d = withEnv({ JUPYTER_PATH: path.join(prefix, 'share', 'jupyter'), JUPYTER_DATA_DIR: path.join(tmp, 'none') }, listKernelSpecs).find((k) => k.name === 'tunelab-d');
      assert.equal(d?.tunelab, true, entry);
    }
  });

  it('uninstall removes the folder and reports whether there was one', () => {
    installKernelSpec({ prefix: tmp, name: 'gone' });
    assert.equal(uninstallKernelSpec({ prefix: tmp, name: 'gone' }), true);
    assert.equal(fs.existsSync(kernelSpecDir({ prefix: tmp, name: 'gone' })), false);
    assert.equal(uninstallKernelSpec({ prefix: tmp, name: 'gone' }), false);
  });

  it('`tunelab kernel install|list|uninstall` commands', async () => {
    const out: string[] = [];
    const write = process.stdout.write;
    const run = async (...args: string[]) => {
      const p = new Command('tunelab').exitOverride();
      registerKernelCommand(p);
      process.stdout.write = ((s: string) => { out.push(s); return true; }) as typeof process.stdout.write;
      try {
        await p.parseAsync(args, { from: 'user' });
      } finally {
        process.stdout.write = write;
      }
    };
    const prefix = path.join(tmp, 'cli');
    await run('kernel', 'install', '--prefix', prefix, '--name', 'tl-cli', '--display-name', 'TS (cli)');
    assert.match(out.join(''), /Installed kernelspec tl-cli \("TS \(cli\)"\)/);
    out.length = 0;
    await withEnv({ JUPYTER_PATH: path.join(prefix, 'share', 'jupyter') }, () => run('kernel', 'list', '--json'));
    const listed = JSON.parse(out.join('')) as { name: string }[];
    assert.ok(listed.some((k) => k.name === 'tl-cli'));
    await run('kernel', 'uninstall', '--prefix', prefix, '--name', 'tl-cli');
    await assert.rejects(run('kernel', 'uninstall', '--prefix', prefix, '--name', 'tl-cli'), /no kernelspec tl-cli/);
    await assert.rejects(run('kernel', 'install', '--user', '--prefix', prefix), /exclude each other/);
  });
});

describe('kernel: package fallback and notebook helpers', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-fallback-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  function fakeSys(): TsSystem & { calls: string[] } {
    const calls: string[] = [];
    const note = <T>(v: T) => (p: string) => { calls.push(p); return v; };
    return {
      calls, fileExists: (p) => { calls.push(p); return fs.existsSync(p); }, directoryExists: note(false),
      readFile: (p) => { calls.push(p); return fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : undefined; },
      getDirectories: note([]), readDirectory: note([]), realpath: (p) => `real:${p}`,
    };
  }

  it('maps <cwd>/node_modules/tunelab onto the package for TypeScript and Node, and undoes it', () => {
    const cwd = path.join(tmp, 'notebooks');
    fs.mkdirSync(cwd);
    const req = Module.createRequire(path.join(cwd, 'x.js'));
    assert.throws(() => req.resolve('tunelab/package.json'));
    const ts = { sys: fakeSys() };
    const undo = enablePackageFallback(ts, cwd);
    assert.ok(undo);
    try {
      const virtual = `${cwd}/node_modules/tunelab/package.json`;
      assert.equal(ts.sys.fileExists(virtual), true);
      assert.equal(JSON.parse(ts.sys.readFile(virtual) ?? '{}').name, 'tunelab');
      assert.equal(ts.sys.realpath?.(virtual), virtual, 'virtual paths must stay under node_modules');
      assert.equal(ts.sys.realpath?.('/elsewhere'), 'real:/elsewhere');
      assert.equal(req.resolve('tunelab/package.json'), path.join(root, 'package.json'));
    } finally {
      undo();
    }
    assert.throws(() => req.resolve('tunelab/package.json'));
    assert.equal(ts.sys.fileExists(`${cwd}/node_modules/tunelab/package.json`), false);
  });

  it('leaves resolution alone where node_modules/tunelab is installed (an installed copy wins)', () => {
    const project = path.join(tmp, 'project');
    fs.mkdirSync(path.join(project, 'node_modules', 'tunelab'), { recursive: true });
    fs.writeFileSync(path.join(project, 'node_modules', 'tunelab', 'package.json'), '{"name":"tunelab"}');
    fs.mkdirSync(path.join(project, 'notebooks'));
    assert.equal(enablePackageFallback({ sys: fakeSys() }, path.join(project, 'notebooks')), null);
  });

  it('maps arquero (and danfo where installed) from tunelab\'s folder too, so notebooks anywhere import them', () => {
    const cwd = path.join(tmp, 'elsewhere');
    fs.mkdirSync(cwd);
    const req = Module.createRequire(path.join(cwd, 'x.js'));
    assert.throws(() => req.resolve('arquero'));
    const ts = { sys: fakeSys() };
    const { mapped, undo } = enablePackageFallbacks(ts, cwd);
    try {
      assert.deepEqual(mapped.slice(0, 2), ['tunelab', 'arquero']);
      assert.ok(mapped.includes('danfojs'), `danfojs is a dev dependency here: ${mapped.join(', ')}`);
      assert.equal(req.resolve('arquero'), require.resolve('arquero'));
      assert.equal(req.resolve('danfojs'), require.resolve('danfojs'), 'through its "exports", as from tunelab\'s folder');
      assert.equal(JSON.parse(ts.sys.readFile(`${cwd}/node_modules/arquero/package.json`) ?? '{}').name, 'arquero');
      assert.equal(req.resolve('tunelab/package.json'), path.join(root, 'package.json'));
    } finally {
      undo();
    }
    assert.throws(() => req.resolve('arquero'));
    assert.equal(ts.sys.fileExists(`${cwd}/node_modules/arquero/package.json`), false);
  });

  it('clearOutput is a no-op outside the kernel', () => {
    assert.equal(clearOutput(), false);
  });
});

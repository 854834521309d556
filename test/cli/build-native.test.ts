import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildNativeHint } from '../../src/cli-build-native';
import { nativeAddonPath } from '../../src/engine/native';

const root = path.join(__dirname, '..', '..');
const tsx = path.join(root, 'node_modules', '.bin', 'tsx');

function buildNative(env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(tsx, [path.join(root, 'src', 'cli.ts'), 'build-native'], { encoding: 'utf8', cwd: root, env, timeout: 540_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The best ISA of the addon on disk, as a separate process loads it; undefined when it does not load. */
function addonIsa(): string | undefined {
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(nativeAddonPath)}).isas()[0])`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : undefined;
}

// Both builds rebuild the addon in place (node-gyp rebuild: ~10-30 s each). The failing one runs first, so the
// suite ends on a fresh working build; should anything stop it, the addon found at the start is put back.
describe('tunelab build-native', function () {
  this.timeout(1_200_000);
  const backup = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-addon-')), 'tunelab_native.node');
  let hadAddon = false;
  before(() => {
    hadAddon = addonIsa() !== undefined;
    if (hadAddon) fs.copyFileSync(nativeAddonPath, backup);
  });
  after(() => {
    if (hadAddon && addonIsa() === undefined) {
      fs.mkdirSync(path.dirname(nativeAddonPath), { recursive: true });
      fs.copyFileSync(backup, nativeAddonPath);
    }
  });

  it('exits 1 with one line, no stack trace, when the compiler is missing, and keeps the working addon', () => {
    const isaBefore = addonIsa();
    const r = buildNative({ ...process.env, CC: '/nonexistent/tunelab-test-cc' });
    assert.equal(r.code, 1, r.stdout + r.stderr.slice(-2000));
    assert.equal(r.stdout, '');
    const last = r.stderr.trim().split('\n').at(-1)!;
    // A failed rebuild puts the previous addon back (node-gyp rebuild deletes native/build first).
    assert.match(last, isaBefore
      ? /^tunelab: error: build-native failed: native engine not built \(.+\); the previous build is kept/
      : /^tunelab: error: build-native failed: native engine not built \(.+\); tunelab uses the wasm engine/);
    assert.equal(addonIsa(), isaBefore, 'the addon found before still loads');
    assert.match(r.stderr, /tunelab-test-cc/, 'the compiler output (naming the missing compiler) goes to stderr');
    assert.ok(!/^\s+at /m.test(r.stderr), 'no stack trace');
  });

  it('rebuilds the addon offline and prints the native line of a fresh engine', () => {
    const started = Date.now();
    // The environment's defaults: native on, every fused kernel, the best ISA.
    const { TUNELAB_NATIVE: _n, TUNELAB_FUSED: _f, TUNELAB_NATIVE_ISA: _i, ...env } = process.env;
    const r = buildNative(env);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.match(r.stderr, /gyp info ok/, 'node-gyp\'s output goes to stderr');
    assert.ok(fs.statSync(nativeAddonPath).mtimeMs >= started - 2000, 'the addon was rebuilt');
    const isa = addonIsa();
    assert.ok(isa, 'the new addon loads');
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    assert.equal(lines[0], `built ${nativeAddonPath}`);
    assert.match(lines[1], new RegExp(`^native GEMM: native GEMM and fused kernels: ${isa} kernels, \\d+ threads?$`));
  });

  it('tunelab info names the verb when the addon is missing or does not load, and only then', () => {
    const off = { active: false, threads: 1, fused: false };
    assert.match(buildNativeHint({ ...off, reason: 'addon not built (`npm run build:native` …); products run on XNNPACK' })!, /tunelab build-native/);
    assert.match(buildNativeHint({ ...off, reason: 'addon failed to load: invalid ELF header; products run on XNNPACK' })!, /tunelab build-native/);
    assert.equal(buildNativeHint({ ...off, reason: 'native engine off (TUNELAB_NATIVE=0); products run on XNNPACK' }), undefined);
    assert.equal(buildNativeHint({ active: true, threads: 2, fused: true, isa: 'avx2', reason: 'native GEMM and fused kernels: avx2 kernels, 2 threads' }), undefined);
    assert.equal(buildNativeHint(undefined), undefined);
  });
});

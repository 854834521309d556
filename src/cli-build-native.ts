/**
 * `tunelab build-native`: (re)builds the native engine in tunelab's own folder with scripts/build-native.js
 * --verbose (node-gyp, offline, on the running Node's headers), then starts a fresh process, which loads the
 * new addon (this one may hold the old one), and prints what its engine runs: ISA, threads, fused kernels.
 * The one-line way to build after an install that skipped the install script.
 */
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';
import type { Command } from 'commander';
import { nativeAddonPath, type NativeInfo } from './engine/native';

/** The package root (from src/ or dist/ alike): where scripts/ and native/ are. */
const root = path.join(__dirname, '..');

/** Runs the build script, compiler output to stderr; resolves to its exit code and its last line. */
function runBuildScript(): Promise<{ code: number; last: string }> {
  // An explicit build request: TUNELAB_NATIVE=0 (skip the build at install, use wasm at run time) is not applied here.
  const { TUNELAB_NATIVE: _skip, ...env } = process.env;
  const child = spawn(process.execPath, [path.join(root, 'scripts', 'build-native.js'), '--verbose'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const forward = (d: Buffer) => {
    process.stderr.write(d);
    tail = (tail + d.toString()).slice(-2000);
  };
  child.stdout.on('data', forward);
  child.stderr.on('data', forward);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), last: tail.trim().split('\n').at(-1) ?? '' }));
  });
}

/** `tunelab info --json --backend wasm` in a fresh process: what a new run gets from the addon on disk. */
function freshEngineNative(): NativeInfo {
  const ext = path.extname(__filename);
  const cli = path.join(__dirname, `cli${ext}`);
  // Run from source (tests, tsx): the child needs tsx's loader, resolved from tunelab's node_modules.
  const loader = ext === '.ts' ? ['--require', 'tsx/cjs'] : [];
  const r = spawnSync(process.execPath, [...loader, cli, 'info', '--json', '--backend', 'wasm'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const why = r.error?.message ?? (r.stderr || '').trim().split('\n').at(-1);
  if (r.status !== 0) throw new Error(`built, but a fresh \`tunelab info\` failed (${why ?? `exit ${r.status}`})`);
  const native = (JSON.parse(r.stdout) as { native?: NativeInfo }).native;
  if (!native) throw new Error('built, but a fresh `tunelab info` reports no native engine on the wasm backend');
  return native;
}

async function buildNative(o: { json?: boolean }): Promise<void> {
  const build = await runBuildScript();
  const message = build.last.replace(/^tunelab: /, '');
  if (build.code !== 0) throw new Error(`build-native failed: ${message || `scripts/build-native.js exited with ${build.code}`}`);
  const native = freshEngineNative();
  const line = `native GEMM: ${native.reason}`;
  process.stdout.write(o.json
    ? `${JSON.stringify({ built: true, addon: nativeAddonPath, build: message, native }, null, 2)}\n`
    : `built ${nativeAddonPath}\n${line}\n`);
}

/** Adds the `build-native` verb. */
export function registerBuildNativeCommand(p: Command): void {
  p.command('build-native').description('build the native engine (GEMM and fused kernels) in tunelab\'s folder, offline, and show what it runs')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => buildNative(o));
}

/** The hint `tunelab info` adds when the addon is missing or does not load (native.ts's two reasons). */
export function buildNativeHint(native: NativeInfo | undefined): string | undefined {
  return native && !native.active && /^addon (not built|failed to load)/.test(native.reason)
    ? '  build it with: tunelab build-native' : undefined;
}

#!/usr/bin/env node
/*
 * Builds tunelab's native engine (native/ → native/build/Release/tunelab_native.node) with node-gyp,
 * offline: node-gyp is pointed at the running Node's own headers (--nodedir) so it never downloads them.
 *
 * `npm install` runs it as the package's install script: it never fails the install; on any problem it
 * prints one line and exits 0, and tunelab then runs on the wasm path (engine() says why).
 * `npm run build:native` (same script with --verbose) shows the compiler's output and fails loudly.
 * TUNELAB_NATIVE=0 skips the build.
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const nativeDir = path.join(root, 'native');
const output = path.join(nativeDir, 'build', 'Release', 'tunelab_native.node');
const verbose = process.argv.includes('--verbose');

function finish(ok, message) {
  console.log(`tunelab: ${message}`);
  process.exit(ok || !verbose ? 0 : 1);
}

/** node-gyp: the one npm is running with, then a local install, then the copy bundled with npm. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  if (process.env.npm_execpath) candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => c && fs.existsSync(c));
}

/** A directory whose include/node holds node_api.h: the running Node's install prefix first, then system ones. */
function findNodeDir() {
  const prefix = path.resolve(path.dirname(fs.realpathSync(process.execPath)), '..');
  return [prefix, '/usr', '/usr/local'].find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
}

if (process.env.TUNELAB_NATIVE === '0') finish(true, 'native engine not built (TUNELAB_NATIVE=0)');
if (!fs.existsSync(path.join(nativeDir, 'binding.gyp'))) finish(false, 'native engine not built (native/binding.gyp is missing)');
const gyp = findNodeGyp();
if (!gyp) finish(false, 'native engine not built (node-gyp not found; it ships with npm); tunelab uses the wasm engine');
const nodedir = findNodeDir();
if (!nodedir) finish(false, `native engine not built (no Node headers with node_api.h next to ${process.execPath} or in /usr/include/node); tunelab uses the wasm engine`);

// node-gyp rebuild deletes native/build first: keep the working addon's bytes, so a failed rebuild puts it back
// instead of leaving tunelab without one.
const previous = fs.existsSync(output) ? fs.readFileSync(output) : undefined;
function restorePrevious() {
  if (!previous || fs.existsSync(output)) return '';
  fs.mkdirSync(path.dirname(output), { recursive: true });
  const tmp = `${output}.restore-${process.pid}`;
  fs.writeFileSync(tmp, previous);
  fs.chmodSync(tmp, 0o755);
  fs.renameSync(tmp, output);
  return '; the previous build is kept';
}

const result = spawnSync(process.execPath, [gyp, 'rebuild', `--directory=${nativeDir}`, `--nodedir=${nodedir}`], {
  stdio: verbose ? 'inherit' : 'pipe',
  encoding: 'utf8',
  timeout: 300_000,
  env: { ...process.env, npm_config_offline: 'true' },
});
if (result.error || result.status !== 0) {
  const text = `${result.stderr || ''}${result.stdout || ''}`;
  // The most telling line: a compiler error, else node-gyp's own "Error: …", else its exit status.
  const lines = text.split('\n');
  const line = lines.find((l) => /(fatal )?error:/.test(l) && !/^gyp/.test(l)) || lines.find((l) => /Error:/.test(l));
  const why = result.error ? result.error.message : (line || `node-gyp exited with ${result.status}`).replace(/^gyp ERR! (stack )?/, '').trim();
  const kept = restorePrevious();
  finish(false, `native engine not built (${why.slice(0, 200)})${kept || '; tunelab uses the wasm engine'}; retry with npm run build:native`);
}
try {
  const addon = require(output);
  finish(true, `native engine built (${path.relative(root, output)}, ${addon.isa()} kernels on this CPU)`);
} catch (e) {
  finish(false, `native engine built but does not load (${String(e && e.message).split('\n')[0]}); tunelab uses the wasm engine`);
}

/**
 * Load test of `tunelab serve` over loopback: a fixed number of completion requests sent by a fixed
 * number of concurrent clients, non-streamed and streamed, against the shipped base `tiny-llama`.
 *
 * The server runs as a child process (`tsx src/cli.ts serve … --port 0`), so the load generator's
 * JSON and SSE parsing does not steal time from generation. Reports requests/s, completion tokens/s,
 * latency p50/p90/p99 and, streamed, time to first token (first content delta). Greedy decoding, so
 * every run does the same work; requests may end early at <|endoftext|> (tokens/s counts what ran).
 *
 * Run: `npm run -s bench:serve` (= `npx tsx bench/serve.ts`; about 30 s on 2 vCPUs). Options:
 *   --requests n      requests per phase (default 50)
 *   --concurrency c   clients sending at once (default 4)
 *   --max-tokens m    max_tokens per request (default 16)
 *   --model dir       model folder (default models/tiny-llama)
 *
 * Prints one JSON object on stdout; progress goes to stderr.
 */
import { ChildProcess, spawn } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import { logger, round } from './common';

const root = path.join(__dirname, '..');
const prompts = [
  'To loop over the files in a directory,', 'The history of the river', 'Once upon a time', 'A good way to learn', 'In the morning the',
  'The function returns', 'She opened the door and', 'Numbers are', 'The best thing about', 'When the program starts,',
];

interface Options {
  requests: number;
  concurrency: number;
  maxTokens: number;
  model: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { requests: 50, concurrency: 4, maxTokens: 16, model: path.join(root, 'models', 'tiny-llama') };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    const int = () => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be an integer ≥ 1`);
      return n;
    };
    if (flag === '--requests') o.requests = int();
    else if (flag === '--concurrency') o.concurrency = int();
    else if (flag === '--max-tokens') o.maxTokens = int();
    else if (flag === '--model') o.model = value();
    else if (flag === '--help' || flag === '-h') {
      process.stderr.write('usage: tsx bench/serve.ts [--requests 50] [--concurrency 4] [--max-tokens 16] [--model models/tiny-llama]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${flag} (try --help)`);
  }
  return o;
}

const log = logger('bench:serve');

/** Nearest-rank percentiles (and mean) of `xs`, in ms. */
function summary(xs: number[]): { p50: number; p90: number; p99: number; mean: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { p50: round(at(50)), p90: round(at(90)), p99: round(at(99)), mean: round(s.reduce((a, b) => a + b, 0) / s.length) };
}

async function startServer(model: string): Promise<{ child: ChildProcess; url: string }> {
  const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
  const child = spawn(tsx, [path.join(root, 'src', 'cli.ts'), 'serve', model, '--port', '0', '--quiet'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += d;
      const m = /at (http:\/\/\S+)\/v1/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
  });
  return { child, url };
}

interface Sample {
  latencyMs: number;
  ttftMs?: number;
  completionTokens: number;
}

/** One request; streamed ones time the first content delta and count tokens from the usage chunk. */
async function request(url: string, prompt: string, maxTokens: number, streamed: boolean): Promise<Sample> {
  const body = { prompt, max_tokens: maxTokens, temperature: 0, ...(streamed ? { stream: true, stream_options: { include_usage: true } } : {}) };
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  if (!streamed) {
    const j = (await r.json()) as { usage: { completion_tokens: number } };
    return { latencyMs: performance.now() - t0, completionTokens: j.usage.completion_tokens };
  }
  let ttft: number | undefined;
  let tokens = 0;
  let buf = '';
  const decoder = new TextDecoder();
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(part, { stream: true });
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, end);
      buf = buf.slice(end + 2);
      if (line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (ttft === undefined && chunk.choices[0]?.text) ttft = performance.now() - t0;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return { latencyMs: performance.now() - t0, ttftMs: ttft, completionTokens: tokens };
}

/** `requests` requests from `concurrency` clients, each sending its next request when the last ends. */
async function phase(url: string, o: Options, streamed: boolean, concurrency = o.concurrency) {
  const samples: Sample[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < o.requests) {
      const i = next++;
      samples.push(await request(url, prompts[i % prompts.length], o.maxTokens, streamed));
    }
  }));
  const wallS = (performance.now() - t0) / 1000;
  const tokens = samples.reduce((a, s) => a + s.completionTokens, 0);
  const ttfts = samples.map((s) => s.ttftMs).filter((t): t is number => t !== undefined);
  return {
    streamed, requests: samples.length, concurrency, wallS: round(wallS, 2), requestsPerS: round(samples.length / wallS, 2),
    completionTokens: tokens, completionTokensPerS: round(tokens / wallS), latencyMs: summary(samples.map((s) => s.latencyMs)),
    ...(streamed ? { ttftMs: summary(ttfts) } : {}),
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  log(`starting server on ${o.model}`);
  const { child, url } = await startServer(o.model);
  try {
    log(`warm-up at ${url}`);
    for (let i = 0; i < 3; i++) await request(url, prompts[i], o.maxTokens, i % 2 === 1);
    log(`${o.requests} non-streamed requests, concurrency ${o.concurrency}`);
    const plain = await phase(url, o, false);
    log(`${o.requests} streamed requests, concurrency ${o.concurrency}`);
    const streamed = await phase(url, o, true);
    log(`${o.requests} streamed requests, concurrency 1 (no queueing)`);
    const single = await phase(url, o, true, 1);
    const result = {
      bench: 'serve', model: path.relative(root, path.resolve(o.model)) || o.model, maxTokens: o.maxTokens, node: process.version,
      cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, phases: [plain, streamed, single],
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    await exited;
  }
}

main().catch((e) => {
  process.stderr.write(`bench:serve: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

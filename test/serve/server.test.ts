import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, generate } from '../../src/model';
import type { GenerateOptions } from '../../src/model';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';
import { base } from '../../src/lab/base';
import { chatmlTemplate } from '../../src/data/chat';
import { encodeChat } from '../../src/data/tokenize';
import { peft } from '../../src/peft/peft';
import { addLora } from '../../src/peft/lora';
import { saveAdapter } from '../../src/peft/io';
import { createServer, ModelServer } from '../../src/serve/server';
import { engineReady } from '../helpers';

const root = path.join(__dirname, '..', '..');
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function post(url: string, body: unknown): Promise<{ status: number; json: Json }> {
  const r = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Json };
}

/** Posts a streaming request; returns the parsed `data:` events (the last one must be [DONE]). */
async function stream(url: string, body: Json): Promise<{ events: Json[]; raw: string; contentType: string | null }> {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(r.status, 200);
  const raw = await r.text();
  const lines = raw.split('\n\n').filter((l) => l !== '');
  assert.ok(lines.every((l) => l.startsWith('data: ')), raw);
  assert.equal(lines.at(-1), 'data: [DONE]');
  return { events: lines.slice(0, -1).map((l) => JSON.parse(l.slice(6)) as Json), raw, contentType: r.headers.get('content-type') };
}

function assertError(r: { status: number; json: Json }, status: number, param?: string | null): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  const e = r.json.error;
  assert.ok(e && typeof e.message === 'string' && e.message.length > 0, JSON.stringify(r.json));
  assert.equal(typeof e.type, 'string');
  assert.ok('param' in e && 'code' in e);
  if (param !== undefined) assert.equal(e.param, param);
}

describe('serve: OpenAI-compatible server', function () {
  this.timeout(120_000);
  let model: CausalLM;
  let tok: Tokenizer;
  let eos: number;
  let imEnd: number;
  let server: ModelServer;
  let url: string;
  let tmp: string;
  let adapterDir: string;

  /** What the server must answer: generate() with `adapter` (or none) active, decoded as the server does. */
  function expected(prompt: number[], o: Partial<GenerateOptions>, adapter?: string, stops = [eos]) {
    if (adapter) peft(model).use(adapter);
    else peft(model).disable();
    const out = generate(model, prompt, { stopTokens: stops, ...o });
    const stopped = stops.includes(out.at(-1)!);
    return { text: tok.decode(stopped ? out.slice(0, -1) : out, { skipSpecialTokens: true }), finish: stopped ? 'stop' : 'length', tokens: out.length };
  }

  before(async () => {
    await engineReady();
    ({ model, tokenizer: tok } = await base('tiny-llama'));
    eos = tok.specialTokens.eos!.id;
    imEnd = tok.specialTokens.imEnd!.id;
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-serve-'));
    // A LoRA with random, non-zero B (initLoraWeights false), saved and detached again: the server loads it.
    adapterDir = path.join(tmp, 'faq');
    addLora(model, { r: 4, alpha: 32, initLoraWeights: false, seed: 3, targetModules: ['q_proj', 'v_proj', 'o_proj'] }, 'scratch');
    await saveAdapter(model, adapterDir, 'scratch');
    peft(model).remove('scratch');
    server = createServer({ model, tokenizer: tok, modelName: 'tiny-llama', adapters: { faq: adapterDir } });
    url = await server.listen(0);
  });

  after(async () => {
    await server?.close();
    model?.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('lists the base model and adapters', async () => {
    const r = await fetch(`${url}/v1/models`);
    assert.equal(r.status, 200);
    const j = (await r.json()) as Json;
    assert.equal(j.object, 'list');
    assert.deepEqual(j.data.map((m: Json) => [m.id, m.object, m.owned_by]), [['tiny-llama', 'model', 'tunelab'], ['tiny-llama:faq', 'model', 'tunelab']]);
    const one = (await (await fetch(`${url}/v1/models/tiny-llama:faq`)).json()) as Json;
    assert.equal(one.id, 'tiny-llama:faq');
  });

  it('greedy completion equals generate(), with usage and finish_reason', async () => {
    const prompt = 'To loop over the files in a directory,';
    const ids = tok.encode(prompt);
    const want = expected(ids, { maxNewTokens: 16 });
    const r = await post(`${url}/v1/completions`, { model: 'tiny-llama', prompt, temperature: 0 });
    assert.equal(r.status, 200);
    const j = r.json;
    assert.equal(j.object, 'text_completion');
    assert.match(j.id, /^cmpl-/);
    assert.equal(j.model, 'tiny-llama');
    assert.equal(typeof j.created, 'number');
    assert.deepEqual(j.choices, [{ text: want.text, index: 0, logprobs: null, finish_reason: want.finish }]);
    assert.deepEqual(j.usage, { prompt_tokens: ids.length, completion_tokens: want.tokens, total_tokens: ids.length + want.tokens });
    // Default max_tokens is 16 (OpenAI); an array of one prompt is the same request.
    assert.equal(want.tokens, 16);
    const arr = await post(`${url}/v1/completions`, { prompt: [prompt], temperature: 0 });
    assert.equal(arr.json.choices[0].text, want.text);
  });

  it('max_tokens ends with finish_reason length and exact usage', async () => {
    const ids = tok.encode('The history of');
    const r = await post(`${url}/v1/completions`, { prompt: 'The history of', max_tokens: 5, temperature: 0 });
    assert.equal(r.json.choices[0].finish_reason, 'length');
    assert.deepEqual(r.json.usage, { prompt_tokens: ids.length, completion_tokens: 5, total_tokens: ids.length + 5 });
    assert.equal(r.json.choices[0].text, expected(ids, { maxNewTokens: 5 }).text);
  });

  it('stop strings end the text without including it, also when streamed', async () => {
    const prompt = 'To loop over the files in a directory,';
    const full = expected(tok.encode(prompt), { maxNewTokens: 24 }).text;
    const stop = full.trim().split(/\s+/)[2]; // a word from the middle of the greedy text
    const cut = full.indexOf(stop);
    assert.ok(cut > 0, full);
    const body = { prompt, max_tokens: 24, temperature: 0, stop: [stop, 'never-appears'] };
    const r = await post(`${url}/v1/completions`, body);
    assert.equal(r.json.choices[0].text, full.slice(0, cut));
    assert.equal(r.json.choices[0].finish_reason, 'stop');
    assert.ok(r.json.usage.completion_tokens < 24);
    const s = await stream(`${url}/v1/completions`, body);
    assert.equal(s.events.map((e) => e.choices[0].text).join(''), full.slice(0, cut));
    assert.equal(s.events.at(-1)!.choices[0].finish_reason, 'stop');
    const single = await post(`${url}/v1/completions`, { ...body, stop });
    assert.equal(single.json.choices[0].text, full.slice(0, cut));
  });

  it('seeded sampling is reproducible and equals generate() with that seed', async () => {
    const prompt = 'Once upon a time';
    const body = { prompt, max_tokens: 12, temperature: 0.9, top_p: 0.95, seed: 7 };
    const [a, b] = [await post(`${url}/v1/completions`, body), await post(`${url}/v1/completions`, body)];
    assert.equal(a.json.choices[0].text, b.json.choices[0].text);
    const want = expected(tok.encode(prompt), { maxNewTokens: 12, doSample: true, temperature: 0.9, topP: 0.95, seed: 7 });
    assert.equal(a.json.choices[0].text, want.text);
    const others = await Promise.all([1, 2, 3].map((seed) => post(`${url}/v1/completions`, { ...body, seed })));
    assert.ok(new Set([a, ...others].map((r) => r.json.choices[0].text)).size > 1, 'different seeds give different samples');
  });

  it('chat completion renders ChatML and matches generate() up to <|im_end|> or the length', async () => {
    const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'What is a directory?' }];
    const ids = encodeChat(tok, chatmlTemplate.render(messages as never, { addGenerationPrompt: true })).ids;
    const want = expected(ids, { maxNewTokens: 20 }, undefined, [eos, imEnd]);
    const r = await post(`${url}/v1/chat/completions`, { model: 'tiny-llama', messages, max_completion_tokens: 20, temperature: 0 });
    assert.equal(r.status, 200);
    const j = r.json;
    assert.equal(j.object, 'chat.completion');
    assert.match(j.id, /^chatcmpl-/);
    assert.deepEqual(j.choices, [{ index: 0, message: { role: 'assistant', content: want.text }, logprobs: null, finish_reason: want.finish }]);
    assert.deepEqual(j.usage, { prompt_tokens: ids.length, completion_tokens: want.tokens, total_tokens: ids.length + want.tokens });
    // max_tokens is the older spelling of max_completion_tokens.
    const old = await post(`${url}/v1/chat/completions`, { messages, max_tokens: 20, temperature: 0 });
    assert.equal(old.json.choices[0].message.content, want.text);
  });

  it('streams chat as OpenAI chunks that concatenate to the non-streamed text, then [DONE]', async () => {
    const body = { messages: [{ role: 'user', content: 'Tell me about rivers.' }], max_tokens: 16, temperature: 0, stream_options: { include_usage: true } };
    const plain = await post(`${url}/v1/chat/completions`, body);
    const s = await stream(`${url}/v1/chat/completions`, body);
    assert.match(s.contentType ?? '', /^text\/event-stream/);
    const [first, ...rest] = s.events;
    assert.equal(first.object, 'chat.completion.chunk');
    assert.deepEqual(first.choices[0].delta, { role: 'assistant', content: '' });
    assert.ok(s.events.every((e) => e.id === first.id && e.model === 'tiny-llama'));
    const usage = rest.pop()!;
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, plain.json.usage);
    const last = rest.pop()!;
    assert.deepEqual(last.choices[0].delta, {});
    assert.equal(last.choices[0].finish_reason, plain.json.choices[0].finish_reason);
    assert.ok(rest.length > 1 && rest.every((e) => e.choices[0].finish_reason === null));
    assert.equal(rest.map((e) => e.choices[0].delta.content).join(''), plain.json.choices[0].message.content);
    // Completions stream too.
    const cs = await stream(`${url}/v1/completions`, { prompt: 'The river', max_tokens: 10, temperature: 0 });
    const cp = await post(`${url}/v1/completions`, { prompt: 'The river', max_tokens: 10, temperature: 0 });
    assert.equal(cs.events.map((e) => e.choices[0].text).join(''), cp.json.choices[0].text);
    assert.equal(cs.events.at(-1)!.choices[0].finish_reason, 'length');
  });

  it('selects the adapter by model id or adapter field, matching generate() with it active', async () => {
    const prompt = 'To loop over the files in a directory,';
    const ids = tok.encode(prompt);
    const baseText = expected(ids, { maxNewTokens: 12 }).text;
    const want = expected(ids, { maxNewTokens: 12 }, 'faq');
    assert.notEqual(want.text, baseText, 'the adapter changes the output');
    const byId = await post(`${url}/v1/completions`, { model: 'tiny-llama:faq', prompt, max_tokens: 12, temperature: 0 });
    assert.equal(byId.json.choices[0].text, want.text);
    assert.equal(byId.json.model, 'tiny-llama:faq');
    const byField = await post(`${url}/v1/completions`, { model: 'tiny-llama', adapter: 'faq', prompt, max_tokens: 12, temperature: 0 });
    assert.equal(byField.json.choices[0].text, want.text);
    const bare = await post(`${url}/v1/completions`, { model: 'faq', prompt, max_tokens: 12, temperature: 0 });
    assert.equal(bare.json.choices[0].text, want.text);
    // The next base request switches the adapter off again.
    const after = await post(`${url}/v1/completions`, { model: 'tiny-llama', prompt, max_tokens: 12, temperature: 0 });
    assert.equal(after.json.choices[0].text, baseText);
  });

  it('answers every error class with OpenAI-style JSON and keeps serving', async () => {
    const c = `${url}/v1/completions`;
    const cases: [Promise<{ status: number; json: Json }>, number, string | null | undefined][] = [
      [post(c, '{"prompt": "x",'), 400, null],
      [post(c, '[1, 2]'), 400, undefined],
      [post(c, { model: 'nope', prompt: 'x' }), 404, 'model'],
      [post(c, { model: 'tiny-llama:nope', prompt: 'x' }), 404, 'model'],
      [post(c, { prompt: 'x', adapter: 'nope' }), 404, 'adapter'],
      [post(c, { prompt: 'x', max_tokens: 500 }), 400, 'max_tokens'],
      [post(c, { prompt: 'x', max_tokens: 0 }), 400, 'max_tokens'],
      [post(c, { prompt: 'x', max_tokens: 2.5 }), 400, 'max_tokens'],
      [post(c, { prompt: 'x', temperature: -1 }), 400, 'temperature'],
      [post(c, { prompt: 'x', temperature: '1' }), 400, 'temperature'],
      [post(c, { prompt: 'x', top_p: 1.5 }), 400, 'top_p'],
      [post(c, { prompt: 'x', n: 2 }), 400, 'n'],
      [post(c, { prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'stop'],
      [post(c, { prompt: 'x', stop: 3 }), 400, 'stop'],
      [post(c, { prompt: 'x', seed: 'abc' }), 400, 'seed'],
      [post(c, { prompt: 'x', stream: 'yes' }), 400, 'stream'],
      [post(c, { prompt: ['a', 'b'] }), 400, 'prompt'],
      [post(c, { prompt: 'word '.repeat(200) }), 400, 'prompt'],
      [post(c, {}), 400, 'prompt'],
      [post(`${url}/v1/chat/completions`, { messages: [] }), 400, 'messages'],
      [post(`${url}/v1/chat/completions`, { messages: [{ role: 'robot', content: 'hi' }] }), 400, 'messages[0].role'],
      [post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 5 }] }), 400, 'messages[0].content'],
      [post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 1000 }), 400, 'max_completion_tokens'],
      [post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 }), 400, 'max_tokens'],
      [post(`${url}/v1/nothing`, {}), 404, null],
      [fetch(`${url}/v1/completions`).then(async (r) => ({ status: r.status, json: (await r.json()) as Json })), 405, null],
      [fetch(`${url}/v1/models`, { method: 'DELETE' }).then(async (r) => ({ status: r.status, json: (await r.json()) as Json })), 405, null],
      [fetch(`${url}/v1/models/nope`).then(async (r) => ({ status: r.status, json: (await r.json()) as Json })), 404, 'model'],
      // Oversized body with a Content-Length: refused before it is read.
      [post(c, JSON.stringify({ prompt: 'x'.repeat(1.5 * 1024 * 1024) })), 413, null],
    ];
    for (const [p, status, param] of cases) assertError(await p, status, param);
    // Oversized chunked body (no Content-Length): refused while reading.
    const chunked = await new Promise<{ status: number; json: Json }>((resolve, reject) => {
      const req = http.request(c, { method: 'POST' }, (res) => {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) as Json }));
      });
      req.on('error', reject);
      const piece = Buffer.alloc(64 * 1024, 'a');
      let sent = 0;
      const pump = () => {
        while (sent < 2 * 1024 * 1024) {
          sent += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assertError(chunked, 413, null);
    const ok = await post(c, { prompt: 'Still', max_tokens: 2 });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.usage.completion_tokens, 2);
  });

  it('queues concurrent requests: all complete with the results of running them alone', async () => {
    const jobs = [
      { prompt: 'The cat', model: 'tiny-llama', adapter: undefined },
      { prompt: 'A river is', model: 'tiny-llama:faq', adapter: 'faq' },
      { prompt: 'In the morning', model: 'tiny-llama', adapter: undefined },
      { prompt: 'To loop over', model: 'tiny-llama:faq', adapter: 'faq', stream: true },
      { prompt: 'Numbers are', model: 'tiny-llama', adapter: undefined, stream: true },
    ];
    const want = jobs.map((j) => expected(tok.encode(j.prompt), { maxNewTokens: 10 }, j.adapter).text);
    const got = await Promise.all(jobs.map(async (j) => {
      const body = { model: j.model, prompt: j.prompt, max_tokens: 10, temperature: 0 };
      if (j.stream) return (await stream(`${url}/v1/completions`, body)).events.map((e) => e.choices[0].text).join('');
      const r = await post(`${url}/v1/completions`, body);
      assert.equal(r.status, 200);
      return r.json.choices[0].text as string;
    }));
    assert.deepEqual(got, want);
  });

  describe('on a small random model with a scripted head', () => {
    // The output head is forced (through the model's linear hook) to emit `script`, then <|im_end|>.
    let small: CausalLM;
    let srv: ModelServer;
    let surl: string;
    let script: number[] = [];
    let step = 0;
    let delayMs = 0; // a slow head, so that a test can act while generation runs
    before(async () => {
      small = CausalLM.create({ family: 'llama', vocabSize: tok.vocabSize, dModel: 16, nLayers: 1, nHeads: 2, dFf: 32, contextLength: 64, tieEmbeddings: false }, { seed: 5 });
      small.hooks.linear.set('lm_head', (x, inner) => {
        const id = step < script.length ? script[step] : imEnd;
        step++;
        for (const end = Date.now() + delayMs; Date.now() < end;);
        return tf.add(inner(x), tf.mul(tf.oneHot(tf.tensor1d([id], 'int32'), tok.vocabSize), 1e4)) as tf.Tensor2D;
      });
      srv = createServer({ model: small, tokenizer: tok, modelName: 'small', maxQueue: 1 });
      surl = await srv.listen(0);
    });
    after(async () => {
      await srv?.close();
      small?.dispose();
    });

    it('stops at <|im_end|> (not in the text, counted in usage) and never splits a UTF-8 character when streaming', async () => {
      const text = 'ok 🙂 naïve — 日本';
      script = tok.encode(text);
      assert.ok(script.length > [...text].length - 2, 'multi-byte characters take several byte tokens');
      step = 0;
      const plain = await post(`${surl}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], temperature: 0 });
      assert.equal(plain.json.choices[0].message.content, text);
      assert.equal(plain.json.choices[0].finish_reason, 'stop');
      assert.equal(plain.json.usage.completion_tokens, script.length + 1);
      step = 0;
      const s = await stream(`${surl}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], temperature: 0 });
      const deltas = s.events.slice(1, -1).map((e) => e.choices[0].delta.content as string);
      assert.ok(deltas.every((d) => d.length > 0 && !d.includes('\uFFFD')), JSON.stringify(deltas));
      assert.equal(deltas.join(''), text);
      assert.equal(s.events.at(-1)!.choices[0].finish_reason, 'stop');
    });

    it('stops generating when a streaming client disconnects', async () => {
      script = tok.encode('one word after another '.repeat(20)).slice(0, 60);
      step = 0;
      delayMs = 5;
      const ac = new AbortController();
      const r = await fetch(`${surl}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'a', max_tokens: 60, stream: true }), signal: ac.signal });
      const reader = r.body!.getReader();
      await reader.read(); // the first token's chunk
      ac.abort();
      await new Promise((res) => setTimeout(res, 500));
      delayMs = 0;
      assert.ok(step < 30, `generation went on for ${step} tokens`);
      assert.equal((await post(`${surl}/v1/completions`, { prompt: 'a', max_tokens: 2 })).status, 200);
    });

    it('refuses with 429 beyond maxQueue waiting requests, and recovers', async () => {
      script = [];
      // The head emits <|im_end|> at once for chat, but completions don't stop there: 40 tokens each.
      const rs = await Promise.all([0, 1, 2, 3].map(() => post(`${surl}/v1/completions`, { prompt: 'a', max_tokens: 40, temperature: 0 })));
      const codes = rs.map((r) => r.status).sort();
      assert.deepEqual(codes.filter((c) => c === 200).length >= 2 && codes.every((c) => c === 200 || c === 429), true, String(codes));
      assert.ok(codes.includes(429), String(codes));
      const busy = rs.find((r) => r.status === 429)!;
      assertError(busy, 429, null);
      assert.equal((await post(`${surl}/v1/completions`, { prompt: 'a', max_tokens: 2 })).status, 200);
    });
  });

  it('close() lets running requests finish, removes the adapters it loaded and leaves the model usable', async () => {
    const extra = createServer({ model, tokenizer: tok, modelName: 'tiny-llama', adapters: { faq2: adapterDir } });
    const extraUrl = await extra.listen(0);
    assert.ok(peft(model).has('faq2'));
    const pending = post(`${extraUrl}/v1/completions`, { model: 'tiny-llama:faq2', prompt: 'The cat', max_tokens: 8, temperature: 0 });
    await new Promise((r) => setTimeout(r, 50)); // the request is in the server before close
    await extra.close();
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].text, expected(tok.encode('The cat'), { maxNewTokens: 8 }, 'faq').text, 'faq2 = faq (same folder)');
    assert.ok(!peft(model).has('faq2') && peft(model).has('faq'));
    assert.equal(generate(model, tok.encode('The cat'), { maxNewTokens: 2 }).length, 2);
    await assert.rejects(fetch(`${extraUrl}/v1/models`));
    // The main server is unaffected.
    assert.equal((await fetch(`${url}/v1/models`)).status, 200);
  });

  it('tunelab serve: CLI serves a checkpoint with --adapter and stops on SIGINT', async () => {
    const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
    const child = spawn(tsx, [path.join(root, 'src', 'cli.ts'), 'serve', path.join(root, 'models', 'tiny-llama'), '--port', '0', '--adapter', `faq=${adapterDir}`, '--quiet'], { cwd: root });
    try {
      let stderr = '';
      const cliUrl = await new Promise<string>((resolve, reject) => {
        child.stderr.on('data', (d) => {
          stderr += d;
          const m = /at (http:\/\/\S+)\/v1/.exec(stderr);
          if (m) resolve(m[1]);
        });
        child.on('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });
      const models = (await (await fetch(`${cliUrl}/v1/models`)).json()) as Json;
      assert.deepEqual(models.data.map((m: Json) => m.id), ['tiny-llama', 'tiny-llama:faq']);
      const r = await post(`${cliUrl}/v1/completions`, { model: 'tiny-llama:faq', prompt: 'To loop over the files in a directory,', max_tokens: 12, temperature: 0 });
      assert.equal(r.json.choices[0].text, expected(tok.encode('To loop over the files in a directory,'), { maxNewTokens: 12 }, 'faq').text);
      const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.kill('SIGINT');
      assert.equal(await exit, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

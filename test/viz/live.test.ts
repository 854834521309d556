import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PassThrough } from 'stream';
import { RecordingSink, liveLossChart, liveMetricsChart, metricsChart, progress, progressHtml } from '../../src/viz';
import { FakeTrainer, metrics, specOf, textOf } from './helpers';

/** A clock the test moves: `advance(ms)`. */
function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe('viz live views', () => {
  it('live loss chart: one display and updates that all carry the same display id, no plotly.js bundle', async () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 3 });
    const clock = fakeClock();
    const live = liveLossChart(trainer, { sink, now: clock.now });
    for (let s = 1; s <= 3; s++) {
      clock.advance(1000);
      trainer.step(metrics(s, 3));
    }
    trainer.end();
    const rest = sink.messages;
    assert.ok(rest.every((m) => !textOf(m.data['text/html']).includes('inlined by tunelab')));
    // Updates carry the Plotly figure; only the last render (at 'end') also carries the static picture.
    assert.ok(rest.every((m) => m.data['application/vnd.plotly.v1+json']));
    assert.deepEqual(rest.map((m) => 'image/svg+xml' in m.data), [false, false, false, false, true]);
    assert.match(textOf(rest.at(-1)!.data['text/html']), /<img class="tunelab-static"/);
    assert.deepEqual(rest.map((m) => m.type), ['display_data', 'update_display_data', 'update_display_data', 'update_display_data', 'update_display_data']);
    assert.ok(rest.every((m) => m.displayId === live.display!.id));
    assert.equal(live.updates, 5);
    await Promise.resolve();
    assert.equal(trainer.listenerCount(), 0, 'stops listening at end');
    live.stop(); // a second stop removes nothing else
  });

  it('live metrics chart: one panel per named step metric, redrawn in place', () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 2 });
    const live = liveMetricsChart(trainer, ['objective/kl', 'loss'], { sink });
    trainer.step({ ...metrics(1, 2), 'objective/kl': 0.5 } as never);
    trainer.step({ ...metrics(2, 2), 'objective/kl': 0.7 } as never);
    trainer.end();
    const spec = specOf(sink.messages.filter((m) => m.displayId === live.display!.id).at(-1)!.data['text/html']);
    assert.deepEqual(spec.data.map((t) => [t.name, t.y]), [['objective/kl', [0.5, 0.7]], ['loss', [metrics(1, 2).loss, metrics(2, 2).loss]]]);
    assert.throws(() => metricsChart([], []), /at least one metric/);
  });

  it('a chart and a progress bar on one trainer both see end (listeners leave only after the event)', async () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 1 });
    const other: string[] = [];
    const live = liveLossChart(trainer, { sink });
    const bar = progress(trainer, { sink });
    trainer.on('end', () => other.push('end'));
    trainer.step(metrics(1, 1));
    trainer.end();
    assert.deepEqual(other, ['end']);
    const last = (id: string) => textOf(sink.messages.filter((m) => m.displayId === id).at(-1)!.data['text/html']);
    assert.match(last(bar.display!.id), /done in/);
    assert.deepEqual(specOf(last(live.display!.id)).data[0].x, [1]);
    await Promise.resolve();
    assert.equal(trainer.listenerCount(), 1);
  });

  it('throttles 2,000 steps to a bounded number of updates and draws the final state at end', () => {
    const sink = new RecordingSink();
    const total = 2000;
    const trainer = new FakeTrainer({ maxSteps: total });
    const clock = fakeClock();
    liveLossChart(trainer, { sink, now: clock.now }); // default: ≤ 4 redraws per second
    for (let s = 1; s <= total; s++) {
      clock.advance(10); // 100 steps/s → 20 s of training
      trainer.step(metrics(s, total));
      if (s % 500 === 0) trainer.eval({ step: s, evalLoss: 3 - s / 1000, perplexity: 1 });
    }
    trainer.end();
    const live = sink.messages.filter((m) => m.displayId);
    assert.ok(live.length <= 20 * 4 + 2, `${live.length} renders for 20 s`);
    assert.ok(live.length >= 20 * 4 - 4, `${live.length} renders: throttled, not starved`);
    const final = specOf(live.at(-1)!.data['text/html']);
    const train = final.data.find((t) => t.name === 'train loss')!;
    assert.equal((train.x as number[]).at(-1), total);
    assert.equal((train.y as number[]).at(-1), metrics(total, total).loss);
    assert.equal((train.x as number[]).length, total);
    assert.deepEqual(final.data.find((t) => t.name === 'eval loss')!.x, [500, 1000, 1500, 2000]);
  });

  it('every: n steps limits redraws even with a generous time budget', () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 100 });
    const clock = fakeClock();
    const live = liveLossChart(trainer, { sink, now: clock.now, every: 25, throttleMs: 0 });
    for (let s = 1; s <= 100; s++) {
      clock.advance(1000);
      trainer.step(metrics(s, 100));
    }
    trainer.end();
    assert.equal(live.updates, 1 + 4 + 1); // first display, steps 25/50/75/100, end
  });

  it('a skipped redraw is drawn when the throttle window ends (a pause in training still shows the last step)', async () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 10 });
    const live = liveLossChart(trainer, { sink, throttleMs: 40 });
    trainer.step(metrics(1, 10));
    trainer.step(metrics(2, 10));
    const before = live.updates;
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(live.updates, before + 1);
    const spec = specOf(sink.messages.at(-1)!.data['text/html']);
    assert.deepEqual(spec.data[0].x, [1, 2]);
    live.stop();
  });

  it('in a script nothing is drawn live; saveTo writes the final chart', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-live-'));
    try {
      const sink = new RecordingSink('terminal');
      const trainer = new FakeTrainer({ maxSteps: 2 });
      const live = liveLossChart(trainer, { sink, saveTo: path.join(dir, 'loss.html') });
      trainer.step(metrics(1, 2));
      trainer.step(metrics(2, 2));
      trainer.end();
      assert.equal(sink.messages.length, 0);
      assert.equal(live.display, undefined);
      assert.deepEqual(specOf(fs.readFileSync(path.join(dir, 'loss.html'), 'utf8')).data[0].x, [1, 2]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resumed runs draw earlier steps too', () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 4 });
    trainer.history.push(metrics(1, 4), metrics(2, 4));
    const live = liveLossChart(trainer, { sink });
    assert.deepEqual(live.chart().spec.data[0].x, [1, 2]);
  });

  it('notebook progress: an HTML bar in one display, throttled, finished at end', () => {
    const sink = new RecordingSink();
    const trainer = new FakeTrainer({ maxSteps: 2000 });
    const clock = fakeClock();
    const handle = progress(trainer, { sink, now: clock.now });
    for (let s = 1; s <= 2000; s++) {
      clock.advance(10);
      trainer.step(metrics(s, 2000));
    }
    trainer.eval({ step: 2000, evalLoss: 1.25, perplexity: 3.49 });
    trainer.end();
    assert.ok(sink.messages.every((m) => m.displayId === handle.display!.id));
    assert.equal(sink.messages.filter((m) => m.type === 'display_data').length, 1);
    assert.ok(sink.messages.length <= 20 * 4 + 3, `${sink.messages.length} renders`);
    const last = textOf(sink.messages.at(-1)!.data['text/html']);
    assert.match(last, /2,000\/2,000 steps/);
    assert.match(last, /eval loss 1\.2500/);
    assert.match(last, /done in 16m40s/);
    assert.match(last, /width:100\.0%/);
    assert.doesNotMatch(last, /<script/);
  });

  it('progress in a script writes the terminal bar', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const trainer = new FakeTrainer({ maxSteps: 50 });
    progress(trainer, { sink: new RecordingSink('terminal'), out: out as unknown as NodeJS.WriteStream });
    for (let s = 1; s <= 50; s++) trainer.step(metrics(s, 50));
    trainer.end();
    assert.deepEqual(text.trim().split('\n').map((l) => l.split(' ')[1]), ['25/50', '50/50']);
  });

  it('progressHtml shows a waiting state and the fraction done', () => {
    assert.match(progressHtml(undefined, 10), /0\/10 steps · waiting for the first step/);
    assert.match(progressHtml(metrics(5, 10), 10), /width:50\.0%/);
  });
});

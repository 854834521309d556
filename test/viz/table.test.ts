import { strict as assert } from 'assert';
import * as aq from 'arquero';
import { RecordingSink, showTable, tableHtml } from '../../src/viz';
import { textOf } from './helpers';

describe('viz tables', () => {
  const table = aq.table({
    'a<b>': ['x<y&z', '<script>alert(1)</script>', 'long '.repeat(100), 'd'],
    n: [1.5, 2, 3, 4],
  });

  it('renders an arquero table as HTML with escaped names and cells', () => {
    const html = tableHtml(table, { limit: 3, maxChars: 20 });
    assert.match(html, /<th[^>]*>a&lt;b&gt;<\/th>/);
    assert.match(html, /x&lt;y&amp;z/);
    assert.doesNotMatch(html, /<script|<b>/);
    assert.match(html, /rows 1–3 of 4 × 2 columns/);
    assert.ok(html.includes(`${'long '.repeat(4)}…`), 'long strings are cut');
    assert.equal(html.match(/<tr/g)?.length, 4, 'header + 3 rows');
    assert.match(html, /<td[^>]*>1\.5<\/td>/);
  });

  it('offset, columns and empty pages', () => {
    assert.match(tableHtml(table, { offset: 2, limit: 5, columns: ['n'] }), /rows 3–4 of 4 × 1 column</);
    assert.match(tableHtml(table.filter(() => false)), /no rows of 0/);
  });

  it('showTable sends HTML and a text version to the sink', () => {
    const sink = new RecordingSink();
    showTable(table, { sink, limit: 2 });
    assert.equal(sink.messages.length, 1);
    const data = sink.messages[0].data;
    assert.match(textOf(data['text/html']), /tunelab-table/);
    assert.match(textOf(data['text/plain']), /^\|a<b>\|n\|/);
    assert.match(textOf(data['text/plain']), /rows 1–2 of 4/);
  });
});

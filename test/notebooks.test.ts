import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';

const dir = path.join(__dirname, '..', 'notebooks');

describe('notebooks', () => {
  const notebooks = fs.readdirSync(dir).filter((f) => f.endsWith('.ipynb'));

  it('exist, use the tunelab kernel and are committed without outputs', () => {
    assert.ok(notebooks.includes('01-quickstart.ipynb'));
    for (const nb of notebooks) {
      const json = JSON.parse(fs.readFileSync(path.join(dir, nb), 'utf8'));
      assert.equal(json.metadata.kernelspec.name, 'tunelab', nb);
      for (const [i, cell] of json.cells.entries()) {
        if (cell.cell_type !== 'code') continue;
        assert.deepEqual(cell.outputs, [], `${nb} cell ${i} has outputs: strip them`);
        assert.equal(cell.execution_count, null, `${nb} cell ${i} has an execution count`);
      }
    }
  });

  it('import tunelab by its package name only (the public API)', () => {
    for (const nb of notebooks) {
      const src = JSON.parse(fs.readFileSync(path.join(dir, nb), 'utf8')).cells.map((c: { source: string[] }) => c.source.join('')).join('\n');
      assert.match(src, /from 'tunelab'/, nb);
      assert.doesNotMatch(src, /from '\.\.?\/(src|dist)/, `${nb} reaches into the sources`);
    }
  });

  it('do not inline plotly.js (charts load it from the kernelspec; executed copies stay small)', () => {
    for (const nb of notebooks) {
      const src = JSON.parse(fs.readFileSync(path.join(dir, nb), 'utf8')).cells.map((c: { source: string[] }) => c.source.join('')).join('\n');
      assert.doesNotMatch(src, /loadPlotly|plotlyScript/, nb);
    }
  });
});

import { strict as assert } from 'assert';
import { lcsLength, rougeL, rougeLTokens, rougeTokens } from '../../src/eval/rouge';

describe('eval/rouge: ROUGE-L', () => {
  it('tokenizes as rouge_score without a stemmer', () => {
    assert.deepEqual(rougeTokens("Don't stop-me NOW!  é"), ['don', 't', 'stop', 'me', 'now']);
    assert.deepEqual(rougeTokens(' ... '), []);
  });

  it('LCS lengths by hand', () => {
    assert.equal(lcsLength(['a', 'b', 'c', 'd'], ['a', 'c', 'd', 'b']), 3);
    assert.equal(lcsLength([], ['a']), 0);
    assert.equal(lcsLength(['x', 'y'], ['y', 'x']), 1);
  });

  it("matches rouge_score's documented example and hand values", () => {
    // rouge_score README: scorer.score('The quick brown fox jumps over the lazy dog', 'The quick brown dog jumps on the log.')
    const s = rougeL('The quick brown dog jumps on the log.', 'The quick brown fox jumps over the lazy dog');
    assert.ok(Math.abs(s.precision - 0.625) < 1e-12 && Math.abs(s.recall - 5 / 9) < 1e-12);
    assert.ok(Math.abs(s.f1 - 0.5882352941176471) < 1e-12);
    assert.ok(Math.abs(rougeL('the cat sat on the mat', 'the cat lay on the mat').f1 - 5 / 6) < 1e-12);
    assert.deepEqual(rougeL('', 'a b'), { precision: 0, recall: 0, f1: 0 });
    assert.equal(rougeL('Same words here', 'same, words: HERE').f1, 1);
    assert.deepEqual(rougeLTokens(rougeTokens('The quick brown dog jumps on the log.'), rougeTokens('The quick brown fox jumps over the lazy dog')), s);
  });
});

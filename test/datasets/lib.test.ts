/** Unit tests of the dataset build's text helpers (no Debian packages needed). */
import { strict as assert } from 'assert';
import { findBlocked } from '../../datasets/lib/blocklist';
import { formatDocuments, parseDocuments } from '../../datasets/lib/format';
import { decodeEntities, htmlToText } from '../../datasets/lib/html';
import { missingMessage, REQUIREMENTS } from '../../datasets/lib/inputs';
import { shuffleWords } from '../../datasets/lib/pairs';
import { inlineRst, rstToText } from '../../datasets/lib/rst';
import { cleanText, hashUnit, Rng, splitSentences, trimAnswer } from '../../datasets/lib/util';
import { splitGloss } from '../../datasets/lib/wordnet';

describe('datasets helpers', () => {
  it('htmlToText: drops navigation, keeps paragraphs and code, strips listing numbers, decodes entities', () => {
    const html =
      '<html><head><title>T</title><style>p{}</style></head><body><div class="NAVHEADER"><a href="x">Prev</a></div>' +
      '<h1>Loops &amp; Branches</h1><p>A <i>loop</i>\n  is   a block.</p><ul><li><p>one</p></li><li>two</li></ul>' +
      '<pre class="PROGRAMLISTING">   1&nbsp;for a in 1 2\n   2&nbsp;do\n   3&nbsp;  echo $a\n   4&nbsp;done</pre>' +
      '<p>x &lt; y &#8212; &#x41;</p></body></html>';
    assert.equal(
      htmlToText(html, { skipClasses: ['navheader'], stripLineNumbers: true }),
      'Loops & Branches\n\nA loop is a block.\n\n- one\n\n- two\n\nfor a in 1 2\ndo\n  echo $a\ndone\n\nx < y — A',
    );
    assert.equal(htmlToText('<h2>1.1. Why?</h2><p>Because.</p>', { markHeadings: true }), '## 1.1. Why?\n\nBecause.');
    assert.equal(decodeEntities('&copy; &unknown; &#65;'), '© &unknown; A');
  });

  it('rstToText: roles, literals, directives, literal blocks, headings', () => {
    const rst = [
      'Title',
      '=====',
      '',
      '.. index:: single: foo',
      '',
      'Use :func:`len` and :meth:`~str.join`, see :pep:`8` or',
      '``x + 1`` and *this*::',
      '',
      '   >>> len("ab")',
      '   2',
      '',
      '.. function:: wrap(text, \\',
      '                   width=70)',
      '',
      '   Wraps *text*.',
      '',
      '   .. versionadded:: 3.4',
      '',
      '.. note::',
      '',
      '   Careful.',
    ].join('\n');
    assert.equal(
      rstToText(rst),
      'Title\n\nUse len() and join(), see PEP 8 or x + 1 and this:\n\n    >>> len("ab")\n    2\n\n' +
        'wrap(text, width=70)\n\nWraps text.\n\nNew in version 3.4.\n\nNote: Careful.',
    );
    assert.equal(inlineRst(':ref:`the tutorial <tut-index>` and `PSF <https://psf.org>`_'), 'the tutorial and PSF');
  });

  it('sentences, trimming and cleaning', () => {
    assert.deepEqual(splitSentences('Mr. Smith went to Washington. He said "Yes." Then U.S. troops left! Done'), [
      'Mr. Smith went to Washington.',
      'He said "Yes."',
      'Then U.S. troops left!',
      'Done',
    ]);
    assert.equal(trimAnswer('First one. Second one. Third one.', 22), 'First one. Second one.');
    assert.equal(trimAnswer('Intro.\n\nDo this:\n\n    code()\n\nThen more text that is long.', 40), 'Intro.\n\nDo this:\n\n    code()');
    assert.equal(trimAnswer('Intro.\n\nLike\n\n    code()\n\nThen more text that is long.', 30), 'Intro.');
    assert.equal(cleanText('a \r\n\r\n\r\n\r\nb\u00a0c\t \n'), 'a\n\nb c');
  });

  it('documents round-trip through the text format', () => {
    const docs = ['One\n\nTwo', '    code\n  more', 'Three'];
    assert.deepEqual(parseDocuments(formatDocuments(docs)), docs);
    assert.throws(() => formatDocuments(['a\n\n\nb']));
  });

  it('seeded helpers are deterministic', () => {
    assert.equal(hashUnit('x'), hashUnit('x'));
    assert.notEqual(hashUnit('x'), hashUnit('y'));
    const a = new Rng('s');
    const b = new Rng('s');
    assert.deepEqual([a.next(), a.next(), a.int(10)], [b.next(), b.next(), b.int(10)]);
    const s = 'The quick brown fox jumps over the lazy dog again.';
    const sh = shuffleWords(s, new Rng('t'))!;
    assert.notEqual(sh, s);
    assert.ok(sh.endsWith('.'));
    assert.deepEqual(sh.slice(0, -1).toLowerCase().split(' ').sort(), s.slice(0, -1).toLowerCase().split(' ').sort());
  });

  it('blocklist: whole words, case rules for names', () => {
    assert.equal(findBlocked('Call me Ishmael. Moby Dick is a whale.'), null);
    assert.equal(findBlocked('a class of assets'), null);
    assert.notEqual(findBlocked('what a dick'), null);
    assert.notEqual(findBlocked('The ASS brayed'), null);
  });

  it('WordNet glosses split into definition and examples', () => {
    assert.deepEqual(splitGloss('move fast by using one\'s feet; "Don\'t run--you\'ll be out of breath"; "The children ran to the store"'), {
      definition: "move fast by using one's feet",
      examples: ["Don't run--you'll be out of breath", 'The children ran to the store'],
    });
  });

  it('names the apt-get command when Debian packages are missing', () => {
    const msg = missingMessage(REQUIREMENTS.filter((r) => r.pkg === 'wordnet-base' || r.pkg === 'abs-guide'));
    assert.match(msg, /apt-get install -y bible-kjv .*wordnet-base/);
    assert.match(msg, /abs-guide, wordnet-base/);
  });
});

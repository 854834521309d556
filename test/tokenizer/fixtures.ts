/** Shared test data for the tokenizer tests: a small English corpus written for these tests. */

export const englishText = `The old lighthouse stood at the end of the harbour, and every evening the keeper climbed its
stairs to light the lamp. He had done this for thirty years, through storms and calm nights, and he
knew every step by the sound it made under his boots. The children of the village liked to watch him
from the sea wall. They counted the flashes of the light as it turned: one, two, three, and then a
long dark pause before it began again.

In the winter the ships came in early. Fishermen tied their boats to the iron rings of the quay and
carried their nets up to the sheds, where the women mended them by the stove. There was always tea,
and there was always talk: of the weather, of the price of fish, of the new road that the council had
promised and never built. Nobody believed the road would come, but everybody liked to talk about it.

One night in February a storm blew in from the north. The wind pulled slates from the roofs and the
waves broke over the sea wall and ran down the main street. The keeper climbed the stairs as he always
did, but when he reached the top he found that the glass of the lantern had cracked. He could not
light the lamp while the wind was blowing through the crack, so he took off his coat and held it over
the broken pane with both hands. He stood there for six hours, until the storm passed and the sky grew
grey with morning.

A trawler had been out that night. Her captain said afterwards that he had seen the light the whole
time, turning and turning, and that it had brought him home. When the village heard what the keeper
had done, they held a dinner for him in the hall. He did not like speeches, so he said only that the
light was his job, and that he was glad the boat was safe. Then he went home to sleep.

The council sent a man to fix the lantern, and the man stayed for a week because the weather turned
bad again. He was a quiet, careful person who liked numbers. He measured the tower (it was 31.5 metres
tall) and counted the steps (there were 142 of them) and wrote everything down in a small blue book.
Before he left he told the keeper that the lighthouse would be automatic within ten years. "It's the
way things are going," he said. "Machines don't get tired, and they don't need tea."

The keeper thought about this for a long time. He did not doubt that a machine could turn the light.
But he wondered who would hold a coat over the glass when the wind broke it, and who would stand in
the cold until morning. He decided that he would keep climbing the stairs for as long as they let him,
and that he would teach the children to count the flashes, so that someone would always be watching.
`;

/** Strings that tend to break byte-level tokenizers. */
export const trickyStrings: readonly string[] = [
  '',
  ' ',
  '   ',
  'Hello world!',
  '  leading and trailing  ',
  'line one\r\nline two\r\n',
  '\n\n\n',
  'tabs\tand\ttabs',
  "It's, they're, we'll, I'd, you've, I'm",
  'numbers 1234567890 3.14159 -42',
  'emoji 🙂👍🏽🏳️‍🌈 done',
  '日本語のテキストと中文',
  'combining e\u0301 and a\u0308 and \u0301 alone',
  'control \u0000\u0001\u0007\u001b\u007f chars',
  'zero\u200bwidth and \ufeffBOM',
  'nbsp\u00a0here and\u2028line sep',
  'a<|endoftext|>b',
  '<|im_start|>user\nhi<|im_end|>\n',
  '<|endoftext|',
  '<|pad|><|pad|>',
  'astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and \u{10ffff}',
];

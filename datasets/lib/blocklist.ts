/**
 * A small blocklist of slurs and obscenities. Instruction and preference rows (prompts and
 * answers) and WordNet synsets (lemmas and glosses) that contain one of these words are
 * dropped. Patterns are whole words (letters/digits on neither side), case-insensitive unless
 * listed in LOWERCASE_ONLY (words that are also common names, e.g. "Dick" in "Moby Dick").
 *
 * It is deliberately short and conservative: a few ambiguous words (ass, cock, coon, ...) are
 * listed because an instruction set loses nothing without them.
 */

/** Regex fragments (no flags, no anchors), matched as whole words, case-insensitive. */
export const BLOCKLIST: readonly string[] = [
  // ethnic and racial slurs
  'nigg(?:er|a|ah|az)s?', 'negro(?:e?s)?', 'negress(?:es)?', 'darkies', 'darky', 'darkie', 'chinks?', 'gooks?',
  'kikes?', 'spics?', 'spicks?', 'wetbacks?', 'japs?', 'pakis?', 'ragheads?', 'towelheads?', 'honk(?:y|ies)',
  'redskins?', 'squaws?', 'wogs?', 'dagos?', 'wops?', 'krauts?', 'polacks?', 'hymies?', 'yids?', 'sambos?',
  'pickaninn(?:y|ies)', 'golliwogs?', 'half-breeds?', 'injuns?', 'gringos?', 'mulattos?', 'mulattoes',
  'coolies?', 'gypp(?:ed|ing)', 'jew(?:ed|ing)',
  // slurs about sexuality, gender, disability
  'fag(?:s|got|gots|goty)?', 'dykes?', 'trann(?:y|ies)', 'retards?', 'retarded', 'spaz(?:zes)?', 'spastics?',
  'queers?', 'shemales?',
  // obscenities
  'fuck\\w*', 'motherfuck\\w*', 'shit(?:s|ty|ting|ted|head|heads)?', 'bullshit\\w*', 'cunts?', 'twats?',
  'bitch(?:es|y|ing)?', 'whores?', 'sluts?', 'slutty', 'asses', 'ass', 'asshole\\w*', 'arse(?:s|hole\\w*)?',
  'bastards?', 'bollocks', 'wank\\w*', 'jizz\\w*', 'tits', 'titties', 'boob(?:s|ies)', 'pussy', 'pussies',
  'piss(?:ed|ing|es)?', 'dildos?', 'blowjobs?', 'handjobs?', 'cum(?:shot)?s?', 'scrotums?', 'cocksuck\\w*',
  'damn(?:ed|ation)?', 'goddamn\\w*', 'crap(?:py)?', 'turds?', 'douche\\w*', 'pimps?', 'hookers?',
];

/** Matched as whole words, exactly as written (lower case), because the capitalised form is a name. */
export const LOWERCASE_ONLY: readonly string[] = ['dicks?', 'cocks?', 'coons?', 'peckers?', 'homos?'];

const BOUND_L = '(?<![\\p{L}\\p{N}_])';
const BOUND_R = '(?![\\p{L}\\p{N}_])';

const CI = new RegExp(`${BOUND_L}(?:${BLOCKLIST.join('|')})${BOUND_R}`, 'iu');
const CS = new RegExp(`${BOUND_L}(?:${LOWERCASE_ONLY.join('|')})${BOUND_R}`, 'u');

/**
 * Sexual topics. Not offensive in themselves (WordNet defines many such words neutrally), but
 * kept out of the instruction and preference sets, which are meant for demos of small models.
 */
export const SEXUAL_TOPIC =
  /(?<![\p{L}\p{N}_])(?:sex|sexes|sexual\w*|sexy|intercourse|erotic\w*|porn\w*|sadis\w*|masochis\w*|pedophil\w*|paedophil\w*|nymphoman\w*|incest\w*|adulter\w*|fornicat\w*|copulat\w*|genital\w*|masturbat\w*|fellatio|cunnilingus|sodom\w*|prostitut\w*|brothels?|orgasm\w*|teledildonics|lewd\w*|lust\w*|seduc\w*|harlot\w*|concubines?|whoredoms?|rapes?|raped|rapist\w*)(?![\p{L}\p{N}_])/iu;

/** The first blocklisted word or sexual-topic word in `text`, or null. */
export function findBlocked(text: string): string | null {
  const m = CI.exec(text) ?? CS.exec(text) ?? SEXUAL_TOPIC.exec(text);
  return m ? m[0] : null;
}

export function isBlocked(text: string): boolean {
  return findBlocked(text) !== null;
}

/** Number of blocklisted-word occurrences in `text` (for reporting). */
export function countBlocked(text: string): number {
  const g1 = new RegExp(CI.source, 'giu');
  const g2 = new RegExp(CS.source, 'gu');
  return (text.match(g1)?.length ?? 0) + (text.match(g2)?.length ?? 0);
}

export { Tokenizer } from './tokenizer';
export type { DecodeOptions, EncodeOptions, LoadOptions, SpecialToken, SpecialTokenRole, SpecialTokens } from './tokenizer';
export { bpeDefaults, trainBpe } from './train';
export type { BpeOptions } from './train';
export { gpt2TokenizerJson, loadGpt2Files } from './gpt2';
export { byteLevelTokenizerJson, validateTokenizerJson } from './json';
export type { AddedTokenJson, BpeModelJson, ComponentJson, TokenizerJson } from './json';
export { byteToUnicode, unicodeToByte, preTokenize, toByteLevel } from './bytes';

/**
 * tunelab: fine-tune language models on TensorFlow.js, in notebooks and scripts.
 *
 * @example
 * import * as tunelab from 'tunelab';
 * await tunelab.initEngine();                       // tfjs-node-gpu → tfjs-node → wasm → cpu
 * const tok = tunelab.Tokenizer.train([text], { vocabSize: 1024 });
 * const model = tunelab.CausalLM.create({ family: 'llama', vocabSize: tok.vocabSize });
 * const trainer = new tunelab.Trainer(model, tunelab.causalLmObjective,
 *   new tunelab.TokenWindows(tok.encode(text), 64, 16), { lr: 1e-3, maxSteps: 300 });
 * await trainer.train();
 * await tunelab.saveModel('runs/demo', model, tok);
 */
export { initEngine, ensureEngine, engine, backendOrder, patchWasmKernels, configureNative, nativeInfo, resetNative } from './engine';
export type { BackendName, EngineInfo, EngineOptions, NativeInfo, NativeIsa, NativeOptions } from './engine';
export * from './model';
export * from './tokenizer';
export * from './train';
export * from './io';
export * from './data';
export { TerminalProgress, progressLine, formatDuration } from './viz/progress';
export * as viz from './viz';
export { liveLossChart, progress, lossChart, showTable, display } from './viz';
export { Rng } from './util/rng';
export { base, shippedModels, modelsDir } from './lab/base';
export type { BaseModel } from './lab/base';
export { lab, Lab, Run } from './lab/lab';
export type { Strategy, TrackConfig } from './lab/lab';
export { dataset, datasetsDir, dataKind, toDocuments, toSftRows, toPreferenceRows, toPrompts, documentSeparator } from './lab/data';
export type { LabData, ShippedDataset } from './lab/data';
export { clearOutput } from './kernel';
export * from './eval';
export * from './peft';
export * from './rlhf';
export { createServer, serve, type ServerOptions, type ServeOptions, type ModelServer } from './serve/server';

export { saveModel, loadModel, loadModelConfig, loadWeightsInto, checkpointWriter, resumeFrom, hostParams } from './checkpoint';
export { toHfTensors, fromHfTensors, toHfConfig, fromHfConfig, transpose2d } from './hf';
export type { HostTensor } from './hf';
export * from './safetensors';
export { writeFileAtomic, writeJsonAtomic } from './atomic';
export { exportGguf, ggufBytes, parseGguf, readGguf, GgufValueType, GgmlType, GgufTokenType } from './gguf';
export type { GgufExportOptions, GgufExportResult, GgufFile, GgufTensorInfo, GgufValue } from './gguf';

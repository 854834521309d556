export { saveModel, loadModel, loadModelConfig, loadWeightsInto, checkpointWriter, resumeFrom, hostParams, RESUME_STATE_FILE } from './checkpoint';
export { toHfTensors, fromHfTensors, toHfConfig, fromHfConfig, transpose2d } from './hf';
export type { HostTensor } from './hf';
export * from './safetensors';
export { writeFileAtomic, writeJsonAtomic } from './atomic';
export { exportGguf, ggufBytes, parseGguf, readGguf, GgufValueType, GgmlType, GgufTokenType } from './gguf';
export type { GgufExportOptions, GgufExportResult, GgufFile, GgufTensorInfo, GgufValue } from './gguf';
export { SummaryWriter, crc32c, maskedCrc32c, tfRecord, eventFileName, FILE_VERSION } from './tfevents';
export type { ScalarEvent } from './tfevents';

export { saveModel, loadModel, loadModelConfig, loadWeightsInto, checkpointWriter, resumeFrom, hostParams } from './checkpoint';
export { toHfTensors, fromHfTensors, toHfConfig, fromHfConfig, transpose2d } from './hf';
export type { HostTensor } from './hf';
export * from './safetensors';
export { writeFileAtomic, writeJsonAtomic } from './atomic';

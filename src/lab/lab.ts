/**
 * The fluent notebook API: a run reads like the workflow (base model → data → strategy → method →
 * evaluate), in the style of arquero's verbs. Every verb returns a new builder, so one prefix can start
 * several runs; the training verbs (`pretrain`, `sft`) return a {@link Run}, which is itself a builder
 * for the next stage (base → domain-adapted → instruction-tuned). Each run is logged (arquero table +
 * JSONL under a run folder) so runs compare across cells, notebooks and sessions.
 *
 * @example
 * const run = await lab.base('tiny-llama').data(lab.dataset('domain')).track().pretrain({ maxSteps: 200 });
 * run.plot();
 * const chat = await run.data(lab.dataset('instructions')).freeze({ lastLayers: 2 }).sft({ epochs: 1 });
 * chat.ask('What is a tarball?');
 */
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { base as loadBase } from './base';
import { dataKind, dataset, toDocuments, toPreferenceOrSftRows, toPreferenceRows, toPrompts, toSftRows, type LabData } from './data';
import { continuedPretraining, type PretrainConfig, type PretrainResult } from '../train/pretrain';
import { multiTaskSft, type SftConfig, type SftResult, type SftTask } from '../train/sft';
import { freezeAllBut, freezeDefaults, trainableReport, type FreezeConfig } from '../train/freeze';
import { ewc, l2sp, type EwcConfig, type L2spConfig, type Penalty } from '../train/regularize';
import { tokenStream } from '../train/causal-lm';
import type { Trainer, TrainResult } from '../train/trainer';
import { addDora, addLora, loraDefaults, type LoraConfig } from '../peft/lora';
import { quantizeBase, quantizeConfig, type QuantizeConfig } from '../model/quant-model';
import type { QuantFormat } from '../model/quant';
import { addIa3, type Ia3Config } from '../peft/ia3';
import { addLoraMoe, loraMoeDefaults, type LoraMoeConfig } from '../peft/moe';
import { addBottleneck, type BottleneckConfig } from '../peft/bottleneck';
import { addPrefixTuning, prefixTuningDefaults, type PrefixTuningConfig } from '../peft/prefix';
import { addPromptTuning, promptTuningDefaults, type PromptTuningConfig } from '../peft/prompt';
import { trainRewardModel, type RewardConfig, type RewardModel, type RewardResult } from '../rlhf/reward';
import { dpo, type DpoConfig, type DpoResult } from '../rlhf/dpo';
import { simpo, type SimpoConfig, type SimpoResult } from '../rlhf/simpo';
import { orpo, type OrpoConfig, type OrpoResult } from '../rlhf/orpo';
import { kto, unpairPreferences, type KtoConfig, type KtoResult, type UnpairedRow } from '../rlhf/kto';
import { ppo, type PpoConfig, type PpoResult, type PpoReward } from '../rlhf/ppo';
import { grpo, type GrpoConfig, type GrpoResult, type GrpoReward } from '../rlhf/grpo';
import { rloo } from '../rlhf/rloo';
import { compareStrategies, type CompareMethod, type Comparison } from './compare';
import { ForgettingTracker, type ForgettingOptions } from '../eval/forgetting';
import { heldOutLoss, chatPrompt, generationSamples, type GenerationEvalOptions, type HeldOut, type LossResult } from '../eval/metrics';
import { configJson, finalLoss, RunLog, type RunRecord } from '../eval/runs';
import { evaluateTasks, type TaskEvalOptions, type TaskResult } from '../eval/tasks/evaluate';
import { isTasks, type Task } from '../eval/tasks/task';
import { checkOptions } from '../util/options';
import { tokenizeRows, tokenizeDefaults } from '../data/tokenize';
import * as path from 'path';
import { saveModel } from '../io/checkpoint';
import { peft } from '../peft/peft';
import { mergedCopy } from '../peft/merge';
import { saveAdapter } from '../peft/io';
import { detectEnvironment, mimeBundleKey } from '../viz/display';
import { summaryBundle } from '../viz/summary';
import { inspect } from 'util';
import { progress, liveLossChart, liveMetricsChart, type TrainerEventSource } from '../viz/live';
import { lossChart, forgettingChart, type ForgettingSeries } from '../viz/charts';
import { labDistill, labDrift, runBias } from './audit';
import type { BiasProbe, BiasReport } from '../eval/bias';

/** What a stage trains: every weight, a frozen subset, or an adapter a PEFT method attaches. */
export type Strategy =
  | { kind: 'full' }
  | { kind: 'freeze'; config: Partial<FreezeConfig> }
  | { kind: 'adapter'; label: string; attach: (model: CausalLM, tokenizer: Tokenizer) => unknown };

/** Forgetting tracking of a stage: the sets measured and how often. */
export interface TrackConfig {
  /** Extra named held-out sets (documents or rows); `general` (the shipped general held-out text) is always included. */
  sets: Record<string, LabData>;
  /** Measure every N steps. */
  every: number;
  /** Most windows of a document set measured (cost bound). */
  windows: number;
  /** Tasks scored at every measurement too (forgetting in task accuracy, with intervals); see `eval/tasks`. */
  tasks: readonly Task<unknown>[];
  /** Most documents of each task scored per measurement (cost bound); null: all. */
  taskLimit: number | null;
}

/** Every {@link TrackConfig} field, for the run-time option check of `track()`. */
export const trackKeys: readonly (keyof TrackConfig)[] = Object.freeze(['sets', 'every', 'windows', 'tasks', 'taskLimit']);

interface LabState {
  source: { name: string } | { run: Run<StageResult> };
  data?: LabData;
  tasks?: { name: string; data: LabData; weight: number; eval?: LabData }[];
  eval?: LabData;
  strategy: Strategy;
  track?: Partial<TrackConfig>;
  replay?: { data: LabData; fraction: number };
  penalty?: { kind: 'l2sp'; config: Partial<L2spConfig> } | { kind: 'ewc'; config: Partial<EwcConfig> };
  name?: string;
  logDir: string;
  show: boolean;
  /** Store the base's projections quantized before the strategy applies (`lab.base(…, { quantize })`). */
  quantize?: Partial<QuantizeConfig>;
}

/** What every method's result has (a Run's `result` is the method's own type, e.g. `DpoResult`). */
export type StageResult = Pick<TrainResult, 'steps' | 'history' | 'evals' | 'stoppedEarly'>;

/** Options common to the training verbs besides the method's own config. */
interface StageExtras {
  /** Called with the trainer before training (attach your own charts or listeners). */
  onTrainer?: (t: Trainer<unknown>) => void;
}

/**
 * A run being described. Verbs return new builders; `pretrain` / `sft` train and return a {@link Run}.
 */
export class Lab {
  /** @internal use {@link lab}.base */
  constructor(protected readonly state: LabState) {}

  private with(patch: Partial<LabState>): Lab {
    return new Lab({ ...this.state, ...patch });
  }

  /** Training data: documents for `pretrain`; prompt/completion or messages rows for `sft`. */
  data(data: LabData): Lab {
    return this.with({ data, tasks: undefined });
  }

  /** Held-out data of the same kind: eval loss during training and the forgetting tracker's target set. */
  eval(data: LabData): Lab {
    return this.with({ eval: data });
  }

  /**
   * Several SFT tasks mixed by weight, each with its own held-out loss (multi-task instruction tuning).
   *
   * @example
   * lab.base('tiny-llama').tasks([{ name: 'faq', data: faq, weight: 1, eval: faqHeld }, { name: 'defs', data: defs, weight: 2 }]).sft()
   */
  tasks(tasks: { name: string; data: LabData; weight?: number; eval?: LabData }[]): Lab {
    return this.with({ tasks: tasks.map((t) => ({ ...t, weight: t.weight ?? 1 })), data: undefined });
  }

  /** Trains every weight (the default). */
  full(): Lab {
    return this.with({ strategy: { kind: 'full' } });
  }

  /** Trains only the last layers (and by default the head and final norm): a frozen-subset baseline. */
  freeze(config: Partial<FreezeConfig> = {}): Lab {
    return this.with({ strategy: { kind: 'freeze', config } });
  }

  /** Trains an adapter that `attach` adds to the model (any PEFT method); `label` names the strategy in logs. */
  adapter(label: string, attach: (model: CausalLM, tokenizer: Tokenizer) => unknown): Lab {
    return this.with({ strategy: { kind: 'adapter', label, attach } });
  }

  /** LoRA (PEFT defaults: r 8, α 8, q_proj and v_proj). */
  lora(config: Partial<LoraConfig> = {}): Lab {
    return this.adapter(`lora-r${config.r ?? loraDefaults.r}`, (m) => addLora(m, config));
  }

  /** DoRA: LoRA with `useDora` (a learned magnitude per output unit times the normalised direction; PEFT's defaults otherwise). */
  dora(config: Partial<Omit<LoraConfig, 'useDora'>> = {}): Lab {
    return this.adapter(`dora-r${config.r ?? loraDefaults.r}`, (m) => addDora(m, config));
  }

  /**
   * QLoRA (Dettmers et al., arXiv 2305.14314): the base's projections stored NF4 (`bits: 4`) or int8
   * (`bits: 8`) and decoded on the fly, LoRA trained on top in float32.
   *
   * @example
   * lab.base('tiny-llama').data(rows).qlora({ r: 8, bits: 4 }).sft()
   */
  qlora(config: Partial<LoraConfig> & { bits?: 4 | 8 } & Partial<Omit<QuantizeConfig, 'format'>> = {}): Lab {
    const { bits = 4, doubleQuant, embeddings, ...lora } = config;
    if (bits !== 4 && bits !== 8) throw new Error(`qlora: bits must be 4 (NF4) or 8 (int8) (got ${JSON.stringify(bits)})`);
    const format: QuantFormat = bits === 4 ? 'nf4' : 'int8';
    return this.adapter(`qlora-${format}-r${lora.r ?? loraDefaults.r}`, (m) => {
      if (m.quantized.size) throw new Error('qlora: the base is already quantized (lab.base(…, { quantize })); use .lora() on it');
      quantizeBase(m, { format, ...(doubleQuant === undefined ? {} : { doubleQuant }), ...(embeddings === undefined ? {} : { embeddings }) });
      return addLora(m, lora);
    });
  }

  /** Mixture of LoRA experts with a learned router (per token by default). */
  loraMoe(config: Partial<LoraMoeConfig> = {}): Lab {
    return this.adapter(`lora-moe-${config.experts ?? loraMoeDefaults.experts}x${config.r ?? loraMoeDefaults.r}`, (m) => addLoraMoe(m, config));
  }

  /** IA3: learned scaling of keys, values and the MLP's inner activation. */
  ia3(config: Partial<Ia3Config> = {}): Lab {
    return this.adapter('ia3', (m) => addIa3(m, config));
  }

  /** Houlsby bottleneck adapters after attention and MLP. */
  bottleneck(config: Partial<BottleneckConfig> = {}): Lab {
    return this.adapter('bottleneck', (m) => addBottleneck(m, config));
  }

  /** Prefix tuning: learned key/value prefixes in every layer. */
  prefixTuning(config: Partial<PrefixTuningConfig> = {}): Lab {
    return this.adapter(`prefix-${config.numVirtualTokens ?? prefixTuningDefaults.numVirtualTokens}`, (m) => addPrefixTuning(m, config));
  }

  /** Prompt tuning: learned virtual-token embeddings before the input (`initText` starts them from a text's embeddings). */
  promptTuning(config: Partial<PromptTuningConfig> & { initText?: string } = {}): Lab {
    const { initText, ...rest } = config;
    return this.adapter(`prompt-${config.numVirtualTokens ?? promptTuningDefaults.numVirtualTokens}`,
      (m, tok) => addPromptTuning(m, initText === undefined ? rest : { ...rest, initFrom: { text: initText, tokenizer: tok } }));
  }

  /**
   * Trains each strategy on this builder's data with the same method, budget and seed, and returns
   * the table and chart of {@link Comparison}.
   *
   * @example
   * const cmp = await lab.base('tiny-llama').data(rows).eval(held).track().compare({
   *   full: (l) => l.full(), 'lora r=8': (l) => l.lora({ r: 8 }), ia3: (l) => l.ia3(),
   * }, { method: 'sft', config: { maxSteps: 100 } });
   * cmp.plot();
   */
  compare(strategies: Record<string, (lab: Lab) => Lab>, how: CompareMethod): Promise<Comparison<Run>> {
    return compareStrategies<Lab, Run>(this, strategies, how);
  }

  /**
   * Tracks forgetting: the shipped general held-out set (and the eval data as `target`, plus any `sets`)
   * before training and every `every` steps.
   */
  track(config: Partial<TrackConfig> = {}): Lab {
    checkOptions(config, trackKeys, 'track');
    return this.with({ track: config });
  }

  /** Mitigation: mixes `fraction` of general documents into continued pretraining (default: the shipped general set). */
  replay(fraction: number, data: LabData = dataset('general')): Lab {
    return this.with({ replay: { data, fraction } });
  }

  /** Mitigation: L2-SP pull toward the starting weights. */
  l2sp(config: Partial<L2spConfig> = {}): Lab {
    return this.with({ penalty: { kind: 'l2sp', config } });
  }

  /** Mitigation: EWC with a Fisher estimated on the shipped general held-out text. */
  ewc(config: Partial<EwcConfig> = {}): Lab {
    return this.with({ penalty: { kind: 'ewc', config } });
  }

  /** Names the run in the log (default: method and strategy). */
  name(name: string): Lab {
    return this.with({ name });
  }

  /** Folder of the run log (default `runs`, relative to the working directory). */
  log(dir: string): Lab {
    return this.with({ logDir: dir });
  }

  /** Turns the live progress bar and loss chart off (`false`) or on. */
  show(on = true): Lab {
    return this.with({ show: on });
  }

  /** Domain-adaptive continued pretraining on the data's documents. */
  async pretrain(config: Partial<PretrainConfig> & StageExtras = {}): Promise<Run<PretrainResult>> {
    const s = this.state;
    if (!s.data) throw new Error('pretrain: no data; call .data(documents) first');
    const docs = toDocuments(s.data, 'pretrain data');
    return this.stage('continued-pretraining', config, async (model, tok, extras) => {
      const evalDocs = s.eval ? toDocuments(s.eval, 'eval data') : null;
      const replay = s.replay ? { docs: toDocuments(s.replay.data, 'replay data'), fraction: s.replay.fraction } : null;
      return continuedPretraining(model, tok, docs, { evalDocs, replay, ...stripExtras(config) }, extras);
    });
  }

  /** Supervised fine-tuning (instruction tuning) on the data's rows, or on several `tasks`. */
  async sft(config: Partial<SftConfig> & StageExtras = {}): Promise<Run<SftResult>> {
    const s = this.state;
    if (s.replay) throw new Error('sft: replay applies to continued pretraining; for SFT mix general data in as a task with .tasks()');
    const tasks: SftTask[] = s.tasks
      ? s.tasks.map((t) => ({ name: t.name, weight: t.weight, rows: toSftRows(t.data, `task "${t.name}"`), evalRows: t.eval ? toSftRows(t.eval, `task "${t.name}" eval`) : undefined }))
      : s.data ? [{ name: 'sft', weight: 1, rows: toSftRows(s.data, 'sft data'), evalRows: s.eval ? toSftRows(s.eval, 'eval data') : undefined }]
        : [];
    if (tasks.length === 0) throw new Error('sft: no data; call .data(rows) or .tasks([...]) first');
    return this.stage('sft', config, (model, tok, extras) => multiTaskSft(model, tok, tasks, stripExtras(config), extras));
  }

  /** Reward model: a scalar head trained on the data's prompt/chosen/rejected rows (Bradley-Terry loss). */
  async rewardModel(config: Partial<RewardConfig> & StageExtras = {}): Promise<Run<RewardResult>> {
    const { rows, evalRows } = this.preferences('rewardModel');
    return this.stage('reward-model', config, (model, tok, extras) => trainRewardModel(model, tok, rows, { evalRows, ...stripExtras(config) }, extras));
  }

  /** DPO on the data's preference rows; the reference is the starting model (a frozen copy, or the base with adapters off). */
  async dpo(config: Partial<DpoConfig> & StageExtras = {}): Promise<Run<DpoResult>> {
    const { rows, evalRows } = this.preferences('dpo');
    return this.stage('dpo', config, (model, tok, extras) => dpo(model, tok, rows, { evalRows, ...stripExtras(config) }, extras));
  }

  /** SimPO on the data's preference rows (arXiv 2405.14734): length-normalised rewards, no reference model. */
  async simpo(config: Partial<SimpoConfig> & StageExtras = {}): Promise<Run<SimpoResult>> {
    const { rows, evalRows } = this.preferences('simpo');
    return this.stage('simpo', config, (model, tok, extras) => simpo(model, tok, rows, { evalRows, ...stripExtras(config) }, extras));
  }

  /** ORPO on the data's preference rows (arXiv 2403.07691): SFT plus an odds-ratio term, no reference model. */
  async orpo(config: Partial<OrpoConfig> & StageExtras = {}): Promise<Run<OrpoResult>> {
    const { rows, evalRows } = this.preferences('orpo');
    return this.stage('orpo', config, (model, tok, extras) => orpo(model, tok, rows, { evalRows, ...stripExtras(config) }, extras));
  }

  /**
   * KTO (arXiv 2402.01306) on unpaired rows `{prompt, completion, label}`; preference rows are unpaired first
   * (TRL's `unpair_preference_dataset`). The reference is the starting model, as for DPO.
   */
  async kto(config: Partial<KtoConfig> & StageExtras = {}): Promise<Run<KtoResult>> {
    const s = this.state;
    if (!s.data) throw new Error('kto: no data; call .data(unpairedRows or preferenceRows) first');
    const unpaired = (d: LabData, what: string): UnpairedRow[] => {
      const r = toPreferenceOrSftRows(d, what);
      return 'preference' in r ? unpairPreferences(r.preference) : r.sft as unknown as UnpairedRow[]; // checked column by column in kto()
    };
    const rows = unpaired(s.data, 'kto data');
    const evalRows = s.eval ? unpaired(s.eval, 'eval data') : null;
    return this.stage('kto', config, (model, tok, extras) => kto(model, tok, rows, { evalRows, ...stripExtras(config) }, extras));
  }

  /** The data and eval data as preference rows, with errors naming the verb and the row. */
  private preferences(verb: string) {
    const s = this.state;
    if (!s.data) throw new Error(`${verb}: no data; call .data(preferenceRows) first`);
    return { rows: toPreferenceRows(s.data, `${verb} data`), evalRows: s.eval ? toPreferenceRows(s.eval, 'eval data') : null };
  }

  /**
   * PPO on the data's prompts against a reward: a function of (prompt, response), a reward model, or a
   * reward-model {@link Run}. The starting model is the frozen reference.
   */
  async ppo(reward: PpoReward | Run<StageResult>, config: Partial<PpoConfig> & StageExtras = {}): Promise<Run<PpoResult>> {
    const s = this.state;
    if (!s.data) throw new Error('ppo: no prompts; call .data(prompts) first');
    if (s.penalty) throw new Error('ppo: L2-SP / EWC penalties apply to trainer-based methods; PPO has its own KL penalty (klCoef)');
    const prompts = toPrompts(s.data, 'ppo prompts');
    const scorer = reward instanceof Run ? reward.reward : reward;
    if (!scorer) throw new Error('ppo: the run given as reward has no reward model (train one with .rewardModel())');
    return this.stage('ppo', config, (model, tok, extras) => ppo(model, tok, prompts, scorer, stripExtras(config), { onTrainer: extras.onTrainer }));
  }

  /**
   * GRPO (arXiv 2402.03300) on the data's prompts: G completions per prompt, advantages relative to the
   * group, no value model. The reward is a function of (prompt, completion), several with
   * `rewardWeights`, a reward model or a reward-model {@link Run}. At `beta` > 0 the starting model is
   * the frozen reference; at 0 (TRL's default) none is held.
   */
  async grpo(reward: GrpoReward | readonly GrpoReward[] | Run<StageResult>, config: Partial<GrpoConfig> & StageExtras = {}): Promise<Run<GrpoResult>> {
    return this.groupStage('grpo', grpo, reward, config);
  }

  /** RLOO (arXiv 2402.14740): {@link grpo} with the leave-one-out baseline and RLOO's defaults. */
  async rloo(reward: GrpoReward | readonly GrpoReward[] | Run<StageResult>, config: Partial<GrpoConfig> & StageExtras = {}): Promise<Run<GrpoResult>> {
    return this.groupStage('rloo', rloo, reward, config);
  }

  private groupStage(method: 'grpo' | 'rloo', run: typeof grpo, reward: GrpoReward | readonly GrpoReward[] | Run<StageResult>, config: Partial<GrpoConfig> & StageExtras): Promise<Run<GrpoResult>> {
    const s = this.state;
    if (!s.data) throw new Error(`${method}: no prompts; call .data(prompts) first`);
    if (s.penalty) throw new Error(`${method}: L2-SP / EWC penalties apply to trainer-based methods; ${method} has its own KL penalty (beta)`);
    const prompts = toPrompts(s.data, `${method} prompts`);
    const scorer = reward instanceof Run ? reward.reward : reward;
    if (!scorer) throw new Error(`${method}: the run given as reward has no reward model (train one with .rewardModel())`);
    return this.stage(method, config, (model, tok, extras) => run(model, tok, prompts, scorer, stripExtras(config), { onTrainer: extras.onTrainer }));
  }

  /** Loads or copies the starting model, applies the strategy, mitigations and tracking, trains, logs. */
  private async stage<R extends StageResult>(method: string, config: StageExtras,
    train: (model: CausalLM, tok: Tokenizer, extras: { onTrainer: (t: TrainerEventSource & Pick<Trainer<unknown>, 'on'>) => void; penalty?: Penalty }) => Promise<R>): Promise<Run<R>> {
    const s = this.state;
    if (s.quantize && s.strategy.kind !== 'adapter') throw new Error(`${method}: a quantized base trains adapters only (its projections are frozen); pick .lora(), .ia3(), … instead of .${s.strategy.kind}()`);
    const start = 'run' in s.source
      ? { name: s.source.run.record.run, model: await mergedCopy(s.source.run.model), tokenizer: s.source.run.tokenizer }
      : await loadBase(s.source.name);
    const { model, tokenizer } = start;
    if (s.quantize) quantizeBase(model, s.quantize);
    const strategy = applyStrategy(model, tokenizer, s.strategy);
    const size = trainableReport(model);
    const penalty = s.penalty?.kind === 'l2sp' ? l2sp(model, s.penalty.config)
      : s.penalty?.kind === 'ewc' ? ewc(model, { tokens: tokenStream(tokenizer, dataset('general', 'heldout')) }, s.penalty.config)
        : undefined;
    const tracker = s.track ? this.makeTracker(model, tokenizer, s.track) : undefined;
    // The baseline is the model before the strategy: prefix / prompt tuning start as a random change.
    if (tracker) peft(model).withDisabledSync(() => tracker.baseline());
    const notebook = detectEnvironment() === 'tslab';
    const began = Date.now();
    let result: R;
    try {
      result = await train(model, tokenizer, {
        penalty,
        onTrainer: (t) => {
          tracker?.attach(t);
          if (s.show) {
            progress(t);
            const title = `${method} (${strategy})`;
            if (notebook && method === 'ppo') liveMetricsChart(t, ['objective/scores', 'objective/kl', 'policy/clipfrac_avg', 'loss'], { title });
            else if (notebook && (method === 'grpo' || method === 'rloo')) liveMetricsChart(t, ['reward', 'kl', 'completions/mean_length', 'reward_std'], { title });
            else if (notebook) liveLossChart(t, { title });
          }
          config.onTrainer?.(t as Trainer<unknown>);
        },
      });
    } finally {
      penalty?.dispose();
    }
    const wallMs = Date.now() - began;
    const score = (set: string) => (tracker && tracker.setNames.includes(set) ? tracker.score(set).deltaLoss : null);
    const label = `${method}-${strategy}${s.penalty ? `-${s.penalty.kind}` : ''}${s.replay ? `-replay${s.replay.fraction}` : ''}`;
    const log = new RunLog(s.logDir);
    const record = log.add({
      run: s.name ?? label, method, strategy, base: start.name, finishedAt: new Date().toISOString(),
      steps: result.steps, tokens: result.history.at(-1)?.tokens ?? 0, wallMs,
      tokensPerSec: result.history.length ? (result.history.at(-1)!.tokens * 1000) / Math.max(1, wallMs) : 0,
      trainableParams: size.trainable, trainablePercent: size.percent,
      finalTrainLoss: finalLoss(result.history), finalEvalLoss: result.evals.at(-1)?.evalLoss ?? null,
      forgettingDelta: score('general'), targetDelta: score('target'),
      config: configJson({ ...stripExtras(config), penalty: s.penalty, replay: s.replay && { fraction: s.replay.fraction }, strategy: s.strategy }),
    }, { steps: result.history, evals: result.evals, forgetting: tracker?.rows, tasks: tracker?.taskRows.length ? tracker.taskRows : undefined });
    return new Run<R>({ ...s, source: { name: start.name }, data: undefined, tasks: undefined, eval: undefined, strategy: { kind: 'full' }, replay: undefined, penalty: undefined, name: undefined },
      model, tokenizer, result, record, log, tracker, 'run' in s.source ? s.source.run : undefined);
  }

  private makeTracker(model: CausalLM, tok: Tokenizer, t: Partial<TrackConfig>): ForgettingTracker {
    const seqLen = model.config.contextLength - model.reservedPositions();
    const windows = t.windows ?? 16;
    const asSet = (data: LabData, what: string) => heldOutSet(data, tok, seqLen, what, windows);
    const sets: Record<string, HeldOut> = { general: asSet(dataset('general', 'heldout'), 'general held-out set') };
    if (this.state.eval) sets.target = asSet(this.state.eval, 'eval data');
    for (const [name, data] of Object.entries(t.sets ?? {})) sets[name] = asSet(data, `tracked set "${name}"`);
    const options: Partial<ForgettingOptions> = {
      every: t.every ?? 25, seqLen, tokens: tok, generalSet: 'general', targetSet: 'target',
      ...(t.tasks?.length ? { tasks: { tasks: t.tasks, tokenizer: tok, options: { limit: t.taskLimit ?? null } } } : {}),
    };
    return new ForgettingTracker(model, sets, options);
  }
}

/** Documents become a token stream (at most `windows` windows); rows become completion-masked examples. */
function heldOutSet(data: LabData, tok: Tokenizer, seqLen: number, what: string, windows = Infinity): HeldOut {
  if (dataKind(data) === 'documents') return { tokens: tokenStream(tok, toDocuments(data, what)).slice(0, windows * seqLen + 1) };
  const { examples } = tokenizeRows(toSftRows(data, what), tok, { ...tokenizeDefaults, maxLength: seqLen + 1 });
  return { examples: examples.slice(0, windows * 8) };
}

function stripExtras<C extends StageExtras>(config: C): Omit<C, keyof StageExtras> {
  const { onTrainer: _o, ...rest } = config;
  return rest;
}

/** Applies a strategy; returns its label for logs. */
function applyStrategy(model: CausalLM, tok: Tokenizer, s: Strategy): string {
  if (s.kind === 'full') {
    model.setTrainable(() => true, true);
    return 'full';
  }
  if (s.kind === 'freeze') {
    freezeAllBut(model, s.config);
    return `last${s.config.lastLayers ?? freezeDefaults.lastLayers}`;
  }
  s.attach(model, tok);
  return s.label;
}

/**
 * A trained stage: the model, its results and charts; and a builder for the next stage, starting
 * from a copy of this model (so this run stays as it is for comparisons).
 */
export class Run<R extends StageResult = TrainResult> extends Lab {
  /** @internal */
  constructor(state: LabState, readonly model: CausalLM, readonly tokenizer: Tokenizer,
    /** What the method returned: `PretrainResult`, `SftResult`, `RewardResult`, `DpoResult` or `PpoResult`, typed by the verb. */
    readonly result: R,
    /** The run's row in the log. */
    readonly record: RunRecord, readonly runLog: RunLog, readonly tracker?: ForgettingTracker,
    /** The run this one continued from (`run.data(…).sft()`), if any. */
    readonly parent?: Run<StageResult>) {
    super({ ...state, source: { run: undefined as unknown as Run<StageResult> } });
    (this.state as LabState).source = { run: this };
  }

  /** The printed form (`console.log(run)`, a notebook cell's value): what was trained, how long, the losses. */
  [mimeBundleKey](): { 'text/plain': string; 'text/html': string } {
    const r = this.record;
    const loss = (x: number | null) => (x === null ? '—' : x.toFixed(4));
    const fields: [string, string][] = [
      ['method', `${r.method} (${r.strategy}) on ${r.base}`],
      ['trained', `${r.steps} steps, ${r.tokens.toLocaleString('en-US')} tokens, ${(r.wallMs / 1000).toFixed(1)} s, ${r.trainablePercent.toFixed(2)} % of parameters`],
      ['loss', `train ${loss(r.finalTrainLoss)}, held-out ${loss(r.finalEvalLoss)}`],
    ];
    if (r.forgettingDelta !== null) fields.push(['forgetting', `general-set loss ${r.forgettingDelta >= 0 ? '+' : ''}${r.forgettingDelta.toFixed(4)}`]);
    return summaryBundle(`Run ${JSON.stringify(r.run)}`, fields);
  }

  [inspect.custom](): string {
    return this[mimeBundleKey]()['text/plain'];
  }

  /** Shows the training (and eval) loss curve (build it yourself with `viz.lossChart(run.result)` to keep the chart). */
  plot(): void {
    lossChart(this.result, { title: `${this.record.run}: loss` }).show();
  }

  /** This run and the runs it continued from, oldest first (base → domain-adapted → instruction-tuned). */
  lineage(): Run[] {
    return [...(this.parent?.lineage() ?? []), this];
  }

  /** Shows {@link forgettingSeries} as a chart. */
  forgetting(metric: 'loss' | 'perplexity' = 'loss'): void {
    forgettingChart(this.forgettingSeries(metric), { title: `${this.record.run}: held-out ${metric} across stages`, metricName: `held-out ${metric}` }).show();
  }

  /**
   * Forgetting curves over the whole lineage: each tracked stage's sets against cumulative training
   * tokens, so the general-set curve runs from the base through every stage.
   */
  forgettingSeries(metric: 'loss' | 'perplexity' = 'loss'): ForgettingSeries[] {
    const series: ForgettingSeries[] = [];
    let offset = 0;
    for (const run of this.lineage()) {
      for (const set of run.tracker?.setNames ?? []) {
        const rows = run.tracker!.rows.filter((r) => r.set === set).sort((a, b) => a.tokens - b.tokens);
        const name = set === 'general' ? 'general' : `${run.record.run}: ${set}`;
        const prev = series.find((x) => x.name === name);
        const tokens = rows.map((r) => r.tokens + offset);
        const values = rows.map((r) => r[metric]);
        if (prev) series[series.indexOf(prev)] = { name, tokens: [...Array.from(prev.tokens), ...tokens], metric: [...Array.from(prev.metric), ...values] };
        else series.push({ name, tokens, metric: values });
      }
      offset += run.record.tokens;
    }
    if (series.length === 0) throw new Error(`run "${this.record.run}" was not tracked; add .track() before training`);
    return series;
  }

  /** Shows {@link taskForgettingSeries} as a chart: task scores with interval bands across stages. */
  taskForgetting(metric = 'acc'): void {
    forgettingChart(this.taskForgettingSeries(metric), { title: `${this.record.run}: task ${metric} across stages`, metricName: metric }).show();
  }

  /**
   * Tracked task scores over the whole lineage against cumulative training tokens, with their intervals
   * (needs `.track({ tasks })` on the stages).
   */
  taskForgettingSeries(metric = 'acc'): ForgettingSeries[] {
    const series: ForgettingSeries[] = [];
    let offset = 0;
    for (const run of this.lineage()) {
      // Each stage's curves as its tracker draws them, shifted by the tokens of the stages before it.
      const curves = run.tracker?.taskRows.some((r) => r.metric === metric) ? run.tracker.taskCurves(metric) : [];
      for (const c of curves) {
        let s = series.find((x) => x.name === c.name);
        if (!s) series.push((s = { name: c.name, tokens: [], metric: [], low: [], high: [] }));
        (s.tokens as number[]).push(...Array.from(c.tokens, (t) => t + offset));
        (s.metric as number[]).push(...Array.from(c.metric));
        (s.low as number[]).push(...Array.from(c.low!));
        (s.high as number[]).push(...Array.from(c.high!));
      }
      offset += run.record.tokens;
    }
    if (series.length === 0) throw new Error(`run "${this.record.run}": no tracked task scores for "${metric}"; add .track({ tasks }) before training`);
    return series;
  }

  /** Every run of this run's log folder as an arquero table. */
  table() {
    return this.runLog.table();
  }

  /** Greedy continuation of `prompt` (text), stopping at end of text. */
  generate(prompt: string, options: Partial<GenerationEvalOptions> = {}): string {
    return generationSamples(this.model, this.tokenizer, [prompt], { maxNewTokens: 48, ...options })[0].completion;
  }

  /** The model's answer to `question` as a chat turn (ChatML; stops at `<|im_end|>`). */
  ask(question: string, options: Partial<GenerationEvalOptions> = {}): string {
    return this.generate(question, { format: chatPrompt(), ...options }).trim();
  }

  /** Answers of this run to `questions`, as rows for a table (compare runs on the same questions). */
  answers(questions: readonly string[], options: Partial<GenerationEvalOptions> = {}): { run: string; question: string; answer: string }[] {
    return questions.map((q) => ({ run: this.record.run, question: q, answer: this.ask(q, options) }));
  }

  /**
   * Loss and perplexity on held-out documents or rows (completion-only for rows); or, given tasks, their
   * scores with intervals (lm-eval style, see `eval/tasks`).
   *
   * @example
   * await run.evaluate(lab.dataset('general', 'heldout'));      // { loss, perplexity, tokens }
   * showTable(taskTable(await run.evaluate(shippedTasks())));   // acc, acc_norm, perplexity … with 95 % intervals
   */
  async evaluate(tasks: Task<unknown> | readonly Task<unknown>[], options?: Partial<TaskEvalOptions>): Promise<TaskResult[]>; // first: tasks are objects too
  async evaluate(data: LabData): Promise<LossResult>;
  async evaluate(data: LabData | Task<unknown> | readonly Task<unknown>[], options: Partial<TaskEvalOptions> = {}): Promise<LossResult | TaskResult[]> {
    if (isTasks(data)) return evaluateTasks(this.model, this.tokenizer, data, options);
    const seqLen = this.model.config.contextLength - this.model.reservedPositions();
    return heldOutLoss(this.model, heldOutSet(data, this.tokenizer, seqLen, 'evaluate data'), { seqLen, tokens: this.tokenizer });
  }

  /**
   * Bias amplification: this run's model against the model it started from on a probe (default: pronouns
   * after a role), beside the skew of `data`, the run's fine-tuning data (see `biasReport`).
   *
   * @example
   * (await run.bias(lab.dataset('instructions'))).plot().show();
   */
  bias(data: LabData, probe?: BiasProbe, options: { tolerance?: number; batchSize?: number } = {}): Promise<BiasReport> {
    return runBias(this, data, probe, options);
  }

  /**
   * Saves what the run trained: with adapters, each in PEFT's layout (`dir`, or `dir/<name>` for
   * several), plus `dir/base` (the model they were trained on) when the run continued an earlier stage;
   * otherwise the model and tokenizer as an HF-layout checkpoint folder.
   */
  async save(dir: string): Promise<string> {
    const names = peft(this.model).activeNames;
    let baseModelNameOrPath = this.record.base;
    if (names.length > 0 && this.parent) {
      // The adapter was trained on an earlier stage's model, not on a shipped base: keep that model beside it.
      baseModelNameOrPath = path.join(dir, 'base');
      await saveModel(baseModelNameOrPath, this.model, this.tokenizer);
    }
    if (names.length === 1) await saveAdapter(this.model, dir, names[0], { baseModelNameOrPath });
    else if (names.length > 1) for (const n of names) await saveAdapter(this.model, path.join(dir, n), n, { baseModelNameOrPath });
    else await saveModel(dir, this.model, this.tokenizer);
    return dir;
  }

  /** The reward model a `.rewardModel()` stage trained (scores responses; a reward for `.ppo()`). */
  get reward(): RewardModel | undefined {
    return (this.result as Partial<RewardResult>).rewardModel;
  }

  /** Frees the model's tensors. */
  dispose(): void {
    this.model.dispose();
  }
}

/**
 * Entry points of the fluent API.
 *
 * @example
 * import { lab } from 'tunelab';
 * const run = await lab.base('tiny-llama').data(lab.dataset('instructions')).sft({ epochs: 1 });
 * run.plot();
 */
export const lab = {
  /**
   * Starts from a shipped base model by name, or a checkpoint folder by path. `quantize` stores its
   * projections int8 or NF4 for every stage (QLoRA-style: then train adapters on it), e.g.
   * `lab.base('tiny-llama', { quantize: 'nf4' }).lora()`.
   */
  base(nameOrPath = 'tiny-llama', options: { quantize?: QuantFormat | Partial<QuantizeConfig> } = {}): Lab {
    checkOptions(options, ['quantize'], 'lab.base');
    const quantize = options.quantize === undefined ? undefined
      : quantizeConfig(typeof options.quantize === 'string' ? { format: options.quantize } : options.quantize, 'lab.base quantize');
    return new Lab({ source: { name: nameOrPath }, strategy: { kind: 'full' }, logDir: 'runs', show: true, ...(quantize ? { quantize } : {}) });
  },
  /** A shipped dataset split (documents or rows). */
  dataset,
  /** The run log of a folder, to compare runs later. */
  runs(dir = 'runs'): RunLog {
    return new RunLog(dir);
  },
  /** Drift of saved versions (of the named runs, or given) on dated sets; see `labDrift`. */
  drift: labDrift,
  /** Self-instruct data from a teacher (a `Teacher`, a run or a base model); see `labDistill`. */
  distill: labDistill,
};

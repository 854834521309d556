/** `tunelab serve <checkpoint>`: the OpenAI-compatible server of `./server`, from the command line. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { BackendName, backendOrder, initEngine } from '../engine';
import { serve } from './server';

interface ServeCliOptions {
  adapter: Record<string, string>;
  port: number;
  host: string;
  modelName?: string;
  maxQueue?: number;
  quiet?: boolean;
  backend?: string;
}

/** `--adapter name=path`, repeatable. */
function collectAdapter(value: string, acc: Record<string, string>): Record<string, string> {
  const m = /^([A-Za-z0-9_-]+)=(.+)$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected name=path, e.g. faq=runs/faq-lora (name: letters, digits, _ or -)');
  if (m[1] in acc) throw new InvalidArgumentError(`adapter "${m[1]}" given twice`);
  return { ...acc, [m[1]]: m[2] };
}

function nonNegativeInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be an integer ≥ 0.`);
    return n;
  };
}

/**
 * Adds `serve` to the CLI. Runs until SIGINT/SIGTERM, then lets running requests finish.
 *
 * @example
 * // tunelab serve models/tiny-llama --adapter faq=runs/faq-lora --port 8000
 * registerServeCommand(program);
 */
export function registerServeCommand(p: Command): void {
  p.command('serve').description('serve a model folder over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions)')
    .argument('<checkpoint>', 'model folder')
    .addOption(new Option('--adapter <name=path>', 'also serve this adapter folder as model "<model-name>:<name>" (repeatable)').argParser(collectAdapter).default({}, 'none'))
    .option('--port <n>', 'TCP port (0: any free port)', nonNegativeInt('--port'), 8000)
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--model-name <name>', 'model id clients send (default: the folder name)')
    .option('--max-queue <n>', 'requests that may wait before new ones get 429 (default: unbounded)', nonNegativeInt('--max-queue'))
    .option('--quiet', 'no per-request log lines on stderr')
    .addOption(new Option('--backend <name>', 'tensor backend').choices(['auto', ...backendOrder]))
    .action(async (checkpoint: string, o: ServeCliOptions) => {
      const info = await initEngine({ backend: o.backend as BackendName | 'auto' | undefined });
      const server = await serve({
        checkpoint, adapters: o.adapter, port: o.port, host: o.host, modelName: o.modelName, maxQueue: o.maxQueue,
        log: o.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      process.stderr.write(`tunelab: serving ${server.modelIds().join(', ')} at ${server.url}/v1 (backend ${info.backend}); Ctrl-C stops\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          process.stderr.write('tunelab: stopping after running requests finish\n');
          void server.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}

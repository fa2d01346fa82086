#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, parseCommandLine, settings } from './config.js';
import { runDemo } from './demo.js';
import { handleSignals, startServer } from './server.js';

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export function usage(): string {
  const width = Math.max(...settings.map((s) => s.flag.length)) + 8;
  const lines = settings.map((s) => `  --${s.flag} <v>`.padEnd(width + 4) + `${s.env}${s.default ? ` (default ${s.default})` : ''}\n${' '.repeat(width + 6)}${s.help}`);
  return [
    'aegir-taskd: runs queued Aegir tasks the moment they are queued.',
    '',
    'Usage:',
    '  aegir-taskd [serve] [options]     start the service (the default)',
    '  aegir-taskd demo [options]        start it wired to a simulated Aegir, and print curl lines to try',
    '  aegir-taskd --help | --version',
    '',
    'Every option can also be given by its environment variable; a flag wins over the environment.',
    'Prefer the environment for TASKD_SECRET and TASKD_ADMIN_TOKEN: flags are visible to other users in ps.',
    '',
    'Options:',
    ...lines,
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number | null> {
  let cli;
  try {
    cli = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`aegir-taskd: ${(error as Error).message}\nTry aegir-taskd --help.\n`);
    return 2;
  }
  if (cli.help) {
    process.stdout.write(usage());
    return 0;
  }
  if (cli.version) {
    process.stdout.write(`${packageJson.version}\n`);
    return 0;
  }
  const command = cli.command ?? 'serve';
  if (command === 'demo') {
    try {
      await runDemo(cli.flags);
    } catch (error) {
      process.stderr.write(`aegir-taskd: ${(error as Error).message}\n`);
      return error instanceof ConfigError ? 2 : 1;
    }
    return null;
  }
  if (command !== 'serve') {
    process.stderr.write(`aegir-taskd: unknown command ${JSON.stringify(command)}\nTry aegir-taskd --help.\n`);
    return 2;
  }
  let config;
  try {
    config = loadConfig(process.env, cli.flags);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`aegir-taskd: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  try {
    const server = await startServer(config);
    handleSignals(server);
  } catch (error) {
    process.stderr.write(`aegir-taskd: could not start: ${(error as Error).message}\n`);
    return 1;
  }
  return null;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== null) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`aegir-taskd: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);

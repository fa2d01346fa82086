#!/usr/bin/env node
import { ConfigError, loadConfig, parseCommandLine, settings, type Config } from './config.js';
import { VERSION, buildApp } from './app.js';
import { checkConfig, enqueueTask } from './operator-commands.js';
import { openApiYaml as documentYaml } from './plugins/openapi.js';
import { handleSignals, startServer } from './server.js';


export function usage(): string {
  const width = Math.max(...settings.map((s) => s.flag.length)) + 8;
  const lines = settings.map((s) => `  --${s.flag} <v>`.padEnd(width + 4) + `${s.env}${s.default ? ` (default ${s.default})` : ''}\n${' '.repeat(width + 6)}${s.help}`);
  return [
    'aegir-taskd: runs queued Aegir tasks the moment they are queued.',
    '',
    'Usage:',
    '  aegir-taskd [serve] [options]     start the service (the default)',
    '  aegir-taskd demo [options]        start it wired to a simulated Aegir, and print curl lines to try',
    '  aegir-taskd check-config [options]  check the configuration, the log dir and the command; exit 2 on a problem',
    '  aegir-taskd enqueue NID [--rid RID] [--url URL]  send a signed webhook (or use the admin token) to a running service',
    '  aegir-taskd openapi               print the OpenAPI document (YAML)',
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

async function runCheckConfig(config: Config): Promise<number> {
  const { problems, notes } = await checkConfig(config, process.env);
  for (const problem of problems) process.stderr.write(`aegir-taskd: ${problem}\n`);
  if (problems.length > 0) return 2;
  process.stdout.write(`configuration OK\n${notes.map((n) => `  ${n}`).join('\n')}\n`);
  return 0;
}

async function runEnqueue(config: Config, positionals: string[], extra: Record<string, string | boolean | undefined>): Promise<number> {
  const id = /^[1-9]\d*$/;
  const [nid] = positionals;
  const rid = extra.rid;
  if (!nid || !id.test(nid) || positionals.length > 1 || (rid !== undefined && (typeof rid !== 'string' || !id.test(rid)))) {
    process.stderr.write('usage: aegir-taskd enqueue NID [--rid RID] [--url URL]\n');
    return 2;
  }
  try {
    const answer = await enqueueTask(config, {
      nid: Number(nid),
      ...(typeof rid === 'string' ? { rid: Number(rid) } : {}),
      ...(typeof extra.url === 'string' ? { url: extra.url } : {}),
    });
    process.stdout.write(`${answer.status} ${answer.body}\n`);
    return answer.status >= 200 && answer.status < 300 ? 0 : 1;
  } catch (error) {
    process.stderr.write(`aegir-taskd: the service did not answer: ${(error as Error).message}\n`);
    return 1;
  }
}

/** The document is generated from the routes; a throwaway app with default settings is enough. */
export async function openApiYaml(): Promise<string> {
  const app = await buildApp({ config: loadConfig({ TASKD_LOG_LEVEL: 'silent' }), env: {}, defaultMetrics: false });
  await app.ready();
  const yaml = documentYaml(app);
  await app.close();
  return yaml;
}

export async function main(argv: string[]): Promise<number | null> {
  let cli;
  try {
    cli = parseCommandLine(argv, { rid: { type: 'string' }, url: { type: 'string' } });
  } catch (error) {
    process.stderr.write(`aegir-taskd: ${(error as Error).message}\nTry aegir-taskd --help.\n`);
    return 2;
  }
  if (cli.help) {
    process.stdout.write(usage());
    return 0;
  }
  if (cli.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = cli.command ?? 'serve';
  if (command === 'demo') {
    try {
      // Loaded here only: the simulation (and undici's main entry, which it uses) stays out of a serving process.
      await (await import('./demo.js')).runDemo(cli.flags);
    } catch (error) {
      process.stderr.write(`aegir-taskd: ${(error as Error).message}\n`);
      return error instanceof ConfigError ? 2 : 1;
    }
    return null;
  }
  if (command === 'openapi') {
    process.stdout.write(await openApiYaml());
    return 0;
  }
  if (command !== 'serve' && command !== 'check-config' && command !== 'enqueue') {
    process.stderr.write(`aegir-taskd: unknown command ${JSON.stringify(command)}\nTry aegir-taskd --help.\n`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig(process.env, cli.flags);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`aegir-taskd: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (command === 'check-config') return runCheckConfig(config);
  if (command === 'enqueue') return runEnqueue(config, cli.positionals, cli.extra);
  // A folder or command that cannot work is a configuration error like a bad value: exit 2, which
  // systemd (RestartPreventExitStatus=2) and supervisor do not restart in a loop.
  const { problems, warnings } = await checkConfig(config, process.env, { missingCommand: 'warning' });
  for (const warning of warnings) process.stderr.write(`aegir-taskd: warning: ${warning}; every task fails until it is\n`);
  if (problems.length > 0) {
    for (const problem of problems) process.stderr.write(`aegir-taskd: ${problem}\n`);
    return 2;
  }
  try {
    const server = await startServer(config, { env: process.env });
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

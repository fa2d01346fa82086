import { adminTokenFile, readAdminTokenFile } from './admin-token.js';
import { describeDisabledFeatures, dispatchStatus, type Config } from './config.js';
import { prepareLogDir, resolveCommand } from './runner.js';
import { signedHeaders } from './signature.js';
import { Agent, request } from './undici-parts.js';

/**
 * Checks what start-up would need, beyond parsing: writable log and state folders and a command that
 * can run. A missing command is a problem for check-config and only a warning at start (the service
 * still answers, and every task fails with the reason), so `npm start` works on a machine without drush.
 */
export async function checkConfig(config: Config, env: NodeJS.ProcessEnv, { missingCommand = 'problem' }: { missingCommand?: 'problem' | 'warning' } = {}): Promise<{ problems: string[]; warnings: string[]; notes: string[] }> {
  const problems: string[] = [];
  const warnings: string[] = [];
  try {
    await prepareLogDir(config.logDir);
  } catch (error) {
    problems.push(`TASKD_LOG_DIR: ${config.logDir} cannot be created or written (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  let tokenNote = 'admin token from TASKD_ADMIN_TOKEN';
  if (config.adminToken === undefined) {
    try {
      await prepareLogDir(config.stateDir);
      const kept = await readAdminTokenFile(config.stateDir);
      tokenNote = `admin token ${kept ? 'kept' : 'to be made at start'} in ${adminTokenFile(config.stateDir)} (TASKD_ADMIN_TOKEN is not set)`;
    } catch (error) {
      problems.push(`TASKD_STATE_DIR: ${config.stateDir} cannot be used (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  }
  const argv0 = config.command[0]!;
  const found = await resolveCommand(argv0, env);
  const resolved = 'path' in found ? found.path : null;
  if (resolved === null) (missingCommand === 'problem' ? problems : warnings).push(`TASKD_COMMAND: ${argv0} is not an executable file on PATH`);
  const dispatch = dispatchStatus(config);
  let dispatchNote: string | null = null;
  if (dispatch.on) {
    const foundDispatch = await resolveCommand(dispatch.argv[0]!, env);
    if (!('path' in foundDispatch)) (missingCommand === 'problem' ? problems : warnings).push(`TASKD_DISPATCH_COMMAND: ${dispatch.argv[0]} is not an executable file on PATH`);
    dispatchNote =
      `dispatching is on: ${JSON.stringify(dispatch.argv)}${'path' in foundDispatch ? ` (${foundDispatch.path})` : ''} runs when one of Aegir's other queues is due, ` +
      `at most once every ${config.dispatchMinIntervalMs / 1000}s, timeout ${config.dispatchTimeoutMs / 1000}s; remove the hosting-dispatch line from the aegir user's crontab`;
  }
  const notes = [
    `listen on ${config.host}:${config.port}`,
    `command ${JSON.stringify(config.command)}${resolved ? ` (${resolved})` : ''}`,
    `concurrency ${config.concurrency}, task timeout ${config.taskTimeoutMs / 1000}s, log dir ${config.logDir}, state dir ${config.stateDir}`,
    tokenNote,
    ...(dispatchNote ? [dispatchNote] : []),
    ...describeDisabledFeatures(config).map((off) => `switched off: ${off}`),
  ];
  return { problems, warnings, notes };
}

/** Sends the webhook the module would send (signed when a secret is configured, else with the admin token) and returns the answer. */
export async function enqueueTask(config: Config, input: { nid: number; rid?: number; url?: string }): Promise<{ status: number; body: string }> {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const base = input.url ?? `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`;
  const payload = JSON.stringify(input.rid === undefined ? { nid: input.nid } : { nid: input.nid, rid: input.rid });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const secret = config.secrets[0];
  if (secret) Object.assign(headers, signedHeaders(secret.key, payload));
  else {
    // Without a configured token, the one the service made (readable by the same user only).
    const token = config.adminToken ?? (await readAdminTokenFile(config.stateDir));
    if (token) headers.authorization = `Bearer ${token.reveal()}`;
  }
  const agent = new Agent();
  try {
    const response = await request(`${base.replace(/\/+$/, '')}/v1/tasks`, { method: 'POST', body: payload, headers, dispatcher: agent });
    return { status: response.statusCode, body: await response.body.text() };
  } finally {
    await agent.close();
  }
}

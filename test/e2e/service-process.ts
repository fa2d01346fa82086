import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADMIN_TOKEN, repoRoot } from '../helpers.js';

export const cliPath = path.join(repoRoot, 'dist', 'cli.js');

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  logs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the built service as a real process and resolves once it logged that it is ready (with the test admin token and a state folder of its own unless given); nodeArgs go to node itself. */
export async function startService(env: Record<string, string>, args: string[] = [], nodeArgs: string[] = []): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [...nodeArgs, cliPath, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TASKD_PORT: '0', TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_STATE_DIR: env.TASKD_LOG_DIR ? path.join(env.TASKD_LOG_DIR, 'state') : mkdtempSync(path.join(os.tmpdir(), 'taskd-state-')), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        logs.push(line);
        try {
          const entry = JSON.parse(line);
          if (entry.msg === 'aegir-taskd ready') resolve(entry.address);
        } catch {
          /* not JSON */
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
    void exited.then(({ code }) => reject(new Error(`service exited with ${code} before it was ready:\n${logs.join('\n')}`)));
  });
  return { child, url, logs, exited };
}

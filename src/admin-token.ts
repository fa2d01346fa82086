import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Secret, type Config } from './config.js';
import { prepareLogDir } from './runner.js';

/** Where a service without a configured TASKD_ADMIN_TOKEN keeps the one it made. */
export function adminTokenFile(stateDir: string): string {
  return path.join(stateDir, 'admin-token');
}

export interface AdminToken {
  token: Secret;
  /** The file it came from, or null when it was configured. */
  file: string | null;
  created: boolean;
}

/** Reads the token a previous start made; undefined when there is none. Never creates one. */
export async function readAdminTokenFile(stateDir: string): Promise<Secret | undefined> {
  let text: string;
  try {
    text = await fs.readFile(adminTokenFile(stateDir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const token = text.trim();
  // The same rule as TASKD_ADMIN_TOKEN, so a truncated file is an error and not a weak token.
  if (token.length < 16 || /\s/.test(token)) throw new Error(`${adminTokenFile(stateDir)} does not hold a token of 16 characters or more`);
  return new Secret(token);
}

/**
 * The admin token in force: the configured one, else the one kept in the state folder, else a new
 * one written there (mode 0600, in a folder of this user only). Loopback is shared with every site
 * on a hostmaster, so a service never runs without a token; the file is how a local operator gets it.
 */
export async function ensureAdminToken(config: Pick<Config, 'adminToken' | 'stateDir'>): Promise<AdminToken> {
  if (config.adminToken !== undefined) return { token: config.adminToken, file: null, created: false };
  await prepareLogDir(config.stateDir);
  const file = adminTokenFile(config.stateDir);
  const existing = await readAdminTokenFile(config.stateDir);
  if (existing) return { token: existing, file, created: false };
  const value = randomBytes(32).toString('base64url');
  try {
    // wx: two services started at once on one state folder must not each write their own.
    await fs.writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { token: (await readAdminTokenFile(config.stateDir))!, file, created: false };
  }
  return { token: new Secret(value), file, created: true };
}

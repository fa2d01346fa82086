import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { repoRoot } from './helpers.js';

const read = (name: string) => fs.readFile(path.join(repoRoot, 'deploy', name), 'utf8');

/** key=value lines, without comments; for a unit file the last value of a key wins, as in systemd. */
function settingsOf(text: string, separator = '='): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';') || trimmed.startsWith('[')) continue;
    const at = trimmed.indexOf(separator);
    out.set(trimmed.slice(0, at).trim(), trimmed.slice(at + 1).trim());
  }
  return out;
}

describe('deploy/', () => {
  it('has an example environment that the service accepts', async () => {
    const env = Object.fromEntries(settingsOf(await read('aegir-taskd.env')));
    const config = loadConfig(env);
    expect(config.command).toEqual(['drush', '@hostmaster', 'hosting-task', '{nid}', '--strict=0']);
  });

  it('has a systemd unit that never kills a running drush and waits longer than the shutdown grace', async () => {
    const unit = settingsOf(await read('aegir-taskd.service'));
    const grace = loadConfig(Object.fromEntries(settingsOf(await read('aegir-taskd.env')))).shutdownGraceMs / 1000;
    expect(unit.get('KillMode')).toBe('process');
    expect(Number(unit.get('TimeoutStopSec'))).toBeGreaterThan(grace);
    expect(unit.get('User')).toBe('aegir');
    expect(unit.get('Restart')).toBe('on-failure');
    expect(unit.get('NoNewPrivileges')).toBeUndefined();
    expect(unit.get('PrivateTmp')).toBeUndefined();
    expect(unit.get('Environment')).toBe('TASKD_LOG_DIR=/var/log/aegir-taskd');
  });

  it('has a supervisor program that signals the service only and waits longer than the shutdown grace', async () => {
    const program = settingsOf(await read('aegir-taskd.supervisor.conf'));
    expect(program.get('stopasgroup')).toBe('false');
    expect(program.get('killasgroup')).toBe('false');
    expect(Number(program.get('stopwaitsecs'))).toBeGreaterThan(30);
    expect(program.get('user')).toBe('aegir');
    expect(program.get('autorestart')).toBe('unexpected');
  });
});

describe('README', () => {
  it('documents every setting in its configuration table', async () => {
    const { settings } = await import('../src/config.js');
    const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
    for (const s of settings) expect(readme).toMatch(new RegExp(`^\\| \`${s.env}\` \\| \`--${s.flag}\` \\|`, 'm'));
  });
});

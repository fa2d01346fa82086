import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { readDeployFile, settingsOf, shippedEnv } from './deploy/deploy-files.js';
import { repoRoot } from './helpers.js';

describe('deploy/', () => {
  it('has an example environment that the service accepts', () => {
    expect(loadConfig(shippedEnv()).command).toEqual(['drush', '@hostmaster', 'hosting-task', '{nid}', '--strict=0']);
  });

  it.each(['aegir-taskd.supervisor.conf', 'aegir-taskd-instance.supervisor.conf'])(
    'has a supervisor program (%s) that signals the service only, waits longer than the shutdown grace, and gives tasks the service user\'s HOME and USER',
    async (name) => {
      const program = settingsOf(await readDeployFile(name));
      const grace = loadConfig(shippedEnv()).shutdownGraceMs / 1000;
      expect(program.get('stopasgroup')).toBe('false');
      expect(program.get('killasgroup')).toBe('false');
      expect(Number(program.get('stopwaitsecs'))).toBeGreaterThan(grace);
      expect(program.get('autorestart')).toBe('unexpected');
      expect(program.get('umask')).toBe('022');
      const user = program.get('user')!;
      expect(program.get('environment')).toBe(`HOME="${program.get('directory')}",USER="${user}",LOGNAME="${user}"`);
    },
  );
});

describe('README', () => {
  it('documents every setting in its configuration table', async () => {
    const { settings } = await import('../src/config.js');
    const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
    for (const s of settings) expect(readme).toMatch(new RegExp(`^\\| \`${s.env}\` \\| \`--${s.flag}\` \\|`, 'm'));
  });
});

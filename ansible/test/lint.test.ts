/**
 * Static checks of the Ansible content: ansible-lint with the production profile (offline, only
 * the collections shipped in Debian's ansible package) and `--syntax-check` of every playbook
 * with each inventory it is meant for.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ansibleDir, requireTools, run, vaultArgs } from './ansible.js';

describe('ansible content', () => {
  test('ansible-lint passes with the production profile, offline', async () => {
    requireTools();
    const config = await readFile(path.join(ansibleDir, '.ansible-lint'), 'utf8');
    assert.match(config, /^profile: production$/m);
    assert.match(config, /^offline: true$/m);
    const lint = await run('ansible-lint', ['--offline', '--profile', 'production', '--nocolor', '-p']);
    assert.equal(lint.code, 0, lint.output);
    assert.match(lint.output, /Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);
  });

  const playbooks: Array<[string, string]> = [
    ['site.yml', 'inventories/one-host'],
    ['site.yml', 'inventories/cluster'],
    ['site.yml', 'test/inventories/localhost'],
    ['test/render.yml', 'inventories/cluster'],
  ];
  for (const [playbook, inventory] of playbooks) {
    test(`${playbook} passes --syntax-check with ${inventory}`, async () => {
      requireTools();
      const check = await run('ansible-playbook', ['-i', inventory, ...vaultArgs, playbook, '--syntax-check']);
      assert.equal(check.code, 0, check.output);
      assert.match(check.stdout, new RegExp(`playbook: ${playbook.replace('.', '\\.')}`));
    });
  }

  test('a playbook with a syntax error is caught (the check is not vacuous)', async () => {
    requireTools();
    const check = await run('ansible-playbook', ['-i', 'inventories/one-host', 'test/fixtures/broken-playbook.yml', '--syntax-check']);
    assert.notEqual(check.code, 0);
    assert.match(check.output, /conflicting action statements|ERROR!/);
  });
});

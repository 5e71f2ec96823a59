/**
 * The roles' argument_specs and checks against good and bad inventories. `--tags validate` (a
 * tag no task has) runs only what is tagged `always`: every role's argument validation and its
 * checks, on every host of the inventory, without touching anything (check mode, local
 * connection, no fact gathering).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { playRecap, requireTools, run, vaultArgs } from './ansible.js';

const validateArgs = ['-e', 'ansible_connection=local', 'site.yml', '--check', '--tags', 'validate'];
const env = { ANSIBLE_GATHERING: 'explicit' };

function validate(inventory: string, extra: string[] = [], withVault = true) {
  return run('ansible-playbook', ['-i', inventory, ...(withVault ? vaultArgs : []), ...extra, ...validateArgs], env);
}

describe('argument_specs and checks', { concurrency: 3 }, () => {
  for (const [inventory, hosts, validations] of [
    // postgresql, redis, clickhouse, emqx, grafana, nginx once per host of their group; pepeunit's
    // install and rollout per application host, migrate once.
    ['inventories/one-host', ['unit.example.com'], 9],
    ['inventories/cluster', ['pu1.example.internal', 'pu2.example.internal', 'pu3.example.internal'], 17],
  ] as const) {
    test(`the example inventory ${inventory} passes every role's validation`, async () => {
      requireTools();
      const result = await validate(inventory);
      assert.equal(result.code, 0, result.output);
      const recap = playRecap(result.stdout);
      assert.deepEqual([...recap.keys()].sort(), [...hosts]);
      for (const [host, r] of recap) assert.equal(r.failed, 0, `${host}: ${result.output}`);
      // One argument validation per role and host it applies to (pepeunit: install, migrate, rollout).
      const okLines = result.stdout.match(/Validating arguments against arg spec[^\n]*\n(ok: \[[^\]]+\]\n)+/g) ?? [];
      assert.equal(okLines.reduce((n, block) => n + (block.match(/^ok: /gm)?.length ?? 0), 0), validations, result.stdout);
    });
  }

  const bad: Array<{ name: string; inventory?: string; file: string; message: RegExp }> = [
    { name: 'a wrong type', file: 'wrong-type.yml', message: /argument 'pepeunit_backend_replicas' is of type .* and we were unable to convert to int/ },
    { name: 'a value outside the choices', file: 'bad-choice.yml', message: /value of emqx_tls_mode must be one of: none, self-signed, provided, got: maybe/ },
    { name: 'an ingest intake mode that does not exist', file: 'bad-intake.yml', message: /value of pepeunit_ingest_intake_mode must be one of: rules, go-compatible, got: kafka/ },
    { name: 'a placeholder secret', file: 'placeholder-secret.yml', message: /none of them the CHANGE-ME placeholder/ },
    { name: 'an encryption key that is not 32 bytes', file: 'short-encrypt-key.yml', message: /pepeunit_encrypt_key \(base64 of exactly 32 bytes/ },
    { name: 'the embedded broker next to EMQX hosts', file: 'embedded-and-emqx.yml', message: /embedded services only on a single-host install/ },
    { name: 'two Keeper nodes', inventory: 'inventories/cluster', file: 'even-keepers.yml', message: /1, 3 or 5 keeper hosts/ },
  ];
  for (const c of bad) {
    test(`refuses ${c.name} before changing anything`, async () => {
      requireTools();
      const result = await validate(c.inventory ?? 'inventories/one-host', ['-e', `@test/fixtures/bad/${c.file}`]);
      assert.notEqual(result.code, 0, result.output);
      assert.match(result.output, c.message);
      for (const [host, r] of playRecap(result.stdout)) assert.equal(r.changed, 0, host);
    });
  }

  test('refuses an inventory without its vault, naming the missing secret', async () => {
    requireTools();
    const result = await validate('inventories/one-host', [], false);
    assert.notEqual(result.code, 0);
    assert.match(result.output, /'vault_postgres_password' is undefined/);
  });
});

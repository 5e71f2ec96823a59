/**
 * Runs the Debian-packaged Ansible tools for the tests: `ansible-playbook` and `ansible-lint`
 * with this directory's ansible.cfg, no colours, and the test vault. scripts/bootstrap.sh installs
 * them (apt: ansible, ansible-lint) when missing.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ansibleDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const vaultArgs = ['-e', '@test/fixtures/vault.yml', '--vault-password-file', 'test/fixtures/vault-password.txt'];

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr, for assertion messages. */
  output: string;
}

/** Runs `command` in the ansible directory; never rejects (the exit code is in the result). */
export function run(command: string, args: readonly string[], env: Record<string, string> = {}, timeoutMs = 300_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      {
        cwd: ansibleDir,
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        env: {
          ...process.env,
          ANSIBLE_CONFIG: path.join(ansibleDir, 'ansible.cfg'),
          ANSIBLE_NOCOLOR: '1',
          ANSIBLE_FORCE_COLOR: '0',
          ANSIBLE_DEPRECATION_WARNINGS: 'false',
          ANSIBLE_LOCALHOST_WARNING: 'false',
          ANSIBLE_INVENTORY_UNPARSED_WARNING: 'false',
          PY_COLORS: '0',
          NO_COLOR: '1',
          ...env,
        },
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr, output: `${stdout}\n${stderr}` });
      },
    );
  });
}

/** Fails with an actionable message when the Ansible tools are missing. */
export function requireTools(): void {
  for (const tool of ['ansible-playbook', 'ansible-lint']) {
    const found = (process.env.PATH ?? '').split(path.delimiter).some((dir) => existsSync(path.join(dir, tool)));
    if (!found) throw new Error(`${tool} is not installed: run scripts/bootstrap.sh (apt-get install ansible ansible-lint)`);
  }
}

export interface Recap {
  ok: number;
  changed: number;
  unreachable: number;
  failed: number;
  skipped: number;
  rescued: number;
  ignored: number;
}

/** The PLAY RECAP line of every host. */
export function playRecap(output: string): Map<string, Recap> {
  const recap = new Map<string, Recap>();
  const line = /^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)/gm;
  for (const m of output.matchAll(line)) {
    const [, host, ok, changed, unreachable, failed, skipped, rescued, ignored] = m.map((x) => x ?? '');
    recap.set(host as string, {
      ok: Number(ok),
      changed: Number(changed),
      unreachable: Number(unreachable),
      failed: Number(failed),
      skipped: Number(skipped),
      rescued: Number(rescued),
      ignored: Number(ignored),
    });
  }
  return recap;
}

/**
 * The quick start's generated secrets (`.data/secrets.env`, `NAME=value` lines): created once per
 * data directory with mode 600 and reused, so tokens and encrypted data survive restarts. A file
 * written by an older version gets the secrets it lacks appended; existing values never change,
 * and a file that became readable by others is narrowed back to 600.
 */
import { appendFileSync, chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

export function loadOrCreateSecrets(file: string, generators: Readonly<Record<string, () => string>>): Record<string, string> {
  const secrets: Record<string, string> = existsSync(file)
    ? Object.fromEntries(
        readFileSync(file, 'utf8')
          .split('\n')
          .filter((line) => line.includes('='))
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      )
    : {};
  const missing = Object.keys(generators).filter((name) => !secrets[name]);
  for (const name of missing) secrets[name] = (generators[name] as () => string)();
  const lines = missing.map((name) => `${name}=${secrets[name]}\n`).join('');
  if (!existsSync(file)) writeFileSync(file, lines, { mode: 0o600 });
  else if (lines) appendFileSync(file, lines);
  chmodSync(file, 0o600);
  return secrets;
}

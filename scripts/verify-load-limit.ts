/**
 * Offline verification of a load_limit report (issue 14, docs/GRADES.md):
 *
 *   node --import tsx scripts/verify-load-limit.ts <report.json> [--public-key <base64 SPKI> | --key-file <file>]
 *
 * Checks the format, the hash chain over the iterations, that the grade is the highest MPS that
 * held, and the Ed25519 signature over the canonical JSON. With --public-key / --key-file (the
 * key fetched once from the instance's /.well-known/pepeunit-instance-key) the signature proves
 * the report came from that instance; without, it only proves the report is intact under the key
 * it names. Exit status 0 = valid, 1 = invalid, 2 = usage error. Needs no network.
 */
import { readFileSync } from 'node:fs';
import { verifyReport } from '../backend/src/grades/report.ts';

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: verify-load-limit <report.json> [--public-key <base64> | --key-file <file>]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let file: string | undefined;
let trusted: string | undefined;
for (let i = 0; i < args.length; i++) {
  const arg = args[i] as string;
  if (arg === '--public-key') trusted = args[++i] ?? usage('--public-key needs a value');
  else if (arg === '--key-file') {
    const text = readFileSync(args[++i] ?? usage('--key-file needs a value'), 'utf8').trim();
    // Either the well-known JSON document or the bare base64 key.
    trusted = text.startsWith('{') ? String((JSON.parse(text) as { public_key?: string }).public_key ?? '') : text;
  } else if (!file) file = arg;
  else usage(`unexpected argument ${arg}`);
}
if (!file) usage('no report file given');
let document: unknown;
try {
  document = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  process.stdout.write(`INVALID: ${file} is not readable JSON (${err instanceof Error ? err.message : String(err)})\n`);
  process.exit(1);
}
const result = verifyReport(document, { trustedPublicKey: trusted });
if (result.ok) {
  const report = document as { instance: { domain: string; key_id: string }; grade: { mps: number | null; iterations: unknown[] } | null; generated_at: string };
  process.stdout.write(
    `VALID: load_limit of ${report.instance.domain} (key ${report.instance.key_id}${result.keyTrusted ? ', trusted' : ', NOT checked against a trusted key'}), ` +
      `grade ${report.grade ? `${String(report.grade.mps)} MPS over ${report.grade.iterations.length} iterations` : 'none'}, generated ${report.generated_at}\n`,
  );
  process.exit(0);
}
process.stdout.write(`INVALID:\n${result.problems.map((p) => `  - ${p}`).join('\n')}\n`);
process.exit(1);

/** Regenerates the variable tables of docs/OPERATIONS.md from common/src/config.ts (the one source of truth). */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BACKEND_VARIABLES, INGEST_VARIABLES, variablesMarkdown } from '@pepeunit/common';

const file = join(resolve(import.meta.dirname, '..'), 'docs/OPERATIONS.md');
const text = readFileSync(file, 'utf8');
const start = text.indexOf('<!-- variables:start');
const end = text.indexOf('<!-- variables:end -->');
if (start < 0 || end < 0) throw new Error('markers missing in docs/OPERATIONS.md');
const startLineEnd = text.indexOf('\n', start) + 1;
const body = [
  '### Backend (`backend/src/server.ts`)',
  '',
  variablesMarkdown(BACKEND_VARIABLES),
  '',
  '### Ingest (`ingest-go-compatible/src/main.ts`)',
  '',
  variablesMarkdown(INGEST_VARIABLES),
  '',
].join('\n');
writeFileSync(file, text.slice(0, startLineEnd) + body + text.slice(end));
process.stdout.write('docs/OPERATIONS.md variables updated\n');

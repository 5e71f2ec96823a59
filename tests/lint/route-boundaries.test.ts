import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { ESLint } from 'eslint';

const root = resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: root });

async function problems(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: resolve(root, filePath) });
  return result!.messages.filter((m) => m.ruleId === 'pepeunit/route-boundaries').map((m) => m.message);
}

test('an import from one routes/api/v1 resource folder into another is an error', async () => {
  const found = await problems(`import { x } from '../unit_nodes/anything.js';\nexport const y = x;\n`, 'backend/src/routes/api/v1/units/example.ts');
  assert.equal(found.length, 1);
  assert.match(found[0]!, /reaches into the 'unit_nodes' resource from the 'units' resource; move what is shared to backend\/src\/domain/);
  const nested = await problems(`export * from '../../units/index.js';\n`, 'backend/src/routes/api/v1/unit_nodes/datapipe/example.ts');
  assert.equal(nested.length, 1, 'from a subfolder too, and for re-exports');
});

test('code outside routes reaches into a resource only from app.ts (the wiring)', async () => {
  assert.equal((await problems(`import r from './routes/api/v1/units/index.js';\nexport default r;\n`, 'backend/src/jobs/example.ts')).length, 0, 'jobs/ is two levels deeper: not a route path');
  assert.equal((await problems(`import r from '../routes/api/v1/units/index.js';\nexport default r;\n`, 'backend/src/jobs/example.ts')).length, 1);
  assert.equal((await problems(`import r from './routes/api/v1/units/index.js';\nexport default r;\n`, 'backend/src/app.ts')).length, 0);
});

test('imports inside one resource, into domain/ and the real tree are fine', async () => {
  assert.deepEqual(await problems(`import { a } from './reads.js';\nimport { b } from '../../../../../domain/unit-rows.js';\nexport const c = [a, b];\n`, 'backend/src/routes/api/v1/unit_nodes/datapipe/example.ts'), []);
  const results = await eslint.lintFiles(['backend/src/**/*.ts']);
  const crossings = results.flatMap((r) => r.messages.filter((m) => m.ruleId === 'pepeunit/route-boundaries').map((m) => `${r.filePath}: ${m.message}`));
  assert.deepEqual(crossings, [], 'the backend itself has no crossing');
});

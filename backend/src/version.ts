import { readFileSync } from 'node:fs';

const rootPackage = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  name: string;
  version: string;
  description: string;
  license: string;
};

/** Instance metadata for `GET /pepeunit` (the reference reads it from pyproject.toml). */
export const projectInfo = {
  name: 'pepeunit-ts',
  version: rootPackage.version,
  description: rootPackage.description,
  license: rootPackage.license,
  authors: [{ name: 'Pepeunit TS developers', email: 'dev@pepeunit.invalid' }],
};

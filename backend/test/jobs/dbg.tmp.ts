import { createLogger } from '@pepeunit/common';
import { startRegistryBackend } from './registry-test-kit.js';
const t = await startRegistryBackend('dbg', {}, createLogger('x', { level: 'warn' }));
const r = await t.call('GET', '/repository_registry/search?platform=Gitlab');
console.log(r.status, r.raw);
await t.close();

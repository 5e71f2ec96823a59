export { buildApp } from './app.js';
export { startBackend, connectDependencies, migrateAll } from './runtime.js';
export type { RunningBackend } from './runtime.js';
export type { AppDeps } from './deps.js';
export * from './errors.js';

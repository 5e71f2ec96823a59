export * from './errors.js';
export * from './validation.js';
export * from './versions.js';
export * from './metadata.js';
export * from './platform-clients.js';
export {
  GitStore,
  directorySize,
  type GitStoreOptions,
  type GitLogger,
  type GitCredentials,
  type SyncOptions,
  type SyncProgress,
  type SyncResult,
  type TagInfo,
  type TreeEntry,
} from './git-store.js';

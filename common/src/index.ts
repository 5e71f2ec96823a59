export * from './config.js';
export * from './topics.js';
export * from './jwt.js';
export * from './logger.js';
export * from './ports.js';
export * from './process.js';
export * from './client-ids.js';

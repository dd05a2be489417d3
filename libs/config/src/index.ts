export * from './env.js';
export * from './load.js';
export * from './presets.js';
export * from './secret.js';
export type * from './types.js';
export { senderId } from './schema.js';
export * from './smtp-options.js';
export { formatIssues, keyPath } from './issues.js';

export * from './errors.js';
export * from './duration.js';
export * from './lifecycle.js';
export * from './ids.js';
export * from './node-flags.js';
export * from './services.js';
export * from './parent.js';
export type * from './internal-auth.js';

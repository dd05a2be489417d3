export * from './store.js';
export * from './live-config.js';

export * from './run-main.js';
export * from './connect.js';
export * from './sender-worker.js';

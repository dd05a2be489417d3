export * from './bus.js';
export * from './bodies.js';
export * from './names.js';
export * from './topology.js';
export * from './consumers.js';
export * from './worker.js';
export * from './consume-loop.js';
export * from './trace.js';

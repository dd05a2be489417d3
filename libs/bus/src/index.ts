export * from './bus.js';
export * from './bodies.js';
export * from './names.js';
export * from './topology.js';

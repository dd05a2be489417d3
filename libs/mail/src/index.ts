export * from './address.js';
export * from './validate.js';
export * from './remedies.js';

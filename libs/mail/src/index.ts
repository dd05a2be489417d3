export * from './address.js';
export * from './validate.js';
export * from './remedies.js';
export * from './graph-errors.js';
export * from './mime-headers.js';
export * from './ndr.js';

export * from './address.js';
export * from './validate.js';
export * from './remedies.js';
export * from './graph-errors.js';
export * from './mime-headers.js';
export * from './reachability.js';
export * from './tls-failure.js';
export * from './smtp-failure.js';

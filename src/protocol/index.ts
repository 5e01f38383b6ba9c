export * from './ids.js';
export * from './spec.js';
export * from './body.js';
export * from './tags.js';
export * from './validate.js';

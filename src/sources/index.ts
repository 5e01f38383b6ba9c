export * from './types.js';
export { TablesSource } from './tables.js';

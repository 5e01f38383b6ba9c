export * from './outcome.js';
export * from './summary.js';
export * from './handler.js';
export * from './dispatcher.js';
export {
  constructHandler,
  loadHandlerClass,
  registerBuiltinHandler,
  BUILTIN_HANDLERS,
  HandlerLoadError,
  type HandlerSpec,
  type LoadedHandler,
} from './load.js';

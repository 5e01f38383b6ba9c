export {
  CentralSite,
  Conversation,
  type CentralSiteOptions,
  type Check,
  type ConversationExpectations,
  type ConversationState,
} from './central.js';
export { SimData, type SimPerson } from './people.js';
export {
  EXTRA_CHECKS,
  OFFICIAL_SCENARIOS,
  SCENARIO_DESCRIPTIONS,
  SCENARIO_NAMES,
  resolveScenarioNames,
  type ScenarioName,
} from './scenario-names.js';
export {
  runScenario,
  runScenarios,
  queueScenarios,
  type ConversationRow,
  type ScenarioReport,
  type SimulationOptions,
  type SiteRunner,
} from './scenarios.js';
export { formatScenarioReport, formatVerdict, textTable } from './report.js';
export {
  AMIE_API_PATH,
  USAGE_API_PATH,
  RestSimulator,
  type Fault,
  type RestSimulatorOptions,
  type ServedRequest,
} from './http.js';
export { UsageApiState, type UsagePost } from './usage-api.js';
export { SIMULATOR_KEY_ENV, remoteSite, restSourceFor } from './rest-site.js';

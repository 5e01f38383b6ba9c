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
  runScenario,
  runScenarios,
  type ConversationRow,
  type ScenarioName,
  type ScenarioReport,
  type SimulationOptions,
  type SiteRunner,
} from './scenarios.js';
export { formatScenarioReport, formatVerdict, textTable } from './report.js';

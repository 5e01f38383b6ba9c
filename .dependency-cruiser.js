/**
 * Import rules checked by `npm run lint` (dependency-cruiser). Every import counts, `import type`
 * included: a circle of types is still a circle a reader has to untangle, and it is how value
 * circles start.
 */

/**
 * The layers, lowest first. A module may import its own layer and the ones below it, never one
 * above: the protocol knows nothing of databases, the store nothing of packet sources, and so on.
 * Modules outside these folders (config, log, notify, usage, simulator, cli...) are not ranked.
 */
const LAYERS = [
  ['src/protocol'],
  ['src/db'],
  ['src/store'],
  ['src/registry', 'src/sources'],
  ['src/dispatch'],
  ['handlers'],
];

const under = (folders) => `^(${folders.join('|')})/`;

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import circles make load order matter and layers meaningless; move the shared part lower.',
      from: {},
      to: { circular: true },
    },
    ...LAYERS.slice(0, -1).map((layer, i) => ({
      name: `no-upward-from-${layer.join('-').replaceAll('/', '-')}`,
      severity: 'error',
      comment: `${layer.join(' and ')} must not import a higher layer (${LAYERS.slice(i + 1)
        .flat()
        .join(', ')}).`,
      from: { path: under(layer) },
      to: { path: under(LAYERS.slice(i + 1).flat()) },
    })),
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that resolves to nothing fails at run time.',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // `.js` specifiers resolve to the `.ts` sources through the project's own settings.
    tsConfig: { fileName: 'tsconfig.json' },
    // Keep imports TypeScript erases (`import type`) in the graph.
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    // Packages that name their entry points only in package.json "exports" (vega-lite) resolve as Node does.
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'types', 'default'],
    },
    exclude: { path: '^dist/' },
  },
};

/**
 * ESLint for the whole tree (`npm run lint`): typescript-eslint's type-checked recommended rules,
 * with the exceptions below where a rule fights a deliberate style of this code, each with its
 * reason. Formatting is Prettier's business, not ESLint's.
 */
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // Each file is checked with the tsconfig that builds it; config files outside every
        // tsconfig get a default project.
        projectService: { allowDefaultProject: ['vitest.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A leading underscore marks a parameter kept for the documented signature (the handler
      // hooks a subclass overrides) or a field dropped by a rest pattern.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
      // Handler methods and hooks are async by contract: an override may await, and a throw
      // must reach the dispatcher as a rejection, so an async method without await is deliberate.
      '@typescript-eslint/require-await': 'off',
      // Values read from database rows and outside JSON are `unknown` (`{}` once null is ruled
      // out) and are turned into text with String() on purpose.
      '@typescript-eslint/no-base-to-string': 'off',
      // Matching control characters is the point of these patterns: outside text is checked and
      // cleaned of them before it reaches a terminal, a log or a command line.
      'no-control-regex': 'off',
    },
  },
  {
    // Tests read outside answers (JSON from the simulator and the fake servers) as they come and
    // let expect() judge the shape; typing every answer first would only repeat the assertions.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Plain JavaScript (config files, test fixtures run by node) has no types to check.
    files: ['**/*.{js,mjs,cjs}'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setTimeout: 'readonly' },
    },
  },
);

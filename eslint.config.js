// Lint: eslint recommended + typescript-eslint recommended (type-unaware, fast).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import routeBoundaries from './scripts/eslint/route-boundaries.js';

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', '**/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', fetch: 'readonly', AbortSignal: 'readonly', performance: 'readonly', NodeJS: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly', AbortController: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'warn',
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    files: ['backend/src/**/*.ts'],
    plugins: { pepeunit: { rules: { 'route-boundaries': routeBoundaries } } },
    rules: { 'pepeunit/route-boundaries': 'error' },
  },
);

import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: [
      'libs/*/src/**/*.test.ts',
      'console/src/**/*.test.ts',
      'services/*/src/**/*.test.ts',
      'tools/src/**/*.test.ts',
      'cli/src/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'infra/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Starts MinIO and moto (or names an external endpoint) for the S3 tests: see test/support/s3-env.ts.
    globalSetup: ['test/support/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
  },
});

/**
 * Builds the CDK app the same way for `cdk synth`, the template script and the
 * tests, so the committed template and a fresh synth cannot drift apart by
 * configuration, only by code.
 *
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, CliCredentialsStackSynthesizer } from 'aws-cdk-lib/core';
import { CairnBucketStack } from './cairn-bucket-stack.js';

/** The stack's name, also the default CloudFormation stack name. */
export const STACK_NAME = 'CairnBucket';

/**
 * A fresh app holding the Cairn stack.
 *
 * Settings that would otherwise come from the CDK CLI are fixed here, after
 * the CLI's context (`postCliContext`), so `cdk synth` and a plain synth emit
 * the same template: no per-resource CDK path metadata and no CDK analytics
 * resource, neither of which means anything to a CloudFormation-only user.
 * The CLI-credentials synthesizer needs no `cdk bootstrap` and adds no
 * bootstrap-version parameter, so the template deploys as it is.
 *
 * @example
 * ```ts
 * const { app, stack } = buildApp();
 * const template = app.synth().getStackByName(stack.stackName).template;
 * ```
 */
export function buildApp(options: { outdir?: string } = {}): { app: App; stack: CairnBucketStack } {
  const app = new App({
    ...options,
    analyticsReporting: false,
    postCliContext: { 'aws:cdk:enable-path-metadata': false },
  });
  const stack = new CairnBucketStack(app, STACK_NAME, {
    synthesizer: new CliCredentialsStackSynthesizer(),
  });
  return { app, stack };
}

/** A finding of the CloudFormation validation the CDK runs at synth time. */
export interface Violation {
  ruleName: string;
  description: string;
  severity: string;
}

/**
 * Synthesizes the stack: its CloudFormation template as a JSON value, and
 * what the CDK's built-in CloudFormation validation (resource schemas and
 * cfn-lint rules) reported about it. The cloud assembly is written to a
 * temporary folder that is removed before returning.
 */
export function synth(): { template: Record<string, unknown>; violations: Violation[] } {
  const outdir = mkdtempSync(join(tmpdir(), 'cairn-cdk-'));
  try {
    const { app, stack } = buildApp({ outdir });
    const template = app.synth().getStackByName(stack.stackName).template as Record<string, unknown>;
    const reportPath = join(outdir, 'validation-report.json');
    const report = existsSync(reportPath)
      ? (JSON.parse(readFileSync(reportPath, 'utf8')) as { pluginReports?: { violations?: Violation[] }[] })
      : {};
    const violations = (report.pluginReports ?? []).flatMap((plugin) => plugin.violations ?? []);
    return { template, violations };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** The stack's CloudFormation template as a JSON value. */
export function synthTemplate(): Record<string, unknown> {
  return synth().template;
}

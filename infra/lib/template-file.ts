/**
 * Where the committed CloudFormation template lives and how it is written, shared
 * by the regeneration script and the test that checks it is current.
 *
 * @module
 */
import { fileURLToPath } from 'node:url';

/** The committed template, for users who deploy with CloudFormation alone. */
export const TEMPLATE_PATH = fileURLToPath(new URL('../template/cairn-bucket.template.json', import.meta.url));

/** The template as it is written to disk: two-space JSON with a final newline. */
export function formatTemplate(template: unknown): string {
  return `${JSON.stringify(template, null, 2)}\n`;
}

// Regenerates the committed template: `npm run template -w @cairn/infra`.
// Refuses to write one that the CDK's CloudFormation validation flags.
import { writeFile } from 'node:fs/promises';
import { synth } from '../lib/app.js';
import { formatTemplate, TEMPLATE_PATH } from '../lib/template-file.js';

const { template, violations } = synth();
if (violations.length > 0) {
  for (const v of violations) console.error(`${v.severity} ${v.ruleName}: ${v.description}`);
  console.error('template not written: fix the findings above');
  process.exit(1);
}
await writeFile(TEMPLATE_PATH, formatTemplate(template));
console.log(`wrote ${TEMPLATE_PATH}`);

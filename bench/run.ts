/**
 * `npm run bench`: runs every benchmark section, or the ones named on the
 * command line (`npm run bench -- hash disk`). Each section compares Cairn
 * with a baseline measured in the same run.
 */
const sections: Record<string, () => Promise<{ run(): Promise<void> }>> = {
  hash: () => import('./hash.js'),
  memory: () => import('./memory.js'),
  s3: () => import('./s3.js'),
  disk: () => import('./disk.js'),
  deploy: () => import('./deploy.js'),
  layers: () => import('./layers.js'),
  cli: () => import('./cli.js'),
  backup: () => import('./backup.js'),
  data: () => import('./data.js'),
  packs: () => import('./packs.js'),
  crypto: () => import('./crypto.js'),
};

const wanted = process.argv.slice(2);
const names = wanted.length > 0 ? wanted : Object.keys(sections);
console.log(`cairn bench: node ${process.version}, ${new Date().toISOString()}`);
for (const name of names) {
  const load = sections[name];
  if (load === undefined) {
    console.error(`unknown bench section "${name}"; known: ${Object.keys(sections).join(', ')}`);
    process.exit(2);
  }
  await (await load()).run();
}

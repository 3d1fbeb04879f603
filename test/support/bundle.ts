/**
 * Bundles a TypeScript child script into one ESM file with esbuild, so that
 * the crash tests' children start as plain Node (about 50 ms) rather than
 * through a TypeScript loader (about 400 ms): they start dozens of them.
 */
import { build } from 'esbuild';

/** Options of {@link bundleScript}. */
export interface BundleOptions {
  /** Packages left out of the bundle and loaded from node_modules at run time (a WebAssembly package that finds its file next to itself). */
  external?: string[];
}

/** Writes `entry` (a .ts path) and everything it imports to `outfile` (.mjs). */
export async function bundleScript(entry: string, outfile: string, options: BundleOptions = {}): Promise<void> {
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'error',
    external: options.external,
    // Bundled CommonJS dependencies call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
}

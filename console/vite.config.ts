import { defineConfig } from 'vite';

// Preact's JSX runtime; everything is bundled into dist/ (no CDN), served by ingest.
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, target: 'es2022' },
});

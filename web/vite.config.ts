// The dashboard: built into dist/web, which every server node serves next to its HTTP API
// (same origin, no external network at run time: every file comes from the node).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  build: { outDir: fileURLToPath(new URL('../dist/web', import.meta.url)), emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 400 },
  // `vite` for working on the page: the API calls go to a node running with --http 127.0.0.1:8080.
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});

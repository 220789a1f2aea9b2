/** After each test file: its processes stopped, then the folders it made removed. */
import { afterAll } from 'vitest';
import { removeTempDirs, stopAll } from './processes.js';

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

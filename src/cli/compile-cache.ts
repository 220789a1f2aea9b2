/**
 * Node 22.1 and later can cache compiled code on disk (module.enableCompileCache): every later
 * start of nxt-server and nxt-client then skips parsing its modules. Node 20 lacks it; there this
 * does nothing.
 */
import module from 'node:module';

export function enableCompileCache(): void {
  const enable = (module as { enableCompileCache?: () => unknown }).enableCompileCache;
  try {
    enable?.call(module);
  } catch {
    // A cache directory that cannot be written only costs speed.
  }
}

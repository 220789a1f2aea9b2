/** The words an installer runs with: the device's command, the file's path in place of {file}. */
import { describe, expect, it } from 'vitest';
import { installerArgv } from '../../src/jobs/installer.js';

describe('installer commands', () => {
  it('put the path where {file} is, as one word, never through a shell', () => {
    expect(installerArgv('apt-get install -y {file}', '/var/lib/nxt/install/job-7.deb')).toEqual(['apt-get', 'install', '-y', '/var/lib/nxt/install/job-7.deb']);
    expect(installerArgv('swupdate -i {file} -v', '/x/job 1.swu')).toEqual(['swupdate', '-i', '/x/job 1.swu', '-v']);
    expect(installerArgv('  rauc   install ', '/x/b.raucb')).toEqual(['rauc', 'install', '/x/b.raucb']); // no {file}: last
    expect(installerArgv('sh -c {file};reboot', '/x/a')).toEqual(['sh', '-c', '/x/a;reboot']); // one word, no shell parsing here
    expect(() => installerArgv('   ', '/x')).toThrow(/empty/);
  });
});

// Example plugin, release 2.0: push it and watch clients switch to 8.6 without a restart.
export default function productVersion() {
  return { major: 8, minor: 6, productName: 'nxtgen' };
}

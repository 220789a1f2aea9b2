// Example plugin, release 1.0: the same product version the client ships with.
export default function productVersion() {
  return { major: 5, minor: 6, productName: 'nxtgen' };
}

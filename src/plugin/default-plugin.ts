/** The plugin every client ships with, active until a newer signed module is pushed. */
export default function productVersion(): { major: number; minor: number; productName: string } {
  return { major: 5, minor: 6, productName: 'nxtgen' };
}

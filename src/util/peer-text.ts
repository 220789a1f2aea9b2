/**
 * Text that came from a peer (a device's messages, product name, inventory, report; a file name
 * on the wire), made safe to show. A terminal obeys the control characters in what it prints: an
 * escape sequence from a device could recolour, clear or rewrite the operator's console, and a
 * line feed could print a line of ours it never sent ("push finished: …"). Bidirectional overrides
 * reorder what is shown the same way (as in "Trojan Source"). So every C0 and C1 control, DEL and
 * bidirectional formatting character is replaced: tab, line feed and carriage return by a space,
 * the others by U+FFFD, which shows that something was there. Valid JSON stays valid JSON (the
 * only controls it may hold unescaped are whitespace between its tokens).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function peerText(text: string): string {
  // Nearly all text is clean: test first, so that it is returned as it is, uncopied.
  UNSAFE.lastIndex = 0;
  if (!UNSAFE.test(text)) return text;
  return text.replace(UNSAFE, (c) => (c === '\t' || c === '\n' || c === '\r' ? ' ' : '\ufffd'));
}

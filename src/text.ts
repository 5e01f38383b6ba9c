/**
 * Packet text on its way to a person: a terminal acts on escape sequences (clear the screen,
 * retitle the window, hide a line, forge a hyperlink) and bidirectional overrides reorder what
 * is shown, so such characters are shown as escapes instead (`\u001b`), never passed through.
 */

/** C0 and C1 controls, DEL, line and paragraph separators, bidirectional embeddings, overrides and isolates. */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const CONTROLS_BUT_LAYOUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escape(c: string): string {
  return Object.hasOwn(NAMED, c) ? NAMED[c]! : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Every control character of `text` as a visible escape. With `keepLayout`, line breaks and
 * tabs stay as they are: for output whose own lines and columns they make, not for a field.
 */
export function escapeControls(text: string, opts: { keepLayout?: boolean } = {}): string {
  return text.replace(opts.keepLayout ? CONTROLS_BUT_LAYOUT : CONTROLS, escape);
}

/** An age for people: `45s`, `12m`, `3h20m`, `2d4h`. */
export function formatAge(seconds: number): string {
  if (seconds < 120) return `${Math.floor(seconds)}s`;
  if (seconds < 2 * 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 2 * 86400)
    return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60) ? `${Math.floor((seconds % 3600) / 60)}m` : ''}`;
  return `${Math.floor(seconds / 86400)}d${Math.floor((seconds % 86400) / 3600) ? `${Math.floor((seconds % 86400) / 3600)}h` : ''}`;
}

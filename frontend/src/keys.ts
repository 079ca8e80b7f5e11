/**
 * Keyboard shortcuts: one table gives both what a key does and the help text, so the help lists every
 * shortcut there is. Mouse gestures are listed beside them.
 */

export type Action =
  | "undo" | "redo" | "reset" | "accept" | "mode-prompt" | "mode-brush" | "mode-eraser" | "mode-navigate"
  | "next-suv" | "next-unit" | "next-colormap" | "fusion" | "visibility" | "brush-smaller" | "brush-larger" | "help" | "close"
  | "slice-up" | "slice-down";

interface Shortcut {
  /** what the help shows */
  keys: string;
  text: string;
  /** which key events trigger it */
  match: (e: KeyLike) => boolean;
  action: Action;
}

export interface KeyLike {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  shiftKey?: boolean;
}

const ctrl = (e: KeyLike) => Boolean(e.ctrlKey || e.metaKey);
const plain = (...keys: string[]) => (e: KeyLike) => !ctrl(e) && keys.includes(e.key);

export const SHORTCUTS: Shortcut[] = [
  { keys: "P", text: "prompt mode", match: plain("p", "P"), action: "mode-prompt" },
  { keys: "B", text: "brush mode", match: plain("b", "B"), action: "mode-brush" },
  { keys: "E", text: "eraser mode", match: plain("e", "E"), action: "mode-eraser" },
  { keys: "N", text: "navigate mode (a click moves the crosshair)", match: plain("n", "N"), action: "mode-navigate" },
  { keys: "Ctrl+Z", text: "undo the last prompt, brush or eraser stroke", match: (e) => ctrl(e) && !e.shiftKey && e.key.toLowerCase() === "z", action: "undo" },
  { keys: "Ctrl+Shift+Z, Ctrl+Y", text: "redo", match: (e) => ctrl(e) && ((e.shiftKey && e.key.toLowerCase() === "z") || e.key.toLowerCase() === "y"), action: "redo" },
  { keys: "R", text: "reset the active label's prompts", match: plain("r", "R"), action: "reset" },
  { keys: "Enter", text: "accept: save the mask as an object", match: plain("Enter"), action: "accept" },
  { keys: "W", text: "next SUV window preset", match: plain("w", "W"), action: "next-suv" },
  { keys: "U", text: "next SUV unit (SUVbw, SUL, ...): every number follows", match: plain("u", "U"), action: "next-unit" },
  { keys: "C", text: "next colour map", match: plain("c", "C"), action: "next-colormap" },
  { keys: "F", text: "PET/CT fusion on / off", match: plain("f", "F"), action: "fusion" },
  { keys: "V", text: "show / hide the active label's unsaved mask", match: plain("v", "V"), action: "visibility" },
  { keys: "[", text: "smaller brush", match: plain("["), action: "brush-smaller" },
  { keys: "]", text: "larger brush", match: plain("]"), action: "brush-larger" },
  { keys: "↑ / ↓", text: "next / previous slice of the view under the mouse", match: plain("ArrowUp"), action: "slice-up" },
  { keys: "", text: "", match: plain("ArrowDown"), action: "slice-down" },
  { keys: "?", text: "this help", match: plain("?"), action: "help" },
  { keys: "Esc", text: "close this help", match: plain("Escape"), action: "close" },
];

export const POINTER_HELP: [string, string][] = [
  ["click", "positive point (prompt mode)"],
  ["Shift+click, right click", "negative point"],
  ["drag", "box prompt"],
  ["1–9", "choose label 1–9"],
  ["wheel", "scroll slices"],
  ["Ctrl+drag, middle drag", "zoom, pan"],
  ["Alt+drag", "window / level"],
  ["double-click on the MIP", "jump to the hottest voxel along that ray"],
  ["click a segment row or a comment", "jump to it"],
];

/** The help table: every keyboard shortcut, then the mouse gestures. */
export function helpRows(): [string, string][] {
  return [...SHORTCUTS.filter((s) => s.keys).map((s) => [s.keys, s.text] as [string, string]), ...POINTER_HELP];
}

/** What a key press asks for: an action, a label (1–9, zero-based), or nothing. */
export function actionFor(e: KeyLike): Action | { label: number } | null {
  if (!ctrl(e) && /^[1-9]$/.test(e.key)) return { label: Number(e.key) - 1 };
  return SHORTCUTS.find((s) => s.match(e))?.action ?? null;
}

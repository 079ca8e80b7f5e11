/** Tiny DOM helpers, toasts, and the test hook `window.__studio`. */

export interface StudioState {
  ready: boolean;
  screen?: string;
  pendingPrompts: number;
  lastMaskVoxels: number | null;
  [key: string]: unknown;
}

declare global {
  interface Window {
    __studio: StudioState;
  }
}

export const studio: StudioState = (window.__studio = window.__studio ?? { ready: false, pendingPrompts: 0, lastMaskVoxels: null });

type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | ((e: Event) => void) | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (typeof v === "function") node.addEventListener(k.replace(/^on/, ""), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

export function escapeHtml(text: unknown): string {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function toast(message: string, kind: "ok" | "info" | "warn" | "error" = "info"): void {
  let box = document.getElementById("toasts");
  if (!box) {
    box = el("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const item = el("div", { class: `toast ${kind}` }, message);
  box.append(item);
  const log = (studio.toasts as string[] | undefined) ?? [];
  log.push(`${kind}: ${message}`);
  studio.toasts = log.slice(-50);
  setTimeout(() => item.remove(), kind === "error" ? 9000 : 4000);
}

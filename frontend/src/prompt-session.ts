/**
 * The prompt session over the scan's WebSocket: one server session per label, opened lazily on the first
 * prompt (and again after a reconnect), prompts queued while it opens, commands, and the seqs whose masks
 * the viewer already applied itself (local undo / redo). Viewer-level reactions go through `PromptEvents`.
 */
import type { Label } from "./api";
import { ScanSocket, scanSocketUrl, type DecodedMask, type ServerMessage } from "./protocol";
import { studio, toast } from "./ui";

export const ERROR_TEXT: Record<string, string> = {
  malformed: "The server did not understand a message.",
  too_large: "A message was too large for the server.",
  unknown_type: "The server does not support this action yet.",
  forbidden: "You are not allowed to do this.",
  not_found: "The session or label was not found (it may have been closed).",
  invalid_prompt: "That prompt is not valid (outside the scan?).",
  engine_unavailable: "The segmentation engine is not available right now.",
  worker_timeout: "The segmentation engine did not answer in time.",
  engine_failed: "The segmentation engine failed on this prompt.",
  conflict: "Your annotation changed elsewhere; reload to get the current version.",
  rate_limited: "Too many prompts; slow down a little.",
  not_connected: "Not connected to the server; reconnecting…",
};

export type Prompt = Parameters<ScanSocket["prompt"]>[1];

export interface PromptEvents {
  /** a mask for a label's session (labelId undefined when the session is unknown) */
  mask(mask: DecodedMask, labelId: number | undefined): void;
  hello(user: string, first: boolean): void;
  accepted(m: ServerMessage): void;
  othersAccepted(m: ServerMessage): void;
  presence(m: ServerMessage): void;
  /** an error was shown; the viewer clears what waited for it */
  failed(m: ServerMessage): void;
  /** sessions or pending prompts changed */
  changed(): void;
  state(state: string): void;
}

export interface SessionOptions {
  annotation: () => number | null;
  engine: () => string | null;
  activeLabel: () => Label | null;
}

export class PromptSessions {
  readonly socket: ScanSocket;
  private sessions = new Map<number, number | string>(); // label id → session
  private sessionLabels = new Map<string, number>(); // session → label id
  private openingLabel: number | null = null;
  private queued: { label: number; prompt: Prompt }[] = [];
  private suppressed = new Set<number>(); // seqs of server undo/redo whose masks the viewer applied itself
  private noHistory = new Set<number>(); // seqs of resets: their (empty) masks are not an edit step
  private disposers: (() => void)[] = [];
  private me = "";

  constructor(scanId: number, private options: SessionOptions, private events: PromptEvents) {
    this.socket = new ScanSocket(scanSocketUrl(location, scanId));
    studio.socket = this.socket;
  }

  get pending(): number {
    return this.socket.pendingPrompts + this.queued.length;
  }

  get isOpen(): boolean {
    return this.socket.state === "open";
  }

  hasSession(labelId: number): boolean {
    return this.sessions.has(labelId);
  }

  labelOf(session: number | string): number | undefined {
    return this.sessionLabels.get(String(session));
  }

  /** Send a prompt for a label, opening its session first when needed. */
  prompt(labelId: number, prompt: Prompt): boolean {
    if (!this.isOpen) {
      toast(ERROR_TEXT.not_connected, "warn");
      return false;
    }
    const session = this.sessions.get(labelId);
    if (session === undefined) {
      this.queued.push({ label: labelId, prompt });
      this.open(labelId);
    } else {
      this.socket.prompt(session, prompt);
    }
    this.events.changed();
    return true;
  }

  /** undo / redo / reset / accept of a label's session; the command's seq, or null without a session. */
  command(kind: "undo" | "redo" | "reset" | "accept", labelId: number, options: { suppressMask?: boolean } = {}): number | null {
    const session = this.sessions.get(labelId);
    if (session === undefined) return null;
    const seq = this.socket.command(kind, session);
    if (options.suppressMask) this.suppressed.add(seq);
    if (kind === "reset") this.noHistory.add(seq);
    this.events.changed();
    return seq;
  }

  /** Undo / redo a step of a given session (the step's own session, not necessarily the active label's). */
  followStep(kind: "undo" | "redo", session: number | string): void {
    this.suppressed.add(this.socket.command(kind, session));
  }

  acceptMask(labelId: number, bbox: Parameters<ScanSocket["acceptMask"]>[1], bits: Uint8Array | null): Promise<number> | null {
    const session = this.sessions.get(labelId);
    return session === undefined ? null : this.socket.acceptMask(session, bbox, bits);
  }

  /** The engine changed: each label's next prompt opens its session again (with the new engine). */
  forgetSessions(): void {
    this.sessions.clear();
    this.sessionLabels.clear();
  }

  /** Was this mask the server's side of a local undo / redo (then it is not applied again)? */
  takeSuppressed(seq: number): boolean {
    return this.suppressed.delete(seq);
  }

  takeNoHistory(seq: number): boolean {
    return this.noHistory.delete(seq);
  }

  activity(text: string): void {
    this.socket.activity(text);
  }

  private open(labelId: number): void {
    if (this.openingLabel === labelId) return;
    this.openingLabel = labelId;
    const annotation = this.options.annotation();
    const engine = this.options.engine();
    this.socket.openSession(labelId, { ...(annotation ? { annotation } : {}), ...(engine ? { engine } : {}) });
  }

  connect(): void {
    const socket = this.socket;
    const events = this.events;
    this.disposers.push(socket.onState((state) => {
      if (state === "open") {
        // sessions are re-opened (resumed) lazily on the next prompt after a reconnect
        this.forgetSessions();
        this.openingLabel = null;
        const label = this.options.activeLabel();
        if (label) socket.activity(`segmenting ${label.name}`);
      }
      events.state(state);
      events.changed();
    }));
    socket.on("hello", (m) => {
      const first = !this.me;
      this.me = String(m.user ?? "");
      events.hello(this.me, first);
    });
    socket.on("session.opened", (m) => {
      const label = Number(m.label);
      const session = m.session as number | string;
      this.sessions.set(label, session);
      this.sessionLabels.set(String(session), label);
      if (this.openingLabel === label) this.openingLabel = null;
      const queued = this.queued.filter((q) => q.label === label);
      this.queued = this.queued.filter((q) => q.label !== label);
      for (const q of queued) socket.prompt(session, q.prompt);
      events.changed();
    });
    socket.onMask((mask) => events.mask(mask, this.labelOf(mask.header.session)));
    socket.on("queued", (m) => {
      studio.queued = `queued: ${m.position} ahead, ~${Math.round(Number(m.expected_wait_ms ?? 0) / 1000)} s`;
    });
    socket.on("superseded", () => events.changed());
    socket.on("accepted", (m) => events.accepted(m));
    socket.on("mask.accepted", (m) => {
      if (String(m.user) !== this.me) events.othersAccepted(m);
    });
    socket.on("presence", (m) => events.presence(m));
    socket.on("progress", (m) => {
      const text = `${m.task}: ${Math.round(Number(m.fraction) * 100)}% ${m.message ?? ""}`;
      toast(m.error ? `${m.task} failed: ${m.error}` : text, m.error ? "error" : "info");
    });
    socket.on("notification", (m) => toast(`${m.by} ${String(m.event).replace("_", " ")} annotation ${m.annotation} (${m.state}).`, "info"));
    socket.on("error", (m) => {
      const text = ERROR_TEXT[String(m.code)] ?? "Something went wrong.";
      toast(`${text}${m.detail ? ` (${m.detail})` : ""}`, "error");
      if (m.code === "not_found" && m.session !== undefined) {
        const label = this.labelOf(m.session as string);
        if (label !== undefined) this.sessions.delete(label);
      }
      if (this.openingLabel !== null && m.seq === undefined) {
        this.queued = this.queued.filter((q) => q.label !== this.openingLabel);
        this.openingLabel = null;
      }
      studio.lastError = m;
      events.failed(m);
      events.changed();
    });
    socket.on("client.lost", () => toast("The connection dropped; prompts in flight were lost. Reconnecting…", "warn"));
    socket.on("client.fatal", (m) => {
      toast(m.code === 4401 ? "You are signed out. Sign in again." : "This scan is not available to you.", "error");
      if (m.code === 4401) location.href = `/accounts/login/?next=${encodeURIComponent("/" + location.hash)}`;
    });
    socket.connect();
  }

  close(): void {
    for (const d of this.disposers.splice(0)) d();
    this.socket.close();
  }
}

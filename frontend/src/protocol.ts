/**
 * Client of the scan WebSocket protocol v1 (docs/protocol.md).
 *
 * Binary frame: uint32 LE header length N, N bytes UTF-8 JSON header, then zlib-compressed
 * numpy.packbits (big bit order) of the boolean mask inside `bbox` (lower inclusive, upper
 * exclusive), C order [slice,row,col]. `bbox: null` = empty mask, no payload.
 */
import { deflate, inflate } from "pako";

export type Index3 = [number, number, number];
export type BBox = [Index3, Index3];

export interface MaskHeader {
  type: "mask" | "accept";
  session: number | string;
  seq: number;
  bbox: BBox | null;
  shape?: Index3;
  voxels?: number;
  score?: number;
  engine?: string;
  timings?: { queue?: number; setup?: number; engine?: number; total?: number };
  checksum?: string;
  [key: string]: unknown;
}

export interface DecodedMask {
  header: MaskHeader;
  /** boolean mask inside bbox, 1 byte per voxel, C order [slice,row,col]; empty when bbox is null */
  bits: Uint8Array;
  /** bbox dimensions (0,0,0 when empty) */
  size: Index3;
  /** sha256 of the packed bits matched `checksum` (undefined when there was none to check) */
  checksumOk?: boolean;
}

export const MAX_TEXT_BYTES = 64 * 1024;
export const MAX_BINARY_BYTES = 8 * 1024 * 1024;

/** numpy.packbits(..., bitorder="big") of a 0/1 byte array. */
export function packBits(bits: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  for (let i = 0; i < bits.length; i++) if (bits[i]) out[i >> 3] |= 0x80 >> (i & 7);
  return out;
}

/** numpy.unpackbits(..., count=n, bitorder="big"). */
export function unpackBits(packed: Uint8Array, n: number): Uint8Array {
  if (packed.length * 8 < n) throw new Error(`mask payload too short: ${packed.length * 8} bits for ${n} voxels`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (packed[i >> 3] >> (7 - (i & 7))) & 1;
  return out;
}

export function bboxSize(bbox: BBox | null): Index3 {
  if (!bbox) return [0, 0, 0];
  return [bbox[1][0] - bbox[0][0], bbox[1][1] - bbox[0][1], bbox[1][2] - bbox[0][2]];
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as BufferSource);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function splitFrame(frame: ArrayBuffer | Uint8Array): { header: MaskHeader; payload: Uint8Array } {
  const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  if (bytes.length < 4) throw new Error("binary frame shorter than its length prefix");
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (4 + n > bytes.length) throw new Error("binary frame header length exceeds the frame");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n))) as MaskHeader;
  return { header, payload: bytes.subarray(4 + n) };
}

export async function decodeMaskFrame(frame: ArrayBuffer | Uint8Array, verify = true): Promise<DecodedMask> {
  const { header, payload } = splitFrame(frame);
  const size = bboxSize(header.bbox);
  if (!header.bbox) return { header, bits: new Uint8Array(0), size, checksumOk: undefined };
  if (size.some((x) => x <= 0)) throw new Error(`invalid mask bbox ${JSON.stringify(header.bbox)}`);
  const packed = inflate(payload);
  const n = size[0] * size[1] * size[2];
  const bits = unpackBits(packed, n);
  let checksumOk: boolean | undefined;
  if (verify && header.checksum) checksumOk = (await sha256Hex(packed)) === header.checksum;
  return { header, bits, size, checksumOk };
}

export async function encodeMaskFrame(
  header: Omit<MaskHeader, "bbox" | "checksum">,
  bbox: BBox | null,
  bits: Uint8Array | null,
): Promise<Uint8Array> {
  let payload = new Uint8Array(0);
  const full: MaskHeader = { ...header, bbox } as MaskHeader;
  if (bbox && bits) {
    const packed = packBits(bits);
    full.checksum = await sha256Hex(packed);
    payload = deflate(packed);
  }
  const json = new TextEncoder().encode(JSON.stringify(full));
  const out = new Uint8Array(4 + json.length + payload.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  out.set(payload, 4 + json.length);
  return out;
}

/** Tightest bbox of `value` voxels in a full [slice,row,col] array, and the cropped mask. */
export function cropMask(full: ArrayLike<number>, shape: Index3, value: number): { bbox: BBox | null; bits: Uint8Array | null } {
  const [ns, nr, nc] = shape;
  const lo: Index3 = [ns, nr, nc];
  const hi: Index3 = [-1, -1, -1];
  for (let s = 0, i = 0; s < ns; s++)
    for (let r = 0; r < nr; r++)
      for (let c = 0; c < nc; c++, i++)
        if (full[i] === value) {
          if (s < lo[0]) lo[0] = s;
          if (s > hi[0]) hi[0] = s;
          if (r < lo[1]) lo[1] = r;
          if (r > hi[1]) hi[1] = r;
          if (c < lo[2]) lo[2] = c;
          if (c > hi[2]) hi[2] = c;
        }
  if (hi[0] < 0) return { bbox: null, bits: null };
  const bbox: BBox = [lo, [hi[0] + 1, hi[1] + 1, hi[2] + 1]];
  const [ds, dr, dc] = bboxSize(bbox);
  const bits = new Uint8Array(ds * dr * dc);
  for (let s = 0, j = 0; s < ds; s++)
    for (let r = 0; r < dr; r++) {
      const row = ((s + lo[0]) * nr + r + lo[1]) * nc + lo[2];
      for (let c = 0; c < dc; c++, j++) bits[j] = full[row + c] === value ? 1 : 0;
    }
  return { bbox, bits };
}

// ---------------------------------------------------------------- the socket client

export interface ServerMessage {
  type: string;
  [key: string]: unknown;
}

export interface PromptPoint {
  index: Index3;
  positive: boolean;
}

type Listener = (message: ServerMessage) => void;
type MaskListener = (mask: DecodedMask) => void;

export interface WebSocketLike {
  binaryType: string;
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | ArrayBufferLike | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ScanSocketOptions {
  factory?: WebSocketFactory;
  /** reconnect delays in ms (last one repeats) */
  backoff?: number[];
  pingIntervalMs?: number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
}

/** Close codes after which reconnecting makes no sense. */
export const FATAL_CLOSE_CODES = new Set([4401, 4404]);

/**
 * One WebSocket per open scan: JSON text frames, binary mask frames, monotonically increasing
 * `seq`, tracking of pending prompts (cleared by the mask of that or a newer seq, `superseded`,
 * or an `error` naming the seq), stale-mask dropping, and automatic reconnect with backoff.
 */
export class ScanSocket {
  private ws: WebSocketLike | null = null;
  private seq = 0;
  private listeners = new Map<string, Set<Listener>>();
  private maskListeners = new Set<MaskListener>();
  private stateListeners = new Set<(s: ConnectionState) => void>();
  private attempts = 0;
  private timer: unknown = null;
  private pingTimer: unknown = null;
  private stopped = false;
  /** seq → session of prompts/undo/redo/reset/accept still waiting for an answer */
  readonly pending = new Map<number, { session: number | string; kind: string }>();
  /** newest mask seq applied per session; older masks arriving late are dropped */
  readonly lastMaskSeq = new Map<string, number>();
  state: ConnectionState = "connecting";
  /** set when the server closed with a fatal code (4401/4404) */
  fatalCode: number | null = null;
  private factory: WebSocketFactory;
  private backoff: number[];
  private setTimer: (fn: () => void, ms: number) => unknown;
  private clearTimer: (h: unknown) => void;

  constructor(readonly url: string, private options: ScanSocketOptions = {}) {
    this.factory = options.factory ?? ((u) => new WebSocket(u) as unknown as WebSocketLike);
    this.backoff = options.backoff ?? [500, 1000, 2000, 4000, 8000];
    this.setTimer = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimeout ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  }

  connect(): void {
    this.stopped = false;
    this.open();
  }

  private setState(state: ConnectionState): void {
    this.state = state;
    for (const l of this.stateListeners) l(state);
  }

  private open(): void {
    const ws = this.factory(this.url);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.attempts = 0;
      this.setState("open");
      this.startPing();
    };
    ws.onmessage = (ev) => void this.handle(ev.data);
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      this.stopPing();
      if (this.ws !== ws) return;
      this.ws = null;
      // Answers to anything in flight are lost with the connection.
      const lost = [...this.pending.keys()];
      this.pending.clear();
      if (lost.length) this.emit({ type: "client.lost", seqs: lost });
      if (this.stopped) {
        this.setState("closed");
        return;
      }
      if (FATAL_CLOSE_CODES.has(ev.code)) {
        this.fatalCode = ev.code;
        this.setState("closed");
        this.emit({ type: "client.fatal", code: ev.code });
        return;
      }
      this.setState("reconnecting");
      const delay = this.backoff[Math.min(this.attempts, this.backoff.length - 1)];
      this.attempts++;
      this.timer = this.setTimer(() => {
        this.timer = null;
        if (!this.stopped) this.open();
      }, delay);
    };
  }

  close(): void {
    this.stopped = true;
    this.stopPing();
    if (this.timer) this.clearTimer(this.timer);
    this.timer = null;
    this.ws?.close(1000);
    this.setState("closed");
  }

  private startPing(): void {
    this.stopPing();
    const interval = this.options.pingIntervalMs ?? 20000;
    if (interval <= 0) return;
    const tick = () => {
      this.pingTimer = this.setTimer(() => {
        if (this.state === "open") this.sendJson({ type: "ping", seq: this.nextSeq() });
        tick();
      }, interval);
    };
    tick();
  }

  private stopPing(): void {
    if (this.pingTimer) this.clearTimer(this.pingTimer);
    this.pingTimer = null;
  }

  nextSeq(): number {
    return ++this.seq;
  }

  /**
   * Make the next seq larger than `seq`. The server keeps a resumed session's `latest_seq` across
   * connections and refuses prompts/undo/redo/reset/accept whose seq is not after it, so a new
   * connection (page reload, reconnect) must continue above it.
   */
  advanceSeq(seq: number): void {
    if (Number.isFinite(seq) && seq > this.seq) this.seq = Math.floor(seq);
  }

  get isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === 1;
  }

  on(type: string, listener: Listener): () => void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(listener);
    return () => this.listeners.get(type)?.delete(listener);
  }

  onMask(listener: MaskListener): () => void {
    this.maskListeners.add(listener);
    return () => this.maskListeners.delete(listener);
  }

  onState(listener: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  private emit(message: ServerMessage): void {
    for (const l of this.listeners.get(message.type) ?? []) l(message);
    for (const l of this.listeners.get("*") ?? []) l(message);
  }

  sendJson(message: Record<string, unknown>): boolean {
    const text = JSON.stringify(message);
    if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) throw new Error("message exceeds 64 KiB");
    if (!this.isOpen) return false;
    this.ws!.send(text);
    return true;
  }

  private track(seq: number, session: number | string, kind: string, sent: boolean): number {
    if (sent) this.pending.set(seq, { session, kind });
    else this.emit({ type: "error", code: "not_connected", detail: "Not connected to the server; retrying.", seq });
    return seq;
  }

  openSession(label: number, options: { engine?: string; annotation?: number } = {}): boolean {
    return this.sendJson({ type: "session.open", label, ...options });
  }

  closeSession(session: number | string): boolean {
    return this.sendJson({ type: "session.close", session });
  }

  prompt(session: number | string, prompt: { point?: PromptPoint; box?: [Index3, Index3] }): number {
    const seq = this.nextSeq();
    return this.track(seq, session, "prompt", this.sendJson({ type: "prompt", session, seq, ...prompt }));
  }

  command(kind: "undo" | "redo" | "reset" | "accept", session: number | string): number {
    const seq = this.nextSeq();
    return this.track(seq, session, kind, this.sendJson({ type: kind, session, seq }));
  }

  /** accept with a corrected mask (binary frame, header type "accept") */
  async acceptMask(session: number | string, bbox: BBox | null, bits: Uint8Array | null): Promise<number> {
    const seq = this.nextSeq();
    const frame = await encodeMaskFrame({ type: "accept", session, seq }, bbox, bits);
    if (frame.length > MAX_BINARY_BYTES) throw new Error("the corrected mask exceeds the 8 MiB frame limit");
    const sent = this.isOpen;
    if (sent) this.ws!.send(frame);
    return this.track(seq, session, "accept", sent);
  }

  activity(text: string): boolean {
    return this.sendJson({ type: "activity", activity: text.slice(0, 200) });
  }

  /** pending prompt count (for spinners / tests) */
  get pendingPrompts(): number {
    let n = 0;
    for (const p of this.pending.values()) if (p.kind !== "accept") n++;
    return n;
  }

  private resolveUpTo(session: number | string, seq: number): void {
    for (const [s, p] of this.pending) if (String(p.session) === String(session) && s <= seq && p.kind !== "accept") this.pending.delete(s);
  }

  /** Exposed for tests: feed one incoming frame. */
  async handle(data: unknown): Promise<void> {
    if (typeof data === "string") {
      let message: ServerMessage;
      try {
        message = JSON.parse(data);
      } catch {
        this.emit({ type: "error", code: "malformed", detail: "the server sent a frame that is not JSON" });
        return;
      }
      const seq = typeof message.seq === "number" ? message.seq : null;
      if (message.type === "superseded" && seq !== null) this.pending.delete(seq);
      if (message.type === "error" && seq !== null) this.pending.delete(seq);
      if (message.type === "accepted" && seq !== null) this.pending.delete(seq);
      if (message.type === "session.opened" && typeof message.latest_seq === "number") this.advanceSeq(message.latest_seq);
      this.emit(message);
      return;
    }
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (data instanceof Uint8Array) bytes = data;
    else if (typeof Blob !== "undefined" && data instanceof Blob) bytes = new Uint8Array(await data.arrayBuffer());
    else return;
    let mask: DecodedMask;
    try {
      mask = await decodeMaskFrame(bytes);
    } catch (error) {
      this.emit({ type: "error", code: "client_decode", detail: `could not decode a mask frame: ${(error as Error).message}` });
      return;
    }
    const { session, seq } = mask.header;
    const key = String(session);
    if (typeof seq === "number") {
      const last = this.lastMaskSeq.get(key) ?? -Infinity;
      this.resolveUpTo(session, seq);
      if (seq < last) return; // an older answer arriving after a newer one: stale
      this.lastMaskSeq.set(key, seq);
    }
    for (const l of this.maskListeners) l(mask);
  }
}

export function scanSocketUrl(location: { protocol: string; host: string }, scanId: number): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/scans/${scanId}/`;
}

import { deflate } from "pako";
import { describe, expect, it } from "vitest";
import {
  ScanSocket,
  cropMask,
  decodeMaskFrame,
  encodeMaskFrame,
  packBits,
  sha256Hex,
  splitFrame,
  unpackBits,
  type BBox,
  type WebSocketLike,
} from "../protocol";

/** A frame as the Python server builds it (struct.pack("<I") + json + zlib(packbits)). */
async function serverFrame(header: Record<string, unknown>, bits: number[] | null): Promise<Uint8Array> {
  const h = { ...header };
  let payload = new Uint8Array(0);
  if (bits) {
    const packed = packBits(Uint8Array.from(bits));
    h.checksum = await sha256Hex(packed);
    payload = deflate(packed);
  }
  const json = new TextEncoder().encode(JSON.stringify(h));
  const out = new Uint8Array(4 + json.length + payload.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  out.set(payload, 4 + json.length);
  return out;
}

describe("packbits", () => {
  it("matches numpy.packbits big bit order", () => {
    // numpy.packbits([1,0,1,1,0,0,0,1, 1]) == [0b10110001, 0b10000000] == [177, 128]
    expect(Array.from(packBits(Uint8Array.from([1, 0, 1, 1, 0, 0, 0, 1, 1])))).toEqual([177, 128]);
    expect(Array.from(unpackBits(Uint8Array.from([177, 128]), 9))).toEqual([1, 0, 1, 1, 0, 0, 0, 1, 1]);
  });
  it("round-trips random data of odd length", () => {
    const bits = Uint8Array.from({ length: 1001 }, (_, i) => (i * 7919) % 3 === 0 ? 1 : 0);
    expect(unpackBits(packBits(bits), bits.length)).toEqual(bits);
  });
  it("refuses a short payload", () => {
    expect(() => unpackBits(new Uint8Array(1), 9)).toThrow(/too short/);
  });
});

describe("mask frames", () => {
  it("decodes a server frame with zlib payload and verifies the checksum", async () => {
    const bits = [1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1]; // bbox 2x2x3
    const frame = await serverFrame({ type: "mask", session: 7, seq: 3, bbox: [[1, 2, 3], [3, 4, 6]], voxels: 7 }, bits);
    const mask = await decodeMaskFrame(frame.buffer as ArrayBuffer);
    expect(mask.header.session).toBe(7);
    expect(mask.size).toEqual([2, 2, 3]);
    expect(Array.from(mask.bits)).toEqual(bits);
    expect(mask.checksumOk).toBe(true);
  });
  it("flags a wrong checksum", async () => {
    const frame = await serverFrame({ type: "mask", session: 1, seq: 1, bbox: [[0, 0, 0], [1, 1, 2]] }, [1, 0]);
    const { header, payload } = splitFrame(frame);
    const tampered = await encodeMaskFrame({ ...header, type: "mask" }, header.bbox, Uint8Array.from([0, 1]));
    // splice the original header with a different payload
    const t = splitFrame(tampered);
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(4 + json.length + t.payload.length);
    new DataView(out.buffer).setUint32(0, json.length, true);
    out.set(json, 4);
    out.set(t.payload, 4 + json.length);
    expect(payload.length).toBeGreaterThan(0);
    expect((await decodeMaskFrame(out)).checksumOk).toBe(false);
  });
  it("decodes an empty mask (bbox null, no payload)", async () => {
    const frame = await serverFrame({ type: "mask", session: 1, seq: 2, bbox: null, voxels: 0 }, null);
    const mask = await decodeMaskFrame(frame);
    expect(mask.bits.length).toBe(0);
    expect(mask.header.bbox).toBeNull();
  });
  it("encodes an accept frame that decodes to the same mask", async () => {
    const bbox: BBox = [[0, 1, 2], [2, 2, 4]];
    const bits = Uint8Array.from([1, 0, 1, 1]);
    const frame = await encodeMaskFrame({ type: "accept", session: 5, seq: 9 }, bbox, bits);
    const back = await decodeMaskFrame(frame);
    expect(back.header.type).toBe("accept");
    expect(back.header.seq).toBe(9);
    expect(back.header.bbox).toEqual(bbox);
    expect(Array.from(back.bits)).toEqual([1, 0, 1, 1]);
    expect(back.checksumOk).toBe(true);
  });
  it("crops a full mask to its tight bbox", () => {
    const shape: [number, number, number] = [3, 3, 4];
    const full = new Uint8Array(36);
    full[1 * 12 + 1 * 4 + 2] = 5;
    full[2 * 12 + 2 * 4 + 3] = 5;
    full[0] = 2; // another segment
    const { bbox, bits } = cropMask(full, shape, 5);
    expect(bbox).toEqual([[1, 1, 2], [3, 3, 4]]);
    expect(Array.from(bits!)).toEqual([1, 0, 0, 0, 0, 0, 0, 1]);
    expect(cropMask(full, shape, 4)).toEqual({ bbox: null, bits: null });
  });
  it("rejects a header length beyond the frame", async () => {
    const bad = new Uint8Array([200, 0, 0, 0, 123]);
    await expect(decodeMaskFrame(bad)).rejects.toThrow(/exceeds/);
  });
});

class FakeSocket implements WebSocketLike {
  binaryType = "blob";
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: (string | Uint8Array)[] = [];
  constructor(readonly url: string) {}
  send(data: string | ArrayBufferLike | Uint8Array): void {
    this.sent.push(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
  }
  close(code = 1000): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  serverOpen(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverClose(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  json(): Record<string, unknown>[] {
    return this.sent.filter((s): s is string => typeof s === "string").map((s) => JSON.parse(s));
  }
}

function harness() {
  const sockets: FakeSocket[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const client = new ScanSocket("ws://x/ws/scans/1/", {
    factory: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    pingIntervalMs: 0,
    setTimeout: (fn, ms) => {
      const t = { fn, ms };
      timers.push(t);
      return t;
    },
    clearTimeout: (h) => {
      const i = timers.indexOf(h as { fn: () => void; ms: number });
      if (i >= 0) timers.splice(i, 1);
    },
  });
  client.connect();
  sockets[0].serverOpen();
  return { client, sockets, timers };
}

describe("ScanSocket", () => {
  it("sends prompts with increasing seq and tracks them as pending", () => {
    const { client, sockets } = harness();
    const a = client.prompt(11, { point: { index: [1, 2, 3], positive: true } });
    const b = client.prompt(11, { box: [[0, 0, 0], [2, 2, 2]] });
    expect(b).toBeGreaterThan(a);
    expect(sockets[0].json()).toEqual([
      { type: "prompt", session: 11, seq: a, point: { index: [1, 2, 3], positive: true } },
      { type: "prompt", session: 11, seq: b, box: [[0, 0, 0], [2, 2, 2]] },
    ]);
    expect(client.pendingPrompts).toBe(2);
  });

  it("clears a superseded prompt and resolves older ones with a newer mask", async () => {
    const { client } = harness();
    const a = client.prompt(1, { point: { index: [0, 0, 0], positive: true } });
    const b = client.prompt(1, { point: { index: [0, 0, 1], positive: false } });
    const c = client.prompt(1, { point: { index: [0, 0, 2], positive: true } });
    const seen: number[] = [];
    client.onMask((m) => seen.push(m.header.seq));
    await client.handle(JSON.stringify({ type: "superseded", session: 1, seq: a, by: b }));
    expect(client.pending.has(a)).toBe(false);
    expect(client.pendingPrompts).toBe(2);
    await client.handle(await serverFrame({ type: "mask", session: 1, seq: c, bbox: null }, null));
    expect(client.pendingPrompts).toBe(0); // b and c both answered by the newer mask
    // a late, older mask is dropped
    await client.handle(await serverFrame({ type: "mask", session: 1, seq: b, bbox: null }, null));
    expect(seen).toEqual([c]);
  });

  it("an error naming a seq clears it; other sessions are independent", async () => {
    const { client } = harness();
    const a = client.prompt(1, { point: { index: [0, 0, 0], positive: true } });
    const b = client.prompt(2, { point: { index: [0, 0, 0], positive: true } });
    const errors: unknown[] = [];
    client.on("error", (m) => errors.push(m.code));
    await client.handle(JSON.stringify({ type: "error", code: "invalid_prompt", detail: "outside", seq: a }));
    expect(client.pending.has(a)).toBe(false);
    expect(client.pending.has(b)).toBe(true);
    expect(errors).toEqual(["invalid_prompt"]);
  });

  it("sends a corrected mask on accept as a binary frame", async () => {
    const { client, sockets } = harness();
    const seq = await client.acceptMask(4, [[0, 0, 0], [1, 1, 3]], Uint8Array.from([1, 1, 0]));
    const frame = sockets[0].sent.find((s) => typeof s !== "string") as Uint8Array;
    const decoded = await decodeMaskFrame(frame);
    expect(decoded.header).toMatchObject({ type: "accept", session: 4, seq });
    expect(Array.from(decoded.bits)).toEqual([1, 1, 0]);
    await client.handle(JSON.stringify({ type: "accepted", session: 4, seq, annotation: 1, version: 2 }));
    expect(client.pending.size).toBe(0);
  });

  it("reconnects with backoff, forgets in-flight prompts, and stops on 4401/4404", () => {
    const { client, sockets, timers } = harness();
    client.prompt(1, { point: { index: [0, 0, 0], positive: true } });
    const lost: unknown[] = [];
    client.on("client.lost", (m) => lost.push(m.seqs));
    sockets[0].serverClose(1006);
    expect(client.state).toBe("reconnecting");
    expect(client.pendingPrompts).toBe(0);
    expect(lost).toEqual([[1]]);
    expect(timers.map((t) => t.ms)).toEqual([500]);
    timers.shift()!.fn();
    expect(sockets.length).toBe(2);
    sockets[1].serverClose(1006);
    expect(timers.map((t) => t.ms)).toEqual([1000]);
    timers.shift()!.fn();
    sockets[2].serverOpen();
    expect(client.state).toBe("open");
    sockets[2].serverClose(4404);
    expect(client.state).toBe("closed");
    expect(client.fatalCode).toBe(4404);
    expect(timers.length).toBe(0);
  });

  it("reports a prompt sent while disconnected instead of queueing it silently", () => {
    const { client, sockets } = harness();
    sockets[0].serverClose(1006);
    const codes: unknown[] = [];
    client.on("error", (m) => codes.push(m.code));
    client.prompt(1, { point: { index: [0, 0, 0], positive: true } });
    expect(codes).toEqual(["not_connected"]);
    expect(client.pendingPrompts).toBe(0);
  });

  it("continues above a resumed session's latest_seq (the server refuses older seqs)", async () => {
    const { client, sockets } = harness();
    client.prompt(5, { point: { index: [0, 0, 0], positive: true } });
    await client.handle(JSON.stringify({ type: "session.opened", session: 5, label: 1, resumed: true, prompts: [], latest_seq: 40 }));
    const seq = client.prompt(5, { point: { index: [1, 1, 1], positive: false } });
    expect(seq).toBe(41);
    expect(sockets[0].json().at(-1)).toMatchObject({ type: "prompt", seq: 41 });
    await client.handle(JSON.stringify({ type: "session.opened", session: 6, label: 2, resumed: false, prompts: [], latest_seq: 0 }));
    expect(client.prompt(6, { box: [[0, 0, 0], [1, 1, 1]] })).toBe(42);
  });

  it("refuses text frames over 64 KiB", () => {
    const { client } = harness();
    expect(() => client.activity("x".repeat(10))).not.toThrow();
    expect(() => client.sendJson({ type: "activity", activity: "x".repeat(70000) })).toThrow(/64 KiB/);
  });
});

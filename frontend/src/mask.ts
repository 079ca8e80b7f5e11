/** Writing decoded masks into a labelmap, reading them back, and per-segment statistics. */
import type { IndexMap, Vec3 } from "./geometry";
import type { DecodedMask, Index3 } from "./protocol";

export interface LabelmapTarget {
  /** flat scalar data of the Cornerstone labelmap volume (or of a plain array in our order) */
  data: { [i: number]: number; length: number };
  map: Pick<IndexMap, "offset">;
  shape: Vec3;
}

/**
 * Replace segment `value` by the mask: voxels of `value` outside the mask are cleared, voxels
 * inside the mask become `value` (overwriting other segments only when `overwrite` is set).
 * Returns the number of voxels set.
 */
export function applyMask(
  target: LabelmapTarget,
  mask: DecodedMask,
  value: number,
  overwrite = false,
  touched?: TouchedFrames,
): number {
  clearValue(target, value, touched);
  if (!mask.header.bbox) return 0;
  const [lo] = mask.header.bbox;
  const [ds, dr, dc] = mask.size;
  const [ns, nr, nc] = target.shape;
  let set = 0;
  for (let s = 0, j = 0; s < ds; s++) {
    const S = s + lo[0];
    for (let r = 0; r < dr; r++) {
      const R = r + lo[1];
      for (let c = 0; c < dc; c++, j++) {
        if (!mask.bits[j]) continue;
        const C = c + lo[2];
        if (S < 0 || R < 0 || C < 0 || S >= ns || R >= nr || C >= nc) continue;
        const o = target.map.offset(S, R, C);
        if (overwrite || target.data[o] === 0 || target.data[o] === value) {
          target.data[o] = value;
          set++;
          touched?.frames.add(Math.floor(o / touched.frameSize));
        }
      }
    }
  }
  return set;
}

/** Frames (slices of the flat data, `frameSize` values each) that a change touched. */
export interface TouchedFrames {
  frameSize: number;
  frames: Set<number>;
}

export function clearValue(target: LabelmapTarget, value: number, touched?: TouchedFrames): void {
  const d = target.data;
  for (let i = 0; i < d.length; i++) {
    if (d[i] === value) {
      d[i] = 0;
      touched?.frames.add(Math.floor(i / touched.frameSize));
    }
  }
}

/** Our [slice,row,col] C-order 0/1 array of segment `value`. */
export function extractValue(target: LabelmapTarget, value: number): Uint8Array {
  const [ns, nr, nc] = target.shape;
  const out = new Uint8Array(ns * nr * nc);
  for (let s = 0, i = 0; s < ns; s++)
    for (let r = 0; r < nr; r++)
      for (let c = 0; c < nc; c++, i++) out[i] = target.data[target.map.offset(s, r, c)] === value ? 1 : 0;
  return out;
}

export interface SegmentStats {
  voxels: number;
  volumeMl: number;
  suvMax: number;
  suvMean: number;
  /** flat index (in the arrays' layout) of the hottest voxel */
  maxAt: number;
}

/** Statistics of every segment value in one pass; labelmap and SUV share the same layout. */
export function segmentStatistics(
  labelmap: { [i: number]: number; length: number },
  suv: { [i: number]: number; length: number },
  voxelMl: number,
): Map<number, SegmentStats> {
  const acc = new Map<number, { n: number; sum: number; max: number; at: number }>();
  for (let i = 0; i < labelmap.length; i++) {
    const v = labelmap[i];
    if (!v) continue;
    let a = acc.get(v);
    if (!a) acc.set(v, (a = { n: 0, sum: 0, max: -Infinity, at: i }));
    const x = suv[i];
    a.n++;
    a.sum += x;
    if (x > a.max) {
      a.max = x;
      a.at = i;
    }
  }
  const out = new Map<number, SegmentStats>();
  for (const [v, a] of acc) out.set(v, { voxels: a.n, volumeMl: a.n * voxelMl, suvMax: a.max, suvMean: a.sum / a.n, maxAt: a.at });
  return out;
}

export function maskVoxelCount(mask: DecodedMask): number {
  let n = 0;
  for (let i = 0; i < mask.bits.length; i++) n += mask.bits[i];
  return n;
}

export function clampIndex(v: Index3, shape: Vec3): Index3 {
  return [0, 1, 2].map((i) => Math.max(0, Math.min(shape[i] - 1, v[i]))) as Index3;
}

import { describe, expect, it } from "vitest";
import { IndexMap, applyAffine, invert4, sliceGeometry, voxelToWorld, voxelVolumeMl, worldToVoxel, type Mat4, type Vec3 } from "../geometry";
import { applyMask, extractValue, segmentStatistics } from "../mask";
import { parseNifti, rasIjkToLpsSrc } from "../nifti";

// A head-first PET: slice axis goes +z (superior)… here feet-first style: slice goes -z.
const affine: Mat4 = [
  [0, 0, 4, -254],
  [0, 3, 0, -190],
  [-2, 0, 0, 100],
  [0, 0, 0, 1],
];
const shape: Vec3 = [5, 4, 3];

describe("affine transforms", () => {
  it("maps voxel → world → voxel", () => {
    const inv = invert4(affine);
    for (const v of [[0, 0, 0], [4, 3, 2], [2, 1, 1]] as Vec3[]) {
      const w = voxelToWorld(affine, v);
      expect(worldToVoxel(inv, w, shape)).toEqual(v);
    }
    expect(voxelToWorld(affine, [1, 2, 3])).toEqual([-242, -184, 98]);
    expect(worldToVoxel(inv, [-250 + 1.9, -184 - 1.4, 98 + 0.9], shape)).toEqual([1, 2, 1]);
  });
  it("rounds to the nearest voxel and rejects points outside", () => {
    const inv = invert4(affine);
    expect(worldToVoxel(inv, applyAffine(affine, [1.4, 2.6, 0.2]), shape)).toEqual([1, 3, 0]);
    expect(worldToVoxel(inv, applyAffine(affine, [-0.6, 0, 0]), shape)).toBeNull();
    expect(worldToVoxel(inv, applyAffine(affine, [0, 0, 2.6]), shape)).toBeNull();
  });
  it("inverts a general affine", () => {
    const m: Mat4 = [[1, 2, 0, 5], [0, 1, 3, -2], [4, 0, 1, 7], [0, 0, 0, 1]];
    const inv = invert4(m);
    const p: Vec3 = [0.3, -2, 11];
    const back = applyAffine(inv, applyAffine(m, p));
    back.forEach((x, i) => expect(x).toBeCloseTo(p[i], 9));
  });
  it("gives DICOM slice geometry and voxel volume", () => {
    const g = sliceGeometry(affine, shape);
    expect(g.rowCosines).toEqual([1, 0, 0]);
    expect(g.columnCosines).toEqual([0, 1, 0]);
    expect(g.pixelSpacing).toEqual([3, 4]);
    expect(g.sliceSpacing).toBe(2);
    expect(g.positions[2]).toEqual([-254, -190, 96]);
    expect(voxelVolumeMl(affine)).toBeCloseTo(0.024, 12);
  });
});

/** A Cornerstone-like volume that sorted its slices along +normal (so k runs against our slice). */
function csLike(): { dims: Vec3; worldToIndex: (w: Vec3) => Vec3 } {
  const g = sliceGeometry(affine, shape);
  // normal = row × col cosines = +z; our slices go -z, so Cornerstone k=0 is our last slice
  const origin = g.positions[shape[0] - 1];
  return {
    dims: [shape[2], shape[1], shape[0]],
    worldToIndex: (w) => [(w[0] - origin[0]) / 4, (w[1] - origin[1]) / 3, (w[2] - origin[2]) / 2],
  };
}

describe("IndexMap (our [s,r,c] ↔ Cornerstone i,j,k)", () => {
  it("handles a reversed slice order", () => {
    const cs = csLike();
    const map = new IndexMap(affine, shape, cs.dims, cs.worldToIndex);
    expect(map.csIndex([0, 0, 0])).toEqual([0, 0, 4]);
    expect(map.csIndex([4, 3, 2])).toEqual([2, 3, 0]);
    expect(map.csIndex([1, 2, 1])).toEqual([1, 2, 3]);
    expect(map.isIdentity).toBe(false);
  });
  it("is the identity for the natural layout", () => {
    const ident = new IndexMap(affine, shape, [3, 4, 5], (w) => {
      const v = applyAffine(invert4(affine), w);
      return [v[2], v[1], v[0]];
    });
    expect(ident.isIdentity).toBe(true);
  });
});

describe("mask decoding into a labelmap", () => {
  it("writes a bbox mask through the index map and reads it back", () => {
    const cs = csLike();
    const map = new IndexMap(affine, shape, cs.dims, cs.worldToIndex);
    const data = new Uint8Array(60);
    data[map.offset(0, 0, 0)] = 2; // another label stays
    data[map.offset(4, 3, 2)] = 3; // a stale voxel of the same label is cleared
    const bits = Uint8Array.from([1, 1, 0, 1]); // bbox [1..3) x [2..3) x [1..3)
    const n = applyMask({ data, map, shape }, {
      header: { type: "mask", session: 1, seq: 1, bbox: [[1, 2, 1], [3, 3, 3]] }, bits, size: [2, 1, 2],
    }, 3);
    expect(n).toBe(3);
    const ours = extractValue({ data, map, shape }, 3);
    const idx = (s: number, r: number, c: number) => (s * 4 + r) * 3 + c;
    expect([...ours.keys()].filter((i) => ours[i])).toEqual([idx(1, 2, 1), idx(1, 2, 2), idx(2, 2, 2)]);
    expect(data[map.offset(0, 0, 0)]).toBe(2);
  });
  it("computes volume, SUVmax and SUVmean per segment", () => {
    const lm = Uint8Array.from([0, 1, 1, 2, 0]);
    const suv = Float32Array.from([9, 2, 4, 7, 1]);
    const stats = segmentStatistics(lm, suv, 0.064);
    expect(stats.get(1)).toEqual({ voxels: 2, volumeMl: 0.128, suvMax: 4, suvMean: 3, maxAt: 2 });
    expect(stats.get(2)!.suvMax).toBe(7);
  });
});

describe("NIfTI parsing", () => {
  it("reads a float32 NIfTI written like nibabel (sform, RAS) into [slice,row,col] + LPS", () => {
    const dims = [3, 4, 5]; // i=col, j=row, k=slice
    const n = dims[0] * dims[1] * dims[2];
    const buf = new ArrayBuffer(352 + n * 4);
    const v = new DataView(buf);
    v.setInt32(0, 348, true);
    v.setInt16(40, 3, true);
    dims.forEach((d, i) => v.setInt16(42 + 2 * i, d, true));
    v.setInt16(48, 1, true);
    v.setInt16(70, 16, true);
    v.setInt16(72, 32, true);
    v.setFloat32(108, 352, true);
    v.setFloat32(112, 2, true); // slope
    v.setFloat32(116, 0.5, true);
    v.setInt16(254, 1, true);
    const ras = [[-4, 0, 0, 254], [0, -3, 0, 190], [0, 0, 2, 100]];
    ras.forEach((row, r) => row.forEach((x, c) => v.setFloat32(280 + r * 16 + c * 4, x, true)));
    const data = new Float32Array(buf, 352, n);
    for (let i = 0; i < n; i++) data[i] = i;
    const vol = parseNifti(new Uint8Array(buf));
    expect(vol.shape).toEqual([5, 4, 3]);
    expect(vol.data[(2 * 4 + 1) * 3 + 2]).toBe(((2 * 4 + 1) * 3 + 2) * 2 + 0.5);
    // LPS affine over (s,r,c): column 2 is the col step: RAS (-4,0,0) → LPS (4,0,0)
    expect(vol.affine[0]).toEqual([0, 0, 4, -254]);
    expect(vol.affine.map((r) => r[0])).toEqual([0, 0, 2, 0]);
    expect(rasIjkToLpsSrc([[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])[0]).toEqual([0, 0, -1, -1]);
  });
});

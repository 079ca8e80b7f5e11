/**
 * Coordinate transforms.
 *
 * Our voxel index is [slice, row, col] of the scan's PET array (see docs/protocol.md); the
 * REST `affine` (4×4, row-major nested arrays) maps [slice,row,col,1] to DICOM patient LPS mm.
 * Cornerstone works in the same LPS world; its volume index is (i, j, k) = (col, row, slice)
 * when the volume is built as in `cornerstoneGeometry`, except that Cornerstone sorts slices
 * along the image normal, so k may run opposite to our slice index (`IndexMap` handles that).
 */

export type Vec3 = [number, number, number];
export type Mat4 = number[][]; // 4 rows of 4

export function applyAffine(affine: Mat4, p: ArrayLike<number>): Vec3 {
  const out: Vec3 = [0, 0, 0];
  for (let r = 0; r < 3; r++) {
    out[r] = affine[r][0] * p[0] + affine[r][1] * p[1] + affine[r][2] * p[2] + affine[r][3];
  }
  return out;
}

export function invert4(m: Mat4): Mat4 {
  // Gauss-Jordan on a 4x4.
  const a = m.map((row, i) => [...row, ...[0, 1, 2, 3].map((j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < 4; c++) {
    let pivot = c;
    for (let r = c + 1; r < 4; r++) if (Math.abs(a[r][c]) > Math.abs(a[pivot][c])) pivot = r;
    if (Math.abs(a[pivot][c]) < 1e-12) throw new Error("singular affine");
    [a[c], a[pivot]] = [a[pivot], a[c]];
    const d = a[c][c];
    for (let j = 0; j < 8; j++) a[c][j] /= d;
    for (let r = 0; r < 4; r++) {
      if (r === c) continue;
      const f = a[r][c];
      if (f !== 0) for (let j = 0; j < 8; j++) a[r][j] -= f * a[c][j];
    }
  }
  return a.map((row) => row.slice(4));
}

/** Continuous [slice,row,col] of a world (LPS mm) point. */
export function worldToContinuousIndex(inverseAffine: Mat4, world: ArrayLike<number>): Vec3 {
  return applyAffine(inverseAffine, world);
}

/** Nearest voxel [slice,row,col] of a world point, or null outside the grid. */
export function worldToVoxel(inverseAffine: Mat4, world: ArrayLike<number>, shape: Vec3): Vec3 | null {
  const c = worldToContinuousIndex(inverseAffine, world);
  const v = c.map((x) => Math.round(x)) as Vec3;
  for (let i = 0; i < 3; i++) if (v[i] < 0 || v[i] >= shape[i]) return null;
  return v;
}

export function voxelToWorld(affine: Mat4, voxel: ArrayLike<number>): Vec3 {
  return applyAffine(affine, voxel);
}

function norm(v: Vec3): number {
  return Math.hypot(v[0], v[1], v[2]);
}

function column(affine: Mat4, j: number): Vec3 {
  return [affine[0][j], affine[1][j], affine[2][j]];
}

export function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

export function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

export interface SliceGeometry {
  /** DICOM imageOrientationPatient: row cosine (direction of increasing col) then column cosine. */
  rowCosines: Vec3;
  columnCosines: Vec3;
  /** position of voxel [slice, 0, 0] */
  positions: Vec3[];
  /** [spacing between rows, spacing between columns] (DICOM PixelSpacing order) */
  pixelSpacing: [number, number];
  sliceSpacing: number;
  rows: number;
  columns: number;
}

/** Per-slice DICOM-like plane geometry of our [slice,row,col] array, for a Cornerstone image loader. */
export function sliceGeometry(affine: Mat4, shape: Vec3): SliceGeometry {
  const sliceVec = column(affine, 0);
  const rowVec = column(affine, 1);
  const colVec = column(affine, 2);
  const colSpacing = norm(colVec);
  const rowSpacing = norm(rowVec);
  const rowCosines = colVec.map((x) => x / colSpacing) as Vec3;
  const columnCosines = rowVec.map((x) => x / rowSpacing) as Vec3;
  const positions: Vec3[] = [];
  for (let s = 0; s < shape[0]; s++) positions.push(applyAffine(affine, [s, 0, 0]));
  return {
    rowCosines,
    columnCosines,
    positions,
    pixelSpacing: [rowSpacing, colSpacing],
    sliceSpacing: norm(sliceVec),
    rows: shape[1],
    columns: shape[2],
  };
}

/**
 * Maps our [slice,row,col] to a flat offset into a Cornerstone volume's scalar data, given a
 * function that turns a world point into that volume's continuous (i,j,k) index.
 * offset = base + s*strideS + r*strideR + c*strideC (strides may be negative).
 */
export class IndexMap {
  readonly strides: Vec3;
  readonly base: number;
  /** for each of our axes: which Cornerstone axis (0=i,1=j,2=k) and its direction (+1/-1) */
  readonly axes: { axis: number; sign: number }[];

  constructor(
    affine: Mat4,
    readonly shape: Vec3,
    readonly csDimensions: Vec3,
    worldToCsIndex: (world: Vec3) => ArrayLike<number>,
  ) {
    const o = worldToCsIndex(voxelToWorld(affine, [0, 0, 0]));
    const origin = [Math.round(o[0]), Math.round(o[1]), Math.round(o[2])];
    const csStride = [1, csDimensions[0], csDimensions[0] * csDimensions[1]];
    this.axes = [];
    const strides: number[] = [];
    for (let a = 0; a < 3; a++) {
      const unit: Vec3 = [0, 0, 0];
      unit[a] = 1;
      const p = worldToCsIndex(voxelToWorld(affine, unit));
      const d = [p[0] - o[0], p[1] - o[1], p[2] - o[2]];
      let best = 0;
      for (let k = 1; k < 3; k++) if (Math.abs(d[k]) > Math.abs(d[best])) best = k;
      const sign = d[best] >= 0 ? 1 : -1;
      this.axes.push({ axis: best, sign });
      strides.push(sign * csStride[best]);
    }
    this.strides = strides as Vec3;
    this.base = origin[0] * csStride[0] + origin[1] * csStride[1] + origin[2] * csStride[2];
  }

  offset(s: number, r: number, c: number): number {
    return this.base + s * this.strides[0] + r * this.strides[1] + c * this.strides[2];
  }

  /** Cornerstone (i,j,k) of our voxel. */
  csIndex(v: ArrayLike<number>): Vec3 {
    const off = this.offset(v[0], v[1], v[2]);
    const nx = this.csDimensions[0];
    const ny = this.csDimensions[1];
    return [off % nx, Math.floor(off / nx) % ny, Math.floor(off / (nx * ny))];
  }

  /** Is the mapping the identity layout (our C order == Cornerstone order)? */
  get isIdentity(): boolean {
    const [ns, nr, nc] = this.shape;
    void ns;
    return this.base === 0 && this.strides[2] === 1 && this.strides[1] === nc && this.strides[0] === nc * nr;
  }
}

/** Volume of one voxel in ml. */
export function voxelVolumeMl(affine: Mat4): number {
  const a = column(affine, 0);
  const b = column(affine, 1);
  const c = column(affine, 2);
  return Math.abs(dot(a, cross(b, c))) / 1000;
}

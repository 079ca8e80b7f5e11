/**
 * A small NIfTI-1 reader for the volumes the backend serves (.nii.gz, little-endian).
 *
 * The backend's convention (backend/imaging/nifti_io.py): NIfTI data[i,j,k] with i=col, j=row,
 * k=slice and an RAS affine over (i,j,k). Our array is [slice,row,col] in C order — the very
 * same bytes — with the LPS affine  diag(-1,-1,1,1) @ affine_ras[:, [2,1,0,3]].
 */
import { inflate } from "pako";
import type { Mat4, Vec3 } from "./geometry";

export type VoxelArray = Float32Array | Int16Array | Uint8Array | Uint16Array | Int32Array | Float64Array | Int8Array | Uint32Array;

export interface NiftiVolume {
  /** [slice,row,col] C order */
  data: VoxelArray;
  shape: Vec3;
  /** [slice,row,col,1] → LPS mm */
  affine: Mat4;
  description: string;
}

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

export async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  if (typeof DecompressionStream !== "undefined") {
    const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return inflate(bytes);
}

const DATATYPES: Record<number, { ctor: new (b: ArrayBuffer, o: number, n: number) => VoxelArray; size: number }> = {
  2: { ctor: Uint8Array, size: 1 },
  4: { ctor: Int16Array, size: 2 },
  8: { ctor: Int32Array, size: 4 },
  16: { ctor: Float32Array, size: 4 },
  64: { ctor: Float64Array, size: 8 },
  256: { ctor: Int8Array, size: 1 },
  512: { ctor: Uint16Array, size: 2 },
  768: { ctor: Uint32Array, size: 4 },
};

function quaternionAffine(view: DataView): number[][] {
  const b = view.getFloat32(256, true);
  const c = view.getFloat32(260, true);
  const d = view.getFloat32(264, true);
  const qx = view.getFloat32(268, true);
  const qy = view.getFloat32(272, true);
  const qz = view.getFloat32(276, true);
  const qfac = view.getFloat32(76, true) < 0 ? -1 : 1;
  const pix = [view.getFloat32(80, true), view.getFloat32(84, true), view.getFloat32(88, true)];
  const a = Math.sqrt(Math.max(0, 1 - (b * b + c * c + d * d)));
  const R = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  const scale = [pix[0], pix[1], pix[2] * qfac];
  return [
    [R[0][0] * scale[0], R[0][1] * scale[1], R[0][2] * scale[2], qx],
    [R[1][0] * scale[0], R[1][1] * scale[1], R[1][2] * scale[2], qy],
    [R[2][0] * scale[0], R[2][1] * scale[1], R[2][2] * scale[2], qz],
    [0, 0, 0, 1],
  ];
}

/** RAS affine over (i,j,k) → our LPS affine over (slice,row,col). */
export function rasIjkToLpsSrc(ras: number[][]): Mat4 {
  const perm = [2, 1, 0, 3];
  const flip = [-1, -1, 1, 1];
  return [0, 1, 2, 3].map((r) => perm.map((c) => ras[r][c] * flip[r] + 0));
}

export function parseNifti(raw: Uint8Array, options: { asFloat32?: boolean } = {}): NiftiVolume {
  const bytes = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 352 || view.getInt32(0, true) !== 348) {
    throw new Error("Not a little-endian NIfTI-1 file");
  }
  const ndim = view.getInt16(40, true);
  const dims = [1, 2, 3].map((i) => view.getInt16(40 + 2 * i, true));
  if (ndim < 3 || (ndim > 3 && view.getInt16(48, true) > 1)) throw new Error("Expected a 3D NIfTI volume");
  const datatype = view.getInt16(70, true);
  const type = DATATYPES[datatype];
  if (!type) throw new Error(`Unsupported NIfTI datatype ${datatype}`);
  const voxOffset = Math.round(view.getFloat32(108, true));
  let slope = view.getFloat32(112, true);
  const inter = view.getFloat32(116, true);
  if (!Number.isFinite(slope) || slope === 0) slope = 1;
  const sformCode = view.getInt16(254, true);
  const qformCode = view.getInt16(252, true);
  let ras: number[][];
  if (sformCode > 0) {
    ras = [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => view.getFloat32(280 + r * 16 + c * 4, true)));
    ras.push([0, 0, 0, 1]);
  } else if (qformCode > 0) {
    ras = quaternionAffine(view);
  } else {
    const pix = [view.getFloat32(80, true), view.getFloat32(84, true), view.getFloat32(88, true)];
    ras = [[pix[0], 0, 0, 0], [0, pix[1], 0, 0], [0, 0, pix[2], 0], [0, 0, 0, 1]];
  }
  const descBytes = bytes.subarray(148, 148 + 80);
  const end = descBytes.indexOf(0);
  const description = new TextDecoder().decode(end >= 0 ? descBytes.subarray(0, end) : descBytes);
  const n = dims[0] * dims[1] * dims[2];
  const start = bytes.byteOffset + voxOffset;
  if (voxOffset + n * type.size > bytes.byteLength) throw new Error("NIfTI file is truncated");
  let data: VoxelArray;
  if (start % type.size === 0) {
    data = new type.ctor(bytes.buffer as ArrayBuffer, start, n);
  } else {
    const copy = bytes.slice(voxOffset, voxOffset + n * type.size);
    data = new type.ctor(copy.buffer, 0, n);
  }
  if (options.asFloat32 || slope !== 1 || inter !== 0) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = data[i] * slope + inter;
    data = out;
  }
  return { data, shape: [dims[2], dims[1], dims[0]], affine: rasIjkToLpsSrc(ras), description };
}

export async function loadNifti(
  url: string,
  onProgress?: (fraction: number) => void,
  options: { asFloat32?: boolean } = {},
): Promise<NiftiVolume> {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get("Content-Length") || 0);
  let bytes: Uint8Array;
  if (response.body && total > 0 && onProgress) {
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      onProgress(Math.min(1, received / total));
    }
    bytes = new Uint8Array(received);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
  } else {
    bytes = new Uint8Array(await response.arrayBuffer());
    onProgress?.(1);
  }
  if (isGzip(bytes)) bytes = await gunzip(bytes);
  return parseNifti(bytes, options);
}

/**
 * The one transform chain of the viewer, used by prompt clicks, the cursor readout, the crosshair and
 * the test hooks alike:
 *
 *   page point (clientX, clientY) → canvas point (CSS px from the canvas's top left)
 *     → world (LPS mm, the viewport's camera) → continuous index [slice,row,col] → voxel.
 *
 * The canvas step relies on the drawing buffer being the canvas's CSS box × devicePixelRatio
 * (Cornerstone scales CSS px by devicePixelRatio and then uses the buffer size); `viewports.ts`
 * keeps it so with a ResizeObserver. Pure functions here; the viewport is passed in.
 */
import { worldToContinuousIndex, type Mat4, type Vec3 } from "./geometry";

export type Point2 = [number, number];

/** The two camera transforms of a Cornerstone viewport (canvas points in CSS px). */
export interface CameraTransforms {
  canvasToWorld(point: Point2): ArrayLike<number>;
  worldToCanvas(world: Vec3): ArrayLike<number>;
}

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Canvas point (CSS px) of a page point, given the canvas's bounding box. */
export function clientToCanvas(box: Box, clientX: number, clientY: number): Point2 {
  return [clientX - box.left, clientY - box.top];
}

/** Page point of a canvas point (the inverse of clientToCanvas). */
export function canvasToClient(box: Box, point: Point2): Point2 {
  return [box.left + point[0], box.top + point[1]];
}

/** Nearest voxel of a continuous index, or null when it lies outside the grid. */
export function voxelOf(index: ArrayLike<number>, shape: Vec3): Vec3 | null {
  const v: Vec3 = [Math.round(index[0]), Math.round(index[1]), Math.round(index[2])];
  return v.every((x, i) => x >= 0 && x < shape[i]) ? v : null;
}

export interface Pick {
  canvas: Point2;
  world: Vec3;
  /** continuous [slice,row,col] */
  index: Vec3;
  /** nearest voxel, null outside the scan */
  voxel: Vec3 | null;
}

/** Everything under a canvas point. */
export function pickCanvas(camera: CameraTransforms, inverseAffine: Mat4, shape: Vec3, canvas: Point2): Pick {
  const w = camera.canvasToWorld(canvas);
  const world: Vec3 = [w[0], w[1], w[2]];
  const index = worldToContinuousIndex(inverseAffine, world);
  return { canvas, world, index, voxel: voxelOf(index, shape) };
}

/** Where a world point lies on the canvas (CSS px). */
export function worldToCanvasPoint(camera: CameraTransforms, world: Vec3): Point2 {
  const p = camera.worldToCanvas(world);
  return [p[0], p[1]];
}

/** Is a drawing buffer the CSS box × devicePixelRatio (to the pixel the browser rounds to)? */
export function bufferMatches(buffer: { width: number; height: number }, css: { width: number; height: number }, dpr: number): boolean {
  return Math.abs(buffer.width - css.width * dpr) <= 1 && Math.abs(buffer.height - css.height * dpr) <= 1;
}

/**
 * Orientation letters at the four edges of a view: the patient direction each screen direction points to.
 * `right` and `down` are the world (LPS) directions of screen right and screen down.
 */
export function orientationMarkers(right: Vec3, down: Vec3): { left: string; right: string; top: string; bottom: string } {
  return {
    right: directionLetters(right),
    left: directionLetters([-right[0], -right[1], -right[2]]),
    bottom: directionLetters(down),
    top: directionLetters([-down[0], -down[1], -down[2]]),
  };
}

/** LPS direction → patient letters, largest component first (e.g. [0.9, 0, -0.3] → "LI"). */
export function directionLetters(d: Vec3): string {
  const names: [string, string][] = [["L", "R"], ["P", "A"], ["S", "I"]];
  // LPS: +x is patient left, +y posterior, +z superior
  return [0, 1, 2]
    .filter((i) => Math.abs(d[i]) > 0.3)
    .sort((a, b) => Math.abs(d[b]) - Math.abs(d[a]))
    .map((i) => (d[i] > 0 ? names[i][0] : names[i][1]))
    .join("");
}

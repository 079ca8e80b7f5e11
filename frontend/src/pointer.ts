/**
 * What the mouse does on the views: click, drag and double-click are turned into navigate / point / box
 * gestures (brush and eraser strokes are Cornerstone's), plus the geometry behind two of them: the MIP's
 * hottest voxel along a ray and the 3D box a 2D drag stands for.
 */
import { voxelToWorld, worldToContinuousIndex, type Mat4, type Vec3 } from "./geometry";
import type { Mode } from "./tools";
import { voxelOf } from "./registration";
import { ALL_VIEWPORTS, MIP, type Viewports } from "./viewports";

export interface PointerHost {
  mode(): Mode;
  dragColour(): string;
  navigate(id: string, world: Vec3): void;
  point(id: string, x: number, y: number, positive: boolean): void;
  box(id: string, x0: number, y0: number, x1: number, y1: number): void;
  cursor(id: string, clientX: number, clientY: number): void;
  mipDoubleClick(clientX: number, clientY: number): void;
}

export function bindPointer(root: HTMLElement, views: Viewports, host: PointerHost): void {
  for (const id of ALL_VIEWPORTS) {
    const element = root.querySelector(`#vp-${id}`) as HTMLElement;
    element.addEventListener("contextmenu", (e) => e.preventDefault());
    element.addEventListener("mousemove", (e) => host.cursor(id, e.clientX, e.clientY));
    if (id === MIP) {
      element.addEventListener("dblclick", (e) => host.mipDoubleClick(e.clientX, e.clientY));
      continue;
    }
    let start: { x: number; y: number; button: number; shift: boolean } | null = null;
    element.addEventListener("pointerdown", (e) => {
      if (e.ctrlKey || e.altKey || e.metaKey) return;
      if (e.button !== 0 && e.button !== 2) return;
      if (host.mode() === "brush" || host.mode() === "eraser") return;
      const [x, y] = views.pickClient(id, e.clientX, e.clientY).canvas;
      start = { x, y, button: e.button, shift: e.shiftKey };
    });
    element.addEventListener("pointermove", (e) => {
      if (!start || host.mode() !== "prompt" || start.button !== 0) return;
      const [x, y] = views.pickClient(id, e.clientX, e.clientY).canvas;
      if (Math.hypot(x - start.x, y - start.y) > 6) {
        views.overlay.drag = { id, x0: start.x, y0: start.y, x1: x, y1: y, colour: host.dragColour() };
        views.drawOverlay(id);
      }
    });
    element.addEventListener("pointerup", (e) => {
      if (!start) return;
      const s = start;
      start = null;
      const pick = views.pickClient(id, e.clientX, e.clientY);
      const [x, y] = pick.canvas;
      const drag = views.overlay.drag;
      views.overlay.drag = null;
      views.drawOverlay(id);
      if (host.mode() === "navigate") return host.navigate(id, pick.world);
      if (drag && s.button === 0) host.box(id, s.x, s.y, x, y);
      else host.point(id, x, y, !(s.button === 2 || s.shift));
    });
    element.addEventListener("pointerleave", () => {
      if (views.overlay.drag?.id === id) {
        views.overlay.drag = null;
        views.drawOverlay(id);
      }
      start = null;
    });
  }
}

/** The hottest voxel along the ray through `world` in direction `normal` (a MIP pixel's voxel). */
export function hottestAlongRay(world: Vec3, normal: Vec3, affine: Mat4, inverseAffine: Mat4, shape: Vec3, spacing: Vec3,
  valueAt: (v: Vec3) => number): { voxel: Vec3; world: Vec3; value: number } | null {
  let best: { voxel: Vec3; value: number } | null = null;
  const step = Math.min(...spacing) / 2;
  const reach = Math.max(...shape) * Math.max(...spacing);
  for (let t = -reach; t <= reach; t += step) {
    const p: Vec3 = [world[0] + t * normal[0], world[1] + t * normal[1], world[2] + t * normal[2]];
    const v = voxelOf(worldToContinuousIndex(inverseAffine, p), shape);
    if (!v) continue;
    const value = valueAt(v);
    if (!best || value > best.value) best = { voxel: v, value };
  }
  return best ? { ...best, world: voxelToWorld(affine, best.voxel) } : null;
}

/**
 * The 3D box [lo, hi) a 2D drag between two continuous indices stands for: in-plane as dragged, and as
 * deep as the mean in-plane extent, centred on the slice dragged on. Null when it misses the scan.
 */
export function boxFromDrag(a: Vec3, b: Vec3, normal: Vec3, inverseAffine: Mat4, shape: Vec3, spacing: Vec3): [Vec3, Vec3] | null {
  // The through-plane axis of our [slice,row,col] index: the one the view normal moves most.
  const step = worldToContinuousIndex(inverseAffine, normal);
  const zero = worldToContinuousIndex(inverseAffine, [0, 0, 0]);
  const dir = step.map((s, i) => Math.abs(s - zero[i]));
  const through = dir.indexOf(Math.max(...dir));
  const lo: Vec3 = [0, 0, 0];
  const hi: Vec3 = [0, 0, 0];
  const inPlaneMm: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i === through) continue;
    lo[i] = Math.max(0, Math.floor(Math.min(a[i], b[i]) + 0.5));
    hi[i] = Math.min(shape[i], Math.ceil(Math.max(a[i], b[i]) + 0.5));
    inPlaneMm.push((hi[i] - lo[i]) * spacing[i]);
  }
  const centre = Math.round((a[through] + b[through]) / 2);
  const half = Math.max(1, Math.round((inPlaneMm[0] + inPlaneMm[1]) / 4 / spacing[through]));
  lo[through] = Math.max(0, centre - half);
  hi[through] = Math.min(shape[through], centre + half + 1);
  return lo.some((x, i) => x >= hi[i]) ? null : [lo, hi];
}

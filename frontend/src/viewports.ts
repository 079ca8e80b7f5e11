/**
 * Viewports and rendering: the rendering engine, canvases that follow their element's size, the
 * transform chain bound to a viewport, and the 2D overlays (crosshair, box drag, orientation markers,
 * comment markers) drawn on a canvas above each view.
 */
import { Enums, RenderingEngine, setVolumesForViewports, type Types } from "@cornerstonejs/core";
import { type Mat4, type Vec3 } from "./geometry";
import { bufferMatches, clientToCanvas, orientationMarkers, pickCanvas, worldToCanvasPoint, type Pick, type Point2 } from "./registration";

export const VIEWPORTS = ["axial", "coronal", "sagittal"] as const;
export const MIP = "mip";
export const ALL_VIEWPORTS = [...VIEWPORTS, MIP];

export interface Marker {
  world: Vec3;
  text: string;
  colour?: string;
}

export interface OverlayState {
  crosshair: Vec3 | null;
  drag: { id: string; x0: number; y0: number; x1: number; y1: number; colour: string } | null;
  markers: Marker[];
}

export class Viewports {
  readonly engine: RenderingEngine;
  readonly overlay: OverlayState = { crosshair: null, drag: null, markers: [] };
  private observer: ResizeObserver | null = null;
  private disposers: (() => void)[] = [];
  /** How often the canvases were resized to their boxes (for tests). */
  resizes = 0;

  constructor(
    private root: HTMLElement,
    engineId: string,
    private inverseAffine: Mat4,
    private shape: Vec3,
  ) {
    this.engine = new RenderingEngine(engineId);
  }

  element(id: string): HTMLDivElement {
    return this.root.querySelector(`#vp-${id}`) as HTMLDivElement;
  }

  viewport(id: string): Types.IVolumeViewport {
    return this.engine.getViewport(id) as Types.IVolumeViewport;
  }

  async setup(petVolumeId: string, ctVolumeId: string | null, mipSlabMm: number): Promise<void> {
    const engine = this.engine;
    const orientation = { axial: Enums.OrientationAxis.AXIAL, coronal: Enums.OrientationAxis.CORONAL, sagittal: Enums.OrientationAxis.SAGITTAL };
    engine.setViewports([
      ...VIEWPORTS.map((id) => ({
        viewportId: id,
        type: Enums.ViewportType.ORTHOGRAPHIC,
        element: this.element(id),
        defaultOptions: { orientation: orientation[id], background: [0, 0, 0] as Types.Point3 },
      })),
      {
        viewportId: MIP,
        type: Enums.ViewportType.ORTHOGRAPHIC,
        element: this.element(MIP),
        defaultOptions: { orientation: Enums.OrientationAxis.CORONAL, background: [0, 0, 0] as Types.Point3 },
      },
    ]);
    const volumes = ctVolumeId ? [{ volumeId: ctVolumeId }, { volumeId: petVolumeId }] : [{ volumeId: petVolumeId }];
    await setVolumesForViewports(engine, volumes, [...VIEWPORTS]);
    await setVolumesForViewports(engine, [{
      volumeId: petVolumeId,
      blendMode: Enums.BlendModes.MAXIMUM_INTENSITY_BLEND,
      slabThickness: mipSlabMm,
    }], [MIP]);
    this.followSizes();
    for (const id of ALL_VIEWPORTS) {
      const element = this.element(id);
      const onRender = () => this.drawOverlay(id);
      element.addEventListener(Enums.Events.IMAGE_RENDERED, onRender);
      this.disposers.push(() => element.removeEventListener(Enums.Events.IMAGE_RENDERED, onRender));
    }
  }

  /**
   * Keep every drawing buffer at its element's CSS box × devicePixelRatio. Layout settles after the
   * viewports are enabled (side panels, fonts, the loading overlay), and a stale buffer shifts every
   * screen → world transform, so each element is watched, and a devicePixelRatio change (zoom, moving
   * to another screen) is caught by a resolution media query.
   */
  private followSizes(): void {
    let scheduled = false;
    const resize = () => {
      scheduled = false;
      this.resizeNow();
    };
    this.observer = new ResizeObserver(() => {
      // ResizeObserver runs after layout and before paint: resize in the same frame, once for all views.
      if (!scheduled) {
        scheduled = true;
        queueMicrotask(resize);
      }
    });
    for (const id of ALL_VIEWPORTS) this.observer.observe(this.element(id));
    let media: MediaQueryList | null = null;
    const watchDpr = () => {
      media?.removeEventListener("change", onDpr);
      media = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
      media.addEventListener("change", onDpr);
    };
    const onDpr = () => {
      this.resizeNow();
      watchDpr();
    };
    watchDpr();
    this.disposers.push(() => media?.removeEventListener("change", onDpr));
    this.resizeNow();
  }

  /**
   * Resize the canvases to their boxes when any buffer is stale (keeping the cameras). Cornerstone skips a
   * resize while a render is pending (its animation frame), so a still-stale buffer is retried next frame.
   */
  resizeNow(force = false, attempt = 0): void {
    if (this.engine.hasBeenDestroyed) return;
    if (force || !this.buffersMatch()) {
      this.engine.resize(true, true);
      this.resizes++;
      if (!this.buffersMatch() && attempt < 30) {
        requestAnimationFrame(() => this.resizeNow(false, attempt + 1));
      }
    }
    this.drawOverlays();
  }

  buffersMatch(): boolean {
    return this.canvasReport().every((c) => c.matches);
  }

  /** Each canvas (rendering and overlay): CSS box, drawing buffer, devicePixelRatio. */
  canvasReport(): { id: string; kind: string; cssWidth: number; cssHeight: number; elementWidth: number; elementHeight: number;
    width: number; height: number; dpr: number; matches: boolean }[] {
    const dpr = window.devicePixelRatio || 1;
    const out = [];
    for (const id of ALL_VIEWPORTS) {
      const canvases: [string, HTMLCanvasElement | null][] = [
        ["render", this.viewport(id)?.canvas ?? null],
        ["overlay", this.root.querySelector(`#ov-${id}`) as HTMLCanvasElement | null],
      ];
      for (const [kind, canvas] of canvases) {
        if (!canvas) continue;
        const box = canvas.getBoundingClientRect();
        // every canvas covers its view's element (an overlay of another size would draw in the wrong place)
        const element = this.element(id).getBoundingClientRect();
        out.push({ id, kind, cssWidth: box.width, cssHeight: box.height, elementWidth: element.width, elementHeight: element.height,
          width: canvas.width, height: canvas.height, dpr, matches: bufferMatches(canvas, box, dpr) });
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ the transform chain

  /** Everything under a page point on a viewport. */
  pickClient(id: string, clientX: number, clientY: number): Pick {
    const canvas = this.viewport(id).canvas;
    return this.pickCanvas(id, clientToCanvas(canvas.getBoundingClientRect(), clientX, clientY));
  }

  pickCanvas(id: string, point: Point2): Pick {
    const vp = this.viewport(id);
    return pickCanvas({
      canvasToWorld: (p) => vp.canvasToWorld(p as Types.Point2),
      worldToCanvas: (w) => vp.worldToCanvas(w as Types.Point3),
    }, this.inverseAffine, this.shape, point);
  }

  worldToCanvas(id: string, world: Vec3): Point2 {
    const vp = this.viewport(id);
    return worldToCanvasPoint({
      canvasToWorld: (p) => vp.canvasToWorld(p as Types.Point2),
      worldToCanvas: (w) => vp.worldToCanvas(w as Types.Point3),
    }, world);
  }

  /** Page point of a world point on a viewport. */
  worldToClient(id: string, world: Vec3): Point2 {
    const box = this.viewport(id).canvas.getBoundingClientRect();
    const [x, y] = this.worldToCanvas(id, world);
    return [box.left + x, box.top + y];
  }

  /** Move the orthogonal views' slices through a world point (not `except`). */
  centreOn(world: Vec3, except?: string): void {
    this.overlay.crosshair = world;
    for (const id of VIEWPORTS) {
      if (id === except) continue;
      const vp = this.viewport(id);
      const camera = vp.getCamera();
      const n = camera.viewPlaneNormal as Vec3;
      const f = camera.focalPoint as Vec3;
      const p = camera.position as Vec3;
      const d = (world[0] - f[0]) * n[0] + (world[1] - f[1]) * n[1] + (world[2] - f[2]) * n[2];
      vp.setCamera({
        focalPoint: [f[0] + d * n[0], f[1] + d * n[1], f[2] + d * n[2]],
        position: [p[0] + d * n[0], p[1] + d * n[1], p[2] + d * n[2]],
      });
      vp.render();
    }
    this.drawOverlays();
  }

  // ------------------------------------------------------------------ overlays

  drawOverlays(): void {
    for (const id of ALL_VIEWPORTS) this.drawOverlay(id);
  }

  drawOverlay(id: string): void {
    const canvas = this.root.querySelector(`#ov-${id}`) as HTMLCanvasElement | null;
    if (!canvas || this.engine.hasBeenDestroyed) return;
    const vp = this.viewport(id);
    if (!vp) return;
    const dpr = window.devicePixelRatio || 1;
    const box = canvas.getBoundingClientRect();
    const bw = Math.round(box.width * dpr);
    const bh = Math.round(box.height * dpr);
    if (canvas.width !== bw || canvas.height !== bh) {
      canvas.width = bw;
      canvas.height = bh;
    }
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0); // draw in CSS px, the unit of the transform chain
    const w = box.width;
    const h = box.height;
    ctx.clearRect(0, 0, w, h);
    const { crosshair, drag, markers } = this.overlay;
    if (crosshair && id !== MIP) {
      const [x, y] = this.worldToCanvas(id, crosshair);
      ctx.strokeStyle = "rgba(80,200,255,0.6)";
      ctx.lineWidth = 1;
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(0, y); ctx.lineTo(x - 8, y); ctx.moveTo(x + 8, y); ctx.lineTo(w, y);
      ctx.moveTo(x, 0); ctx.lineTo(x, y - 8); ctx.moveTo(x, y + 8); ctx.lineTo(x, h);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (drag && drag.id === id) {
      ctx.strokeStyle = drag.colour;
      ctx.lineWidth = 1.5;
      ctx.strokeRect(Math.min(drag.x0, drag.x1), Math.min(drag.y0, drag.y1), Math.abs(drag.x1 - drag.x0), Math.abs(drag.y1 - drag.y0));
    }
    if (id !== MIP) this.drawMarkers(ctx, id, markers);
    this.drawOrientation(ctx, id, w, h);
  }

  /** Comment markers near the current slice of a view (within 2 voxels of 4 mm). */
  private drawMarkers(ctx: CanvasRenderingContext2D, id: string, markers: Marker[]): void {
    const camera = this.viewport(id).getCamera();
    const n = camera.viewPlaneNormal as Vec3;
    const f = camera.focalPoint as Vec3;
    for (const m of markers) {
      const d = (m.world[0] - f[0]) * n[0] + (m.world[1] - f[1]) * n[1] + (m.world[2] - f[2]) * n[2];
      if (Math.abs(d) > 8) continue;
      const [x, y] = this.worldToCanvas(id, m.world);
      ctx.strokeStyle = m.colour ?? "#ff4fd8";
      ctx.fillStyle = m.colour ?? "#ff4fd8";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, 7, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.font = "bold 12px system-ui, sans-serif";
      ctx.fillText(m.text, x + 10, y - 8);
    }
  }

  private drawOrientation(ctx: CanvasRenderingContext2D, id: string, w: number, h: number): void {
    const camera = this.viewport(id).getCamera();
    const up = camera.viewUp as Vec3;
    const n = camera.viewPlaneNormal as Vec3;
    // screen right = viewUp × viewPlaneNormal (the normal points from the focal point to the camera)
    const right: Vec3 = [up[1] * n[2] - up[2] * n[1], up[2] * n[0] - up[0] * n[2], up[0] * n[1] - up[1] * n[0]];
    const down: Vec3 = [-up[0], -up[1], -up[2]];
    const m = orientationMarkers(right, down);
    ctx.fillStyle = "#ffd84a";
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    ctx.fillText(m.top, w / 2, 10);
    ctx.fillText(m.bottom, w / 2, h - 10);
    ctx.textAlign = "left";
    ctx.fillText(m.left, 4, h / 2);
    ctx.textAlign = "right";
    ctx.fillText(m.right, w - 4, h / 2);
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    const record = (window.__studio.orientation ?? {}) as Record<string, unknown>;
    record[id] = m;
    window.__studio.orientation = record;
  }

  dispose(): void {
    this.observer?.disconnect();
    for (const d of this.disposers.splice(0)) d();
    this.engine.destroy();
  }
}

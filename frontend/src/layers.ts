/**
 * The two labelmap layers over the PET: the working layer (what prompts and the brush edit now, one
 * segment index per label value) and the saved layer (the annotation's saved objects, one segment index
 * per object id, in its label's colour). Reading and writing them in our [slice,row,col] order, only the
 * slices a mask touched, and the edit history of the working layer.
 */
import { cache, type Types } from "@cornerstonejs/core";
import { Enums as ToolEnums, segmentation } from "@cornerstonejs/tools";
import type { Label } from "./api";
import type { IndexMap, Vec3 } from "./geometry";
import { EditHistory, diffStep, type Step, type StepKind } from "./history";
import { applyMask } from "./mask";
import type { DecodedMask } from "./protocol";
import { studio } from "./ui";
import { VIEWPORTS } from "./viewports";

type Voxels = ArrayLike<number> & { [i: number]: number };

export function hexToRgba(hex: string, alpha = 255): Types.Color {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255, alpha];
}

export class Layers {
  readonly history = new EditHistory();
  private stroke: { before: Uint8Array; kind: StepKind; value: number } | null = null;

  constructor(
    readonly working: Types.IImageVolume,
    readonly saved: Types.IImageVolume,
    readonly workingId: string,
    readonly savedId: string,
    private map: IndexMap,
    private shape: Vec3,
  ) {}

  setup(labels: Label[]): void {
    const labelmap = ToolEnums.SegmentationRepresentations.Labelmap;
    segmentation.addSegmentations([
      { segmentationId: this.workingId, representation: { type: labelmap, data: { volumeId: this.working.volumeId } } },
      { segmentationId: this.savedId, representation: { type: labelmap, data: { volumeId: this.saved.volumeId } } },
    ]);
    for (const id of VIEWPORTS) {
      segmentation.addLabelmapRepresentationToViewport(id, [{ segmentationId: this.savedId }, { segmentationId: this.workingId }]);
      for (const label of labels) segmentation.config.color.setSegmentIndexColor(id, this.workingId, label.value, hexToRgba(label.color, 200));
    }
    segmentation.activeSegmentation.setActiveSegmentation(VIEWPORTS[0], this.workingId);
  }

  setActiveValue(value: number): void {
    segmentation.segmentIndex.setActiveSegmentIndex(this.workingId, value);
  }

  array(volume: Types.IImageVolume = this.working): Voxels {
    return volume.voxelManager!.getCompleteScalarDataArray!() as unknown as Voxels;
  }

  /** The working layer in our [slice,row,col] order. */
  ours(): Uint8Array {
    const cs = this.array();
    if (this.map.isIdentity) return Uint8Array.from(cs as ArrayLike<number>);
    const [ns, nr, nc] = this.shape;
    const out = new Uint8Array(ns * nr * nc);
    for (let s = 0, i = 0; s < ns; s++) for (let r = 0; r < nr; r++) for (let c = 0; c < nc; c++, i++) out[i] = cs[this.map.offset(s, r, c)];
    return out;
  }

  /** Voxels [slice,row,col] of the working layer that carry a label value. */
  voxels(value: number): Vec3[] {
    const data = this.array();
    const [ns, nr, nc] = this.shape;
    const out: Vec3[] = [];
    for (let s = 0; s < ns; s++) for (let r = 0; r < nr; r++) for (let c = 0; c < nc; c++) {
      if (data[this.map.offset(s, r, c)] === value) out.push([s, r, c]);
    }
    return out;
  }

  private replaceAll(volume: Types.IImageVolume, data: Voxels): void {
    volume.voxelManager!.setCompleteScalarDataArray!(data);
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(volume === this.working ? this.workingId : this.savedId);
  }

  /**
   * A server mask replaces a label's segment in the working layer; only the slices it touched are
   * written back (and re-uploaded). `record`: it is an edit step (not the resumed state or a reset).
   */
  applyServerMask(mask: DecodedMask, value: number, record: boolean): { written: number; timings: number[] } {
    const t0 = performance.now();
    this.closeStroke();
    const data = this.array();
    const before = (data as unknown as Uint8Array).slice();
    const t1 = performance.now();
    const [dx, dy] = this.working.dimensions;
    const frameSize = dx * dy;
    const touched = { frameSize, frames: new Set<number>() };
    const written = applyMask({ data, map: this.map, shape: this.shape }, mask, value, false, touched);
    if (record) {
      this.history.push(diffStep("prompt", value, before, data, mask.header.session,
        [...touched.frames].map((k) => [k * frameSize, (k + 1) * frameSize] as [number, number])));
    }
    studio.historyKinds = this.history.kinds;
    const t2 = performance.now();
    const frames = this.writeFrames(this.working, data, touched.frames);
    const t3 = performance.now();
    if (frames.length) segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.workingId, frames);
    return { written, timings: [t0, t1, t2, t3] };
  }

  /**
   * Copy the given frames (k slices of Cornerstone's index order) of a full scalar array into the
   * labelmap's per-slice images; falls back to writing the complete array. Returns the frames written.
   */
  private writeFrames(volume: Types.IImageVolume, data: Voxels, frames: Set<number>): number[] {
    const list = [...frames].sort((a, b) => a - b);
    if (!list.length) return list;
    const [dx, dy] = volume.dimensions;
    const frameSize = dx * dy;
    const imageIds = volume.imageIds ?? [];
    const flat = data as unknown as Uint8Array;
    const targets = list.map((k) => (imageIds[k] ? cache.getImage(imageIds[k])?.voxelManager?.getScalarData() : undefined));
    if (targets.some((t) => !t || t.length !== frameSize) || typeof flat.subarray !== "function") {
      volume.voxelManager!.setCompleteScalarDataArray!(data);
      return list;
    }
    list.forEach((k, i) => (targets[i] as Types.PixelDataTypedArray).set(flat.subarray(k * frameSize, (k + 1) * frameSize)));
    return list;
  }

  /** Undo / redo one step of the working layer's history. */
  step(kind: "undo" | "redo"): Step | null {
    this.closeStroke();
    const data = this.array();
    const step = kind === "undo" ? this.history.undo(data) : this.history.redo(data);
    if (step) this.replaceAll(this.working, data);
    studio.historyKinds = this.history.kinds;
    return step;
  }

  /**
   * A brush or eraser stroke starts: remember the layer as it was. The step is closed lazily, when the
   * next action (stroke, mask, undo, redo) comes: by then Cornerstone has surely written the whole stroke,
   * which its own events do not say.
   */
  beginStroke(kind: StepKind, value: number): void {
    this.closeStroke();
    this.stroke = { before: (this.array() as unknown as Uint8Array).slice(), kind, value };
  }

  closeStroke(): void {
    const stroke = this.stroke;
    this.stroke = null;
    if (stroke) this.history.push(diffStep(stroke.kind, stroke.value, stroke.before, this.array()));
    studio.historyKinds = this.history.kinds;
  }

  /** Remove a label value from the working layer. */
  clearValue(value: number): void {
    const data = this.array();
    for (let i = 0; i < data.length; i++) if (data[i] === value) data[i] = 0;
    this.closeStroke();
    this.replaceAll(this.working, data);
    this.history.forget(value);
  }

  /** Draw saved objects (an object-id map in our order) into the saved layer, each in its label's colour. */
  showObjects(objects: ArrayLike<number>, colourOf: Map<number, string>): number {
    // Object ids are the segment indices (so each object can be shown or hidden), coloured by label.
    for (const id of VIEWPORTS) {
      for (const [objectId, colour] of colourOf) {
        if (objectId < 256) segmentation.config.color.setSegmentIndexColor(id, this.savedId, objectId, hexToRgba(colour, 110));
      }
    }
    const data = this.array(this.saved);
    for (let i = 0; i < data.length; i++) data[i] = 0;
    const [ns, nr, nc] = this.shape;
    let n = 0;
    for (let s = 0, i = 0; s < ns; s++) for (let r = 0; r < nr; r++) for (let c = 0; c < nc; c++, i++) {
      const o = objects[i];
      if (!o) continue;
      data[this.map.offset(s, r, c)] = Math.min(255, o);
      n++;
    }
    this.replaceAll(this.saved, data);
    return n;
  }

  /** Show or hide a label's segment of the working layer, or an object of the saved layer. */
  setVisible(layer: "working" | "saved", index: number, visible: boolean): void {
    const segmentationId = layer === "working" ? this.workingId : this.savedId;
    for (const id of VIEWPORTS) {
      segmentation.config.visibility.setSegmentIndexVisibility(id, { segmentationId, type: ToolEnums.SegmentationRepresentations.Labelmap }, index, visible);
    }
  }

  dispose(): void {
    try { segmentation.removeSegmentation(this.workingId); segmentation.removeSegmentation(this.savedId); } catch { /* */ }
  }
}

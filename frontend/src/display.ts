/**
 * How the PET (and CT) look: colour map, SUV window presets, CT windows and PET/CT fusion, and the
 * toolbar controls for them.
 */
import type { RenderingEngine, Types } from "@cornerstonejs/core";
import type { Series } from "./api";
import type { VoxelArray } from "./nifti";
import { el, studio } from "./ui";
import { MIP, VIEWPORTS } from "./viewports";

export const SUV_PRESETS: [string, number, number][] = [["0–5", 0, 5], ["0–10", 0, 10], ["0–20", 0, 20]];
export const CT_PRESETS: [string, number, number][] = [["soft tissue", -160, 240], ["lung", -1350, 150], ["bone", -700, 1300], ["brain", 0, 80]];
export const COLORMAPS: [string, string][] = [["inverted grey", "Inverted-Grayscale"], ["hot", "Black-Body Radiation"], ["grey", "Grayscale"]];

export class Display {
  colormap = 0;
  suvPreset = 1;
  petOpacity = 0.5;
  fusion = false;
  private colormapBeforeFusion: number | null = null;
  private ctWindowSet = false;

  constructor(
    private root: HTMLElement,
    private engine: () => RenderingEngine | null,
    private petVolumeId: string,
    private ctVolumeId: string | null,
    private petSeries: Series,
    private petData: VoxelArray,
    readonly isSuv: boolean,
  ) {}

  private $(id: string): HTMLElement {
    return this.root.querySelector(`#${id}`) as HTMLElement;
  }

  buildControls(): void {
    const colormaps = this.$("colormaps");
    colormaps.append(el("span", { class: "muted" }, "PET"));
    COLORMAPS.forEach(([name], i) => colormaps.append(el("button", { "data-colormap": String(i), onclick: () => { this.colormap = i; this.apply(); } }, name)));
    const suv = this.$("suv-presets");
    if (this.isSuv) {
      suv.append(el("span", { class: "muted" }, "SUV"));
      SUV_PRESETS.forEach(([name], i) => suv.append(el("button", { "data-suv": String(i), onclick: () => { this.suvPreset = i; this.apply(); } }, name)));
    } else {
      const warning = this.$("units-warning");
      warning.hidden = false;
      warning.textContent = `Warning: this PET is in ${this.petSeries.units || "unknown units"}, not SUVbw — SUV presets and SUV statistics are unavailable; values shown are raw.`;
    }
    const ct = this.$("ct-presets");
    if (this.ctVolumeId) {
      ct.append(el("span", { class: "muted" }, "CT"));
      CT_PRESETS.forEach(([name, lo, hi]) => ct.append(el("button", { onclick: () => this.setCtWindow(lo, hi) }, name)));
      this.$("fusion-box").hidden = false;
      const fusion = this.$("fusion") as HTMLInputElement;
      fusion.checked = this.fusion;
      fusion.onchange = () => this.setFusion(fusion.checked);
      const opacity = this.$("opacity") as HTMLInputElement;
      opacity.value = String(this.petOpacity);
      opacity.oninput = () => { this.petOpacity = Number(opacity.value); this.apply(); };
    }
  }

  nextSuvPreset(): void {
    if (!this.isSuv) return;
    this.suvPreset = (this.suvPreset + 1) % SUV_PRESETS.length;
    this.apply();
  }

  nextColormap(): void {
    this.colormap = (this.colormap + 1) % COLORMAPS.length;
    this.apply();
  }

  toggleFusion(): void {
    if (this.ctVolumeId) this.setFusion(!this.fusion);
  }

  /**
   * Fusion that shows both: PET in a colour map at half opacity over the CT in a soft-tissue window
   * (inverted grey over the CT would hide it), and back to the reader's map when fusion is off.
   */
  setFusion(on: boolean): void {
    this.fusion = on;
    (this.$("fusion") as HTMLInputElement).checked = on;
    if (on && COLORMAPS[this.colormap][1] === "Inverted-Grayscale") {
      this.colormapBeforeFusion = this.colormap;
      this.colormap = COLORMAPS.findIndex(([, name]) => name === "Black-Body Radiation");
    } else if (!on && this.colormapBeforeFusion !== null) {
      this.colormap = this.colormapBeforeFusion;
      this.colormapBeforeFusion = null;
    }
    this.apply();
  }

  setCtWindow(lower: number, upper: number): void {
    const engine = this.engine();
    if (!this.ctVolumeId || !engine) return;
    for (const id of VIEWPORTS) {
      const vp = engine.getViewport(id) as Types.IVolumeViewport;
      vp.setProperties({ voiRange: { lower, upper } }, this.ctVolumeId);
      vp.render();
    }
  }

  private petRange(): { lower: number; upper: number } {
    if (this.isSuv) {
      const [, lo, hi] = SUV_PRESETS[this.suvPreset];
      return { lower: lo, upper: hi };
    }
    // raw units: 0 .. 99.5th percentile of a sample
    const d = this.petData;
    const sample: number[] = [];
    const step = Math.max(1, Math.floor(d.length / 20000));
    for (let i = 0; i < d.length; i += step) sample.push(d[i]);
    sample.sort((a, b) => a - b);
    return { lower: 0, upper: Math.max(1e-6, sample[Math.floor(sample.length * 0.995)]) };
  }

  apply(renderMip = true): void {
    const engine = this.engine();
    if (!engine) return;
    const [, colormapName] = COLORMAPS[this.colormap];
    const range = this.petRange();
    const fused = Boolean(this.ctVolumeId) && this.fusion;
    for (const id of [...VIEWPORTS, MIP]) {
      const vp = engine.getViewport(id) as Types.IVolumeViewport;
      // Fused: uniform PET opacity over the CT. Cornerstone/vtk blends per mm of slab, so the ortho views
      // use a one-voxel slab and that as the opacity unit distance, which makes the slider linear.
      const colormap = { name: colormapName, opacity: id !== MIP && fused ? this.petOpacity : 1 };
      if (id !== MIP) {
        const slab = Math.max(...this.petSeries.spacing);
        vp.setProperties({ slabThickness: slab });
        for (const actor of vp.getActors().filter((a) => a.referencedId === this.petVolumeId || a.referencedId === this.ctVolumeId)) {
          const property = (actor.actor as unknown as { getProperty(): { setScalarOpacityUnitDistance(i: number, d: number): void } }).getProperty();
          property.setScalarOpacityUnitDistance(0, slab);
        }
      }
      vp.setProperties({ voiRange: range, colormap }, this.petVolumeId);
      if (this.ctVolumeId && id !== MIP) {
        const ctActor = vp.getActors().find((a) => a.referencedId === this.ctVolumeId || a.uid === this.ctVolumeId);
        ctActor?.actor.setVisibility(fused);
      }
      if (id !== MIP || renderMip) vp.render();
    }
    if (this.ctVolumeId && this.fusion && !this.ctWindowSet) {
      this.ctWindowSet = true;
      this.setCtWindow(-160, 240);
    }
    this.root.querySelectorAll<HTMLButtonElement>("[data-colormap]").forEach((b) => b.classList.toggle("active", Number(b.dataset.colormap) === this.colormap));
    this.root.querySelectorAll<HTMLButtonElement>("[data-suv]").forEach((b) => b.classList.toggle("active", Number(b.dataset.suv) === this.suvPreset));
    studio.display = { colormap: colormapName, voiRange: range, fusion: fused, petOpacity: this.petOpacity };
  }
}

/**
 * How the PET (and CT) look: colour map, the SUV unit switch, SUV window presets, CT windows and PET/CT
 * fusion, and the toolbar controls for them.
 */
import { Enums, type RenderingEngine, type Types } from "@cornerstonejs/core";
import type { Series, SuvTypeInfo } from "./api";
import type { VoxelArray } from "./nifti";
import { el, studio } from "./ui";
import { SUV_PRESETS, describeType, isUsable, matchingPreset, nextUnit, shownWindow, storedUnit, storedWindow, unitOf, type Range, type Unit } from "./units";
import { MIP, VIEWPORTS } from "./viewports";

export { SUV_PRESETS };
export const CT_PRESETS: [string, number, number][] = [["soft tissue", -160, 240], ["lung", -1350, 150], ["bone", -700, 1300], ["brain", 0, 80]];
export const COLORMAPS: [string, string][] = [["inverted grey", "Inverted-Grayscale"], ["hot", "Black-Body Radiation"], ["grey", "Grayscale"]];

export class Display {
  colormap = 0;
  /** the preset the PET window is, in the chosen unit; -1 when it is none (after a unit switch or Alt+drag) */
  suvPreset = 1;
  /** the SUV type every number is shown in; null when the PET is not SUV */
  unit: Unit | null;
  /** the PET window on the stored voxel values (what Cornerstone gets) */
  private window: Range | null = null;
  private unitListeners: ((unit: Unit) => void)[] = [];
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
    private types: SuvTypeInfo[],
  ) {
    this.unit = storedUnit(types);
    if (this.unit) this.window = storedWindow(this.presetRange(this.suvPreset), this.unit);
  }

  get isSuv(): boolean {
    return this.unit !== null;
  }

  /** Called after the unit changes (cursor readout, segment table). */
  onUnitChange(listener: (unit: Unit) => void): void {
    this.unitListeners.push(listener);
  }

  private $(id: string): HTMLElement {
    return this.root.querySelector(`#${id}`) as HTMLElement;
  }

  buildControls(): void {
    const colormaps = this.$("colormaps");
    colormaps.append(el("span", { class: "muted" }, "PET"));
    COLORMAPS.forEach(([name], i) => colormaps.append(el("button", { "data-colormap": String(i), onclick: () => { this.colormap = i; this.apply(); } }, name)));
    const suv = this.$("suv-presets");
    if (this.unit) {
      // The unit switch: every SUV type of the series, unavailable ones shown with their reason.
      const select = el("select", { id: "suv-unit", title: "SUV type of every number shown" });
      for (const info of this.types) {
        const option = el("option", { value: info.type, title: describeType(info) }, `${info.type}${isUsable(info) ? "" : " (unavailable)"}`);
        option.disabled = !isUsable(info);
        select.append(option);
      }
      select.value = this.unit.name;
      select.onchange = () => this.setUnit(select.value);
      suv.append(select);
      SUV_PRESETS.forEach(([name], i) => suv.append(el("button", { "data-suv": String(i), onclick: () => this.setPreset(i) }, name)));
      suv.append(el("span", { id: "pet-window", class: "muted", title: "PET window in the chosen unit" }));
      this.followWindowLevel();
    } else {
      const warning = this.$("units-warning");
      warning.hidden = false;
      warning.textContent = `Warning: this PET is in ${this.petSeries.units || "unknown units"}, not SUV — the SUV unit switch, SUV presets and SUV statistics are unavailable; values shown are raw.`;
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
    if (!this.unit) return;
    this.setPreset((this.suvPreset + 1) % SUV_PRESETS.length);
  }

  /** A preset window, given in the chosen unit. */
  setPreset(index: number): void {
    if (!this.unit) return;
    this.suvPreset = index;
    this.window = storedWindow(this.presetRange(index), this.unit);
    this.apply();
  }

  /**
   * Show every number in another SUV type. The window on the voxels stays as it is, so the image looks
   * the same; its numbers (and which preset it is, if any) are now read in the new unit.
   */
  setUnit(name: string): void {
    const unit = unitOf(this.types, name);
    if (!unit || !this.window) return;
    this.unit = unit;
    this.suvPreset = matchingPreset(SUV_PRESETS, shownWindow(this.window, unit));
    const select = this.root.querySelector<HTMLSelectElement>("#suv-unit");
    if (select) select.value = unit.name;
    this.showWindow();
    for (const listener of this.unitListeners) listener(unit);
  }

  nextUnit(): void {
    const unit = this.unit && nextUnit(this.types, this.unit.name);
    if (unit) this.setUnit(unit.name);
  }

  private presetRange(index: number): Range {
    const [, lower, upper] = SUV_PRESETS[index];
    return { lower, upper };
  }

  /** Alt+drag window/level changes the PET window of a view: its numbers follow in the toolbar. */
  private followWindowLevel(): void {
    for (const id of VIEWPORTS) {
      const element = this.$(`vp-${id}`);
      element?.addEventListener(Enums.Events.VOI_MODIFIED, (evt: Event) => {
        const detail = (evt as CustomEvent).detail as { volumeId?: string; range?: Range };
        if (!this.unit || detail?.volumeId !== this.petVolumeId || !detail.range) return;
        const { lower, upper } = detail.range;
        if (this.window && lower === this.window.lower && upper === this.window.upper) return;
        this.window = { lower, upper };
        this.suvPreset = matchingPreset(SUV_PRESETS, shownWindow(this.window, this.unit));
        this.showWindow();
      });
    }
  }

  /** The window's numbers in the chosen unit, the active preset, and the test hook. */
  private showWindow(): void {
    this.root.querySelectorAll<HTMLButtonElement>("[data-suv]").forEach((b) => b.classList.toggle("active", Number(b.dataset.suv) === this.suvPreset));
    const shown = this.unit && this.window ? shownWindow(this.window, this.unit) : null;
    const label = this.root.querySelector("#pet-window");
    if (label && shown && this.unit) label.textContent = `${shown.lower.toFixed(2)}–${shown.upper.toFixed(2)} ${this.unit.name}`;
    const state = (studio.display ?? {}) as Record<string, unknown>;
    studio.display = { ...state, unit: this.unit?.name ?? null, multiplier: this.unit?.multiplier ?? null,
      voiRange: shown ?? this.window ?? state.voiRange, voiStored: this.window, suvPreset: this.unit ? this.suvPreset : null };
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

  /** The PET window on the stored voxels. */
  private petRange(): Range {
    if (this.window) return this.window;
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
    studio.display = { colormap: colormapName, voiRange: range, fusion: fused, petOpacity: this.petOpacity };
    this.showWindow();
  }
}

/** The reading-room viewer: PET (+CT fusion) in three orthogonal views and a coronal MIP, prompts over the scan WebSocket, labelmap editing. */
import {
  cache,
  eventTarget,
  utilities,
  volumeLoader,
  type Types,
} from "@cornerstonejs/core";
import {
  BrushTool,
  Enums as ToolEnums,
  PanTool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  segmentation,
  utilities as toolUtilities,
} from "@cornerstonejs/tools";
import { api, list, projectPath, type Annotation, type EngineRow, type Label, type ObjectStats, type Project, type Scan, type Series, type Version } from "./api";
import { Display } from "./display";
import { EditHistory, diffStep, type StepKind } from "./history";
import { formatNumber, lesionTotals, segmentRows } from "./objects";
import { annotatorPanel, reviewerPanel, savedObjects, type ReviewHost } from "./review";
import { createVolume, initCornerstone, registerVolumeImages, releaseAll } from "./cornerstone";
import { IndexMap, invert4, voxelToWorld, voxelVolumeMl, worldToContinuousIndex, type Mat4, type Vec3 } from "./geometry";
import { applyMask, segmentStatistics, type SegmentStats } from "./mask";
import { loadNifti, type NiftiVolume } from "./nifti";
import { ScanSocket, cropMask, scanSocketUrl, type DecodedMask, type Index3, type ServerMessage } from "./protocol";
import { el, escapeHtml, studio, toast } from "./ui";
import { voxelOf } from "./registration";
import { ALL_VIEWPORTS, MIP, VIEWPORTS, Viewports } from "./viewports";

type Mode = "prompt" | "brush" | "eraser" | "navigate";
const ERROR_TEXT: Record<string, string> = {
  malformed: "The server did not understand a message.",
  too_large: "A message was too large for the server.",
  unknown_type: "The server does not support this action yet.",
  forbidden: "You are not allowed to do this.",
  not_found: "The session or label was not found (it may have been closed).",
  invalid_prompt: "That prompt is not valid (outside the scan?).",
  engine_unavailable: "The segmentation engine is not available right now.",
  worker_timeout: "The segmentation engine did not answer in time.",
  engine_failed: "The segmentation engine failed on this prompt.",
  conflict: "Your annotation changed elsewhere; reload to get the current version.",
  rate_limited: "Too many prompts; slow down a little.",
  not_connected: "Not connected to the server; reconnecting…",
};

const HELP: [string, string][] = [
  ["click", "positive point (prompt mode)"],
  ["shift+click / right click", "negative point"],
  ["drag", "box prompt"],
  ["1–9", "choose label"],
  ["P / B / E / N", "prompt / brush / eraser / navigate mode"],
  ["[ ]", "brush size"],
  ["Ctrl+Z / Ctrl+Shift+Z (Y)", "undo / redo the last prompt, brush or eraser stroke"],
  ["R", "reset the session"],
  ["Enter", "accept the mask"],
  ["W", "next SUV window preset"],
  ["C", "next colormap"],
  ["F", "toggle PET/CT fusion"],
  ["V", "show/hide the active segment"],
  ["wheel / ↑ ↓", "scroll slices"],
  ["Ctrl+drag, middle drag", "zoom, pan"],
  ["Alt+drag", "window/level"],
  ["click (navigate mode)", "move the crosshair there"],
  ["double-click on the MIP", "jump to the hottest voxel along that ray"],
  ["?", "this help"],
  ["Esc", "close this help"],
];

function hexToRgba(hex: string, alpha = 255): Types.Color {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255, alpha];
}

export class Viewer {
  private views: Viewports | null = null;
  private get engine() {
    return this.views?.engine ?? null;
  }
  private socket: ScanSocket | null = null;
  private pet!: NiftiVolume;
  private petSeries!: Series;
  private inverseAffine!: Mat4;
  private map!: IndexMap;
  private labelmapVolume!: Types.IImageVolume;
  private acceptedVolume: Types.IImageVolume | null = null;
  private scanKey: string;
  private petVolumeId: string;
  private ctVolumeId: string | null = null;
  private segId: string;
  private acceptedSegId: string;
  private toolGroupId: string;
  private mipGroupId: string;
  private labels: Label[] = [];
  private activeLabel: Label | null = null;
  private sessions = new Map<number, number | string>(); // label id → session
  private sessionLabels = new Map<string, number>(); // session → label id
  private openingLabel: number | null = null;
  private queuedPrompts: { label: number; prompt: Parameters<ScanSocket["prompt"]>[1] }[] = [];
  private edited = new Set<number>(); // label ids edited by brush since their last server mask
  private hidden = new Set<number>();
  private mode: Mode = "prompt";
  private display!: Display;
  private crosshair: Vec3 | null = null;
  private stats = new Map<number, SegmentStats>();
  private annotation: Annotation | null = null;
  private me = "";
  private disposers: (() => void)[] = [];
  private statsTimer: ReturnType<typeof setTimeout> | null = null;
  private isSuv = true;
  private brushSize = 8;

  constructor(
    private root: HTMLElement,
    private project: Project,
    private scan: Scan,
    private options: { review?: Annotation } = {},
  ) {
    this.scanKey = `s${scan.id}-${Date.now().toString(36)}`;
    this.petVolumeId = `cornerstoneStreamingImageVolume:pet-${this.scanKey}`;
    this.segId = `seg-${this.scanKey}`;
    this.acceptedSegId = `acc-${this.scanKey}`;
    this.toolGroupId = `tg-${this.scanKey}`;
    this.mipGroupId = `tgmip-${this.scanKey}`;
  }

  // ------------------------------------------------------------------ layout

  private layout(): void {
    this.root.innerHTML = `
      <div class="viewer${this.options.review ? " read-only" : ""}">
        <header class="toolbar">
          <a href="#/projects/${this.project.id}" class="back">← ${escapeHtml(this.project.name)}</a>
          <strong class="scan-name">${escapeHtml(this.scan.name)}</strong>
          <span class="group" id="colormaps"></span>
          <span class="group" id="suv-presets"></span>
          <span class="group" id="ct-presets"></span>
          <label class="group" id="fusion-box" hidden><input type="checkbox" id="fusion"> fusion
            <input type="range" id="opacity" min="0" max="1" step="0.05" value="0.5" title="PET opacity"></label>
          <span class="group edit-only" id="modes"></span>
          <label class="group edit-only" title="segmentation engine">engine <select id="engine"></select></label>
          <span class="group edit-only">
            <button data-cmd="undo" title="Ctrl+Z">Undo</button><button data-cmd="redo" title="Ctrl+Shift+Z">Redo</button>
            <button data-cmd="reset" title="R">Reset</button><button data-cmd="accept" class="primary" title="Enter">Accept</button>
          </span>
          <span class="spinner" id="spinner" hidden title="waiting for the engine"></span>
          <span id="conn" class="conn">connecting…</span>
          <button id="help-btn" title="?">?</button>
        </header>
        <div id="units-warning" class="warning" hidden></div>
        <div class="body">
          <aside class="sidebar">
            <section class="edit-only"><h3>Label</h3><div id="labels" class="labels"></div></section>
            <section><h3>Segments</h3><table id="segments" class="segments"></table><div id="totals" class="muted"></div></section>
            <section id="my-review-box" class="edit-only"><h3>Submit and review</h3><div id="my-review"></div></section>
            <section id="review-box" hidden><h3>Review</h3><div id="review"></div></section>
            <section><h3>Here now</h3><ul id="presence" class="presence"></ul></section>
            <section><h3>Cursor</h3><div id="cursor" class="cursor">–</div></section>
          </aside>
          <main class="grid">
            ${[...VIEWPORTS, MIP].map((id) => `
              <div class="vp-wrap"><div class="vp" id="vp-${id}" data-viewport="${id}"></div>
              <canvas class="overlay" id="ov-${id}"></canvas><div class="vp-label">${id === MIP ? "coronal MIP" : id}</div></div>`).join("")}
          </main>
        </div>
        <div id="loading" class="loading"><div>Loading scan…</div><progress id="progress" max="1" value="0"></progress><div id="progress-text"></div></div>
        <div id="help" class="help" hidden><div class="help-card"><h2>Keyboard shortcuts</h2>
          <table>${HELP.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")}</table>
          <button id="help-close">Close (Esc)</button></div></div>
      </div>`;
  }

  private $(id: string): HTMLElement {
    return this.root.querySelector(`#${id}`) as HTMLElement;
  }

  private setProgress(fraction: number, text: string): void {
    (this.$("progress") as HTMLProgressElement).value = fraction;
    this.$("progress-text").textContent = text;
  }

  // ------------------------------------------------------------------ start

  async start(): Promise<void> {
    this.layout();
    studio.ready = false;
    studio.mipReady = false;
    studio.pendingPrompts = 0;
    studio.lastMaskVoxels = null;
    studio.lastMask = undefined;
    studio.lastAccepted = undefined;
    studio.lastError = undefined;
    studio.viewer = this;
    try {
      await this.load();
    } catch (error) {
      this.$("loading").innerHTML = `<div class="error">Could not open the scan: ${escapeHtml((error as Error).message)}</div>
        <a href="#/projects/${this.project.id}">Back to the worklist</a>`;
      studio.error = (error as Error).message;
      throw error;
    }
  }

  private async load(): Promise<void> {
    const pet = this.scan.series.find((s) => s.modality === "PT");
    if (!pet) throw new Error("This scan has no PET series.");
    if (this.scan.status !== "ready") throw new Error(`The scan is not ready (status: ${this.scan.status}).`);
    this.petSeries = pet;
    this.isSuv = pet.units === "SUVbw";
    const hasCt = this.scan.series.some((s) => s.modality === "CT");
    const base = `${projectPath(this.project.id)}/scans/${this.scan.id}`;
    const [labels, me] = await Promise.all([
      list<Label>(`${projectPath(this.project.id)}/labels/`),
      api<{ username?: string }>("/api/projects/" + this.project.id + "/members/?page_size=1").catch(() => ({})),
    ]);
    void me;
    this.labels = labels.sort((a, b) => a.value - b.value);
    this.activeLabel = this.labels[0] ?? null;
    const init = initCornerstone();
    let petFraction = 0;
    let ctFraction = hasCt ? 0 : 1;
    const report = () => this.setProgress((petFraction + ctFraction) / 2, `PET ${Math.round(petFraction * 100)}%${hasCt ? ` · CT ${Math.round(ctFraction * 100)}%` : ""}`);
    const petPromise = loadNifti(`${base}/volumes/pet/`, (f) => { petFraction = f; report(); }, { asFloat32: true });
    const ctPromise = hasCt
      ? loadNifti(`${base}/volumes/ct-on-pet/`, (f) => { ctFraction = f; report(); }, { asFloat32: true }).catch((e) => {
          toast(`CT could not be loaded (${e.message}); showing PET only.`, "warn");
          return null;
        })
      : Promise.resolve(null);
    const opened = performance.now();
    const [petVolume, ctVolume] = await Promise.all([petPromise, ctPromise, init]).then(([p, c]) => [p, c] as const);
    const phases: Record<string, number> = { volumesLoaded: performance.now() - opened };
    studio.openPhases = phases;
    this.pet = petVolume;
    // The REST affine is authoritative for voxel indices; the NIfTI must agree.
    this.inverseAffine = invert4(pet.affine);
    const diff = Math.max(...pet.affine.flat().map((x, i) => Math.abs(x - petVolume.affine.flat()[i])));
    if (diff > 1e-2) console.warn("NIfTI affine differs from the series affine by", diff);
    this.setProgress(1, "Preparing views…");

    const petIds = registerVolumeImages(`pet-${this.scanKey}`, petVolume.data, petVolume.shape, pet.affine, "PT");
    const petCs = await createVolume(this.petVolumeId, petIds);
    if (ctVolume) {
      this.ctVolumeId = `cornerstoneStreamingImageVolume:ct-${this.scanKey}`;
      const ctIds = registerVolumeImages(`ct-${this.scanKey}`, ctVolume.data, ctVolume.shape, pet.affine, "CT");
      await createVolume(this.ctVolumeId, ctIds);
    }
    this.map = new IndexMap(pet.affine, petVolume.shape, petCs.dimensions as Vec3, (w) =>
      utilities.transformWorldToIndexContinuous(petCs.imageData as never, w as Types.Point3));
    this.labelmapVolume = volumeLoader.createAndCacheDerivedLabelmapVolume(this.petVolumeId, { volumeId: `lm-${this.scanKey}` });
    this.acceptedVolume = volumeLoader.createAndCacheDerivedLabelmapVolume(this.petVolumeId, { volumeId: `acc-lm-${this.scanKey}` });

    phases.volumesCreated = performance.now() - opened;
    await this.setupViewports();
    phases.viewportsSet = performance.now() - opened;
    this.setupSegmentation();
    this.setupTools();
    this.bindPointer();
    if (!this.options.review) this.bindStrokes();
    this.bindKeys();
    this.display = new Display(this.root, () => this.engine, this.petVolumeId, this.ctVolumeId, this.petSeries, this.pet.data, this.isSuv);
    this.buildControls();
    this.display.apply(false);
    this.$("loading").hidden = true;
    this.views!.resizeNow();
    this.crosshair = voxelToWorld(pet.affine, petVolume.shape.map((n) => Math.floor(n / 2)) as Vec3);
    this.jumpTo(this.crosshair);
    phases.renderRequested = performance.now() - opened;
    // The slice views come first; the whole-body MIP (a ray cast through the volume, slow in software
    // WebGL) is drawn in the frames after them.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      studio.ready = true;
      studio.renderedAt = performance.now();
      phases.slicesOnScreen = performance.now() - opened;
      if (!this.engine) return; // closed meanwhile
      this.viewport(MIP).render();
      requestAnimationFrame(() => requestAnimationFrame(() => {
        studio.mipReady = true;
        phases.mipOnScreen = performance.now() - opened;
      }));
    }));
    this.connect();
    if (this.options.review) void this.setupReview(this.options.review);
  }

  private async setupViewports(): Promise<void> {
    this.views = new Viewports(this.root, `re-${this.scanKey}`, this.inverseAffine, this.pet.shape);
    const [ns, nr, nc] = this.pet.shape;
    const extent = Math.max(ns, nr, nc) * Math.max(...this.petSeries.spacing) * 2;
    await this.views.setup(this.petVolumeId, this.ctVolumeId, extent);
  }

  private setupSegmentation(): void {
    segmentation.addSegmentations([
      { segmentationId: this.segId, representation: { type: ToolEnums.SegmentationRepresentations.Labelmap, data: { volumeId: this.labelmapVolume.volumeId } } },
      { segmentationId: this.acceptedSegId, representation: { type: ToolEnums.SegmentationRepresentations.Labelmap, data: { volumeId: this.acceptedVolume!.volumeId } } },
    ]);
    for (const id of VIEWPORTS) {
      segmentation.addLabelmapRepresentationToViewport(id, [{ segmentationId: this.acceptedSegId }, { segmentationId: this.segId }]);
      for (const label of this.labels) {
        segmentation.config.color.setSegmentIndexColor(id, this.segId, label.value, hexToRgba(label.color, 200));
        segmentation.config.color.setSegmentIndexColor(id, this.acceptedSegId, label.value, hexToRgba(label.color, 110));
      }
    }
    segmentation.activeSegmentation.setActiveSegmentation(VIEWPORTS[0], this.segId);
    if (this.activeLabel) segmentation.segmentIndex.setActiveSegmentIndex(this.segId, this.activeLabel.value);
    const onModified = (evt: Event) => {
      const detail = (evt as CustomEvent).detail as { segmentationId?: string };
      if (detail?.segmentationId !== this.segId) return;
      if ((this.mode === "brush" || this.mode === "eraser") && this.activeLabel) {
        this.edited.add(this.activeLabel.id);
        this.dirty.add(this.activeLabel.value);
      }
      this.scheduleStats();
    };
    eventTarget.addEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, onModified);
    this.disposers.push(() => eventTarget.removeEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, onModified));
  }

  private setupTools(): void {
    for (const tool of [PanTool, ZoomTool, StackScrollTool, WindowLevelTool, BrushTool]) {
      try {
        addTool(tool);
      } catch {
        /* already added */
      }
    }
    const group = ToolGroupManager.createToolGroup(this.toolGroupId)!;
    group.addTool(PanTool.toolName);
    group.addTool(ZoomTool.toolName);
    group.addTool(StackScrollTool.toolName);
    group.addTool(WindowLevelTool.toolName);
    group.addToolInstance("StudioBrush", BrushTool.toolName, { activeStrategy: "FILL_INSIDE_CIRCLE" });
    group.addToolInstance("StudioEraser", BrushTool.toolName, { activeStrategy: "ERASE_INSIDE_CIRCLE" });
    for (const id of VIEWPORTS) group.addViewport(id, this.engine!.id);
    const mip = ToolGroupManager.createToolGroup(this.mipGroupId)!;
    mip.addTool(PanTool.toolName);
    mip.addTool(ZoomTool.toolName);
    mip.addViewport(MIP, this.engine!.id);
    const { MouseBindings, KeyboardBindings } = ToolEnums;
    for (const g of [group, mip]) {
      g.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      g.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Ctrl }] });
    }
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Alt }] });
    // The brush starts at the size the [ ] keys step from (Cornerstone's own default is 25 mm).
    segmentationBrushSize(this.toolGroupId, this.brushSize);
    this.setMode("prompt");
  }

  private setMode(mode: Mode): void {
    if (this.options.review) mode = "navigate"; // the review screen is read-only
    this.mode = mode;
    const group = ToolGroupManager.getToolGroup(this.toolGroupId);
    if (group) {
      const primary = [{ mouseButton: ToolEnums.MouseBindings.Primary }];
      group.setToolPassive("StudioBrush");
      group.setToolPassive("StudioEraser");
      if (mode === "brush") group.setToolActive("StudioBrush", { bindings: primary });
      if (mode === "eraser") group.setToolActive("StudioEraser", { bindings: primary });
    }
    this.root.querySelectorAll<HTMLButtonElement>("#modes button").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
    this.root.querySelector(".grid")?.setAttribute("data-mode", mode);
    this.socket?.activity(mode === "prompt" || mode === "brush" || mode === "eraser" ? `segmenting ${this.activeLabel?.name ?? ""}`.trim() : "reading");
  }

  // ------------------------------------------------------------------ controls

  private buildControls(): void {
    this.display.buildControls();
    const modes = this.$("modes");
    for (const [mode, name, key] of [["prompt", "Prompt", "P"], ["brush", "Brush", "B"], ["eraser", "Eraser", "E"], ["navigate", "Navigate", "N"]] as const) {
      modes.append(el("button", { "data-mode": mode, title: key, onclick: () => this.setMode(mode) }, name));
    }
    this.root.querySelectorAll<HTMLButtonElement>("[data-cmd]").forEach((b) => {
      b.onclick = () => this.command(b.dataset.cmd as "undo" | "redo" | "reset" | "accept");
    });
    void this.buildEngineChoice();
    this.$("help-btn").onclick = () => this.toggleHelp();
    this.$("help-close").onclick = () => this.toggleHelp(false);
    this.renderLabels();
    this.renderSegments();
    this.setMode("prompt");
  }

  /** The engines this project allows that can run here; the project's default first chosen. */
  private async buildEngineChoice(): Promise<void> {
    const select = this.$("engine") as HTMLSelectElement;
    try {
      const rows = await api<EngineRow[]>(`${projectPath(this.project.id)}/engines/`);
      const usable = rows.filter((r) => r.allowed);
      select.innerHTML = usable.map((r) => `<option value="${escapeHtml(r.name)}" ${r.available ? "" : "disabled"} title="${escapeHtml(r.available ? r.description : r.reason ?? "")}">${escapeHtml(r.name)}${r.available ? "" : " (unavailable)"}</option>`).join("");
      this.engineName = usable.find((r) => r.default && r.available)?.name ?? usable.find((r) => r.available)?.name ?? null;
      if (this.engineName) select.value = this.engineName;
    } catch (e) {
      select.innerHTML = `<option>${escapeHtml(this.project.default_engine ?? "default")}</option>`;
      toast(`The engine list could not be loaded: ${(e as Error).message}`, "warn");
    }
    studio.engine = this.engineName;
    select.onchange = () => {
      this.engineName = select.value;
      studio.engine = this.engineName;
      // The next prompt of each label opens its session again with the chosen engine.
      this.sessions.clear();
      this.sessionLabels.clear();
      toast(`Engine: ${select.value}`, "info");
    };
  }
  private engineName: string | null = null;
  private history = new EditHistory();
  private suppressed = new Set<number>(); // seqs of server undo/redo whose masks the local history already applied
  private strokeBefore: Uint8Array | null = null;

  /** Brush and eraser strokes become history steps: the labelmap before the stroke against after it. */
  private bindStrokes(): void {
    for (const id of VIEWPORTS) {
      const element = this.$(`vp-${id}`);
      element.addEventListener("pointerdown", (e) => {
        if ((this.mode !== "brush" && this.mode !== "eraser") || e.button !== 0) return;
        this.strokeBefore = (this.labelmapArray() as unknown as Uint8Array).slice();
      }, { capture: true });
    }
    const end = () => {
      const before = this.strokeBefore;
      if (!before || !this.activeLabel) return;
      this.strokeBefore = null;
      const kind: StepKind = this.mode === "eraser" ? "eraser" : "brush";
      const value = this.activeLabel.value;
      // Cornerstone finishes the stroke on its own mouse-up handling; read the result after it.
      setTimeout(() => {
        this.history.push(diffStep(kind, value, before, this.labelmapArray()));
        studio.historyKinds = this.history.kinds;
      }, 50);
    };
    window.addEventListener("pointerup", end);
    this.disposers.push(() => window.removeEventListener("pointerup", end));
  }

  private renderLabels(): void {
    const box = this.$("labels");
    box.innerHTML = "";
    if (!this.labels.length) box.textContent = "This project has no labels yet.";
    this.labels.forEach((label, i) => {
      const button = el("button", {
        class: `label ${label.id === this.activeLabel?.id ? "active" : ""}`,
        "data-label": String(label.id),
        title: `${i + 1}`,
        onclick: () => this.selectLabel(label),
      }, el("span", { class: "swatch", style: `background:${label.color}` }), `${i + 1}. ${label.name}`);
      box.append(button);
    });
  }

  private selectLabel(label: Label): void {
    this.activeLabel = label;
    segmentation.segmentIndex.setActiveSegmentIndex(this.segId, label.value);
    this.renderLabels();
    this.socket?.activity(`segmenting ${label.name}`);
  }

  /** Saved objects of the reader's (or the reviewed) annotation, one row each, and live rows for unsaved work. */
  private savedRows: ObjectStats[] = [];
  private dirty = new Set<number>(); // label values with unsaved working-layer changes
  private hiddenObjects = new Set<number>();

  private renderSegments(): void {
    const table = this.$("segments") as HTMLTableElement;
    const live = new Map([...this.stats].filter(([value]) => this.dirty.has(value)).map(([value, st]) => {
      const [, nr, nc] = this.pet.shape;
      const at = st.maxAt;
      return [value, { ...st, target: [Math.floor(at / (nr * nc)), Math.floor(at / nc) % nr, at % nc] as [number, number, number] }];
    }));
    const rows = segmentRows(this.savedRows, live, this.labels, this.edited);
    const unit = this.isSuv ? "SUV" : this.petSeries.units || "raw";
    table.innerHTML = `<tr><th></th><th>object</th><th>ml</th><th>${unit}max</th><th>${unit}mean</th><th>${unit}peak</th><th>TLG</th><th></th></tr>` +
      (rows.length ? "" : `<tr><td colspan="8" class="muted">No segments yet${this.options.review ? "." : ": click in the image."}</td></tr>`);
    for (const row of rows) {
      const hidden = row.live ? this.hidden.has(row.labelValue ?? -1) : this.hiddenObjects.has(row.objectId ?? -1);
      const name = row.live ? `${row.labelName}${row.edited ? " ✎" : ""} (unsaved)` : `${row.labelName} #${row.objectId}`;
      const tr = el("tr", { "data-segment": String(row.labelValue), "data-object": row.objectId === null ? undefined : String(row.objectId), class: `${row.live ? "live" : "saved"}${hidden ? " hidden-row" : ""}` },
        el("td", {}, el("span", { class: "swatch", style: `background:${row.colour}` })),
        el("td", {}, name),
        el("td", {}, formatNumber(row.ml, 1)),
        el("td", {}, formatNumber(row.suvMax, 2)),
        el("td", {}, formatNumber(row.suvMean, 2)),
        el("td", {}, formatNumber(row.suvPeak, 2)),
        el("td", {}, formatNumber(row.tlg, 1)),
        el("td", { class: "row-actions" },
          el("button", { class: "small", title: "show / hide", onclick: (e: Event) => {
            e.stopPropagation();
            if (row.live) this.toggleVisibility(row.labelValue!);
            else this.toggleObject(row.objectId!);
          } }, hidden ? "show" : "hide"),
          row.live && !this.options.review ? el("button", { class: "small", title: "discard the unsaved mask of this label", onclick: (e: Event) => {
            e.stopPropagation();
            const label = this.labels.find((l) => l.id === row.labelId);
            if (label) this.discardWorking(label);
          } }, "delete") : null));
      if (row.target) {
        tr.title = "Jump to its hottest voxel";
        tr.style.cursor = "pointer";
        tr.onclick = () => this.goToVoxel(row.target as Vec3);
      }
      table.append(tr);
    }
    const totals = lesionTotals(rows, this.labels);
    this.$("totals").textContent = totals.count ? `Saved lesions: ${totals.count}, MTV ${totals.mtv.toFixed(1)} ml, TLG ${totals.tlg.toFixed(1)}` : "";
    studio.segmentRows = rows.map((r) => ({ object: r.objectId, label: r.labelName, live: r.live, ml: r.ml, suvPeak: r.suvPeak, tlg: r.tlg }));
  }

  private toggleObject(objectId: number): void {
    const visible = this.hiddenObjects.has(objectId);
    if (visible) this.hiddenObjects.delete(objectId);
    else this.hiddenObjects.add(objectId);
    for (const id of VIEWPORTS) {
      segmentation.config.visibility.setSegmentIndexVisibility(id, { segmentationId: this.acceptedSegId, type: ToolEnums.SegmentationRepresentations.Labelmap }, objectId, visible);
    }
    this.renderSegments();
    this.engine?.renderViewports([...VIEWPORTS]);
  }

  /** Throw away a label's unsaved working mask (its prompts are reset on the server too). */
  private discardWorking(label: Label): void {
    const session = this.sessions.get(label.id);
    if (session !== undefined) this.socket?.command("reset", session);
    const data = this.labelmapArray();
    for (let i = 0; i < data.length; i++) if (data[i] === label.value) data[i] = 0;
    this.labelmapVolume.voxelManager!.setCompleteScalarDataArray!(data);
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segId);
    this.dirty.delete(label.value);
    this.edited.delete(label.id);
    this.engine?.renderViewports([...VIEWPORTS]);
    this.scheduleStats();
  }

  /** Load the saved objects' statistics (per object) of an annotation into the table. */
  private async loadSavedRows(annotationId: number, version?: number): Promise<void> {
    try {
      this.savedRows = await savedObjects(this.project.id, annotationId, version);
    } catch (e) {
      toast((e as Error).message, "warn");
    }
    this.renderSegments();
  }

  private toggleVisibility(value: number): void {
    const visible = this.hidden.has(value);
    if (visible) this.hidden.delete(value);
    else this.hidden.add(value);
    for (const id of VIEWPORTS) {
      segmentation.config.visibility.setSegmentIndexVisibility(id, { segmentationId: this.segId, type: ToolEnums.SegmentationRepresentations.Labelmap }, value, visible);
    }
    this.renderSegments();
    this.engine?.renderViewports([...VIEWPORTS]);
  }

  private toggleHelp(show?: boolean): void {
    const help = this.$("help");
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  // ------------------------------------------------------------------ statistics

  private scheduleStats(): void {
    if (this.statsTimer) clearTimeout(this.statsTimer);
    this.statsTimer = setTimeout(() => this.computeStats(), 120);
  }

  private labelmapArray(volume: Types.IImageVolume = this.labelmapVolume): ArrayLike<number> & { [i: number]: number } {
    return volume.voxelManager!.getCompleteScalarDataArray!() as unknown as ArrayLike<number> & { [i: number]: number };
  }

  /** The labelmap in our [slice,row,col] order. */
  private labelmapOurs(): Uint8Array {
    const cs = this.labelmapArray();
    if (this.map.isIdentity) return Uint8Array.from(cs as ArrayLike<number>);
    const [ns, nr, nc] = this.pet.shape;
    const out = new Uint8Array(ns * nr * nc);
    for (let s = 0, i = 0; s < ns; s++) for (let r = 0; r < nr; r++) for (let c = 0; c < nc; c++, i++) out[i] = cs[this.map.offset(s, r, c)];
    return out;
  }

  private computeStats(): void {
    const ours = this.labelmapOurs();
    this.stats = segmentStatistics(ours, this.pet.data, voxelVolumeMl(this.petSeries.affine));
    studio.segments = Object.fromEntries([...this.stats].map(([k, v]) => [k, v]));
    this.renderSegments();
  }

  // ------------------------------------------------------------------ navigation, cursor, overlays

  private viewport(id: string): Types.IVolumeViewport {
    return this.engine!.getViewport(id) as Types.IVolumeViewport;
  }

  private jumpTo(world: Vec3, except?: string): void {
    this.crosshair = world;
    this.views?.centreOn(world, except);
    studio.crosshair = world;
  }

  private drawOverlay(id: string): void {
    this.views?.drawOverlay(id);
  }

  private voxelOf(index: Vec3): Index3 | null {
    return voxelOf(index, this.pet.shape) as Index3 | null;
  }

  private suvAt(v: ArrayLike<number>): number {
    const [, nr, nc] = this.pet.shape;
    return this.pet.data[(v[0] * nr + v[1]) * nc + v[2]];
  }

  /** The cursor readout at a page point (the same pick as a click there). */
  private readCursor(id: string, clientX: number, clientY: number): void {
    const { world, voxel } = this.views!.pickClient(id, clientX, clientY);
    const cursor = this.$("cursor");
    if (!voxel || id === MIP) {
      cursor.textContent = id === MIP ? "MIP (projection; double-click jumps to the hottest voxel)" : "outside the scan";
      studio.cursor = null;
      return;
    }
    const value = this.suvAt(voxel);
    const unit = this.isSuv ? "SUV" : this.petSeries.units || "raw";
    cursor.innerHTML = `<b>${unit} ${value.toFixed(2)}</b><br>voxel [${voxel.join(", ")}]<br>${world.map((x) => x.toFixed(1)).join(", ")} mm (LPS)`;
    studio.cursor = { voxel, value, viewport: id };
  }

  private bindPointer(): void {
    for (const id of ALL_VIEWPORTS) {
      const element = this.$(`vp-${id}`);
      element.addEventListener("contextmenu", (e) => e.preventDefault());
      element.addEventListener("mousemove", (e) => this.readCursor(id, e.clientX, e.clientY));
      if (id === MIP) {
        // jump the orthogonal views to the brightest voxel along the ray
        element.addEventListener("dblclick", (e) => this.jumpToMipPeak(e.clientX, e.clientY));
        continue;
      }
      let start: { x: number; y: number; button: number; shift: boolean } | null = null;
      element.addEventListener("pointerdown", (e) => {
        if (e.ctrlKey || e.altKey || e.metaKey) return;
        if (e.button !== 0 && e.button !== 2) return;
        if (this.mode === "brush" || this.mode === "eraser") return;
        const [x, y] = this.views!.pickClient(id, e.clientX, e.clientY).canvas;
        start = { x, y, button: e.button, shift: e.shiftKey };
      });
      element.addEventListener("pointermove", (e) => {
        if (!start || this.mode !== "prompt" || start.button !== 0) return;
        const [x, y] = this.views!.pickClient(id, e.clientX, e.clientY).canvas;
        if (Math.hypot(x - start.x, y - start.y) > 6) {
          this.views!.overlay.drag = { id, x0: start.x, y0: start.y, x1: x, y1: y, colour: this.activeLabel?.color ?? "#ff0" };
          this.drawOverlay(id);
        }
      });
      const finish = (e: PointerEvent) => {
        if (!start) return;
        const s = start;
        start = null;
        const pick = this.views!.pickClient(id, e.clientX, e.clientY);
        const [x, y] = pick.canvas;
        const drag = this.views!.overlay.drag;
        this.views!.overlay.drag = null;
        this.drawOverlay(id);
        if (this.mode === "navigate") {
          this.jumpTo(pick.world, id);
          return;
        }
        if (drag && s.button === 0) this.boxPrompt(id, s.x, s.y, x, y);
        else this.pointPrompt(id, x, y, !(s.button === 2 || s.shift));
      };
      element.addEventListener("pointerup", finish);
      element.addEventListener("pointerleave", () => {
        if (this.views?.overlay.drag?.id === id) {
          this.views.overlay.drag = null;
          this.drawOverlay(id);
        }
        start = null;
      });
    }
  }

  /** MIP double-click: the hottest voxel along the viewing ray through the clicked point. */
  private jumpToMipPeak(clientX: number, clientY: number): void {
    const { world } = this.views!.pickClient(MIP, clientX, clientY);
    const normal = this.viewport(MIP).getCamera().viewPlaneNormal as Vec3;
    let best = -Infinity;
    let bestWorld: Vec3 | null = null;
    const step = Math.min(...this.petSeries.spacing) / 2;
    const reach = Math.max(...this.pet.shape) * Math.max(...this.petSeries.spacing);
    for (let t = -reach; t <= reach; t += step) {
      const p: Vec3 = [world[0] + t * normal[0], world[1] + t * normal[1], world[2] + t * normal[2]];
      const v = this.voxelOf(worldToContinuousIndex(this.inverseAffine, p));
      if (!v) continue;
      const value = this.suvAt(v);
      if (value > best) { best = value; bestWorld = voxelToWorld(this.petSeries.affine, v); }
    }
    if (bestWorld) {
      this.jumpTo(bestWorld);
      studio.mipPeak = { world: bestWorld, value: best };
    }
  }

  // ------------------------------------------------------------------ prompts

  private pointPrompt(id: string, x: number, y: number, positive: boolean): void {
    const { world, voxel } = this.views!.pickCanvas(id, [x, y]);
    const v = voxel as Index3 | null;
    studio.lastClick = { viewport: id, canvas: [x, y], world, voxel };
    if (!v) return toast("That point is outside the scan.", "warn");
    // The prompt leaves first. The other views move to the click only once the mask is on screen:
    // re-slicing them now would keep the (software-rendered) main thread busy while the mask arrives.
    this.deferredJump = { world, except: id };
    this.sendPrompt({ point: { index: v, positive } });
  }

  private boxPrompt(id: string, x0: number, y0: number, x1: number, y1: number): void {
    const a = this.views!.pickCanvas(id, [x0, y0]).index;
    const b = this.views!.pickCanvas(id, [x1, y1]).index;
    const normal = this.viewport(id).getCamera().viewPlaneNormal as Vec3;
    // The through-plane axis of our [slice,row,col] index: the one the view normal moves most.
    const step = worldToContinuousIndex(this.inverseAffine, [normal[0], normal[1], normal[2]]);
    const zero = worldToContinuousIndex(this.inverseAffine, [0, 0, 0]);
    const dir = step.map((s, i) => Math.abs(s - zero[i]));
    const through = dir.indexOf(Math.max(...dir));
    const lo: Index3 = [0, 0, 0];
    const hi: Index3 = [0, 0, 0];
    const spacing = this.petSeries.spacing;
    const inPlaneMm: number[] = [];
    for (let i = 0; i < 3; i++) {
      if (i === through) continue;
      lo[i] = Math.max(0, Math.floor(Math.min(a[i], b[i]) + 0.5));
      hi[i] = Math.min(this.pet.shape[i], Math.ceil(Math.max(a[i], b[i]) + 0.5));
      inPlaneMm.push((hi[i] - lo[i]) * spacing[i]);
    }
    // A 2D drag gives a 3D box: the through-plane depth is the mean in-plane extent, centred on the current slice.
    const centre = Math.round((a[through] + b[through]) / 2);
    const half = Math.max(1, Math.round((inPlaneMm[0] + inPlaneMm[1]) / 4 / spacing[through]));
    lo[through] = Math.max(0, centre - half);
    hi[through] = Math.min(this.pet.shape[through], centre + half + 1);
    if (lo.some((x, i) => x >= hi[i])) return toast("That box is outside the scan.", "warn");
    this.sendPrompt({ box: [lo, hi] });
  }

  private deferredJump: { world: Vec3; except: string } | null = null;

  private runDeferredJump(): void {
    const jump = this.deferredJump;
    this.deferredJump = null;
    if (jump) this.jumpTo(jump.world, jump.except);
  }

  private sendPrompt(prompt: Parameters<ScanSocket["prompt"]>[1]): void {
    if (!this.activeLabel) return toast("Choose a label first.", "warn");
    if (!this.socket || this.socket.state !== "open") return toast(ERROR_TEXT.not_connected, "warn");
    studio.promptSentAt = performance.now();
    const label = this.activeLabel.id;
    const session = this.sessions.get(label);
    if (session === undefined) {
      this.queuedPrompts.push({ label, prompt });
      this.openSession(label);
    } else {
      this.socket.prompt(session, prompt);
    }
    this.updatePending();
  }

  private openSession(label: number): void {
    if (this.openingLabel === label) return;
    this.openingLabel = label;
    this.socket!.openSession(label, {
      ...(this.annotation ? { annotation: this.annotation.id } : {}),
      ...(this.engineName ? { engine: this.engineName } : {}),
    });
  }

  /** Undo / redo one step of the edit history (prompt, brush or eraser stroke), newest first. */
  private step(kind: "undo" | "redo"): void {
    const data = this.labelmapArray();
    const step = kind === "undo" ? this.history.undo(data) : this.history.redo(data);
    if (!step) return toast(`Nothing to ${kind}.`, "warn");
    this.labelmapVolume.voxelManager!.setCompleteScalarDataArray!(data);
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segId);
    this.engine?.renderViewports([...VIEWPORTS]);
    // The server keeps the prompts; its prompt history follows, and its mask for that step is not needed.
    if (step.kind === "prompt" && step.session !== undefined && this.socket) this.suppressed.add(this.socket.command(kind, step.session));
    const label = this.labels.find((l) => l.value === step.value);
    // What is on screen is what Accept saves from now on.
    if (label) this.edited.add(label.id);
    this.dirty.add(step.value);
    studio.historyKinds = this.history.kinds;
    studio.lastStep = { action: kind, kind: step.kind };
    this.updatePending();
    this.scheduleStats();
  }

  private command(kind: "undo" | "redo" | "reset" | "accept"): void {
    if (this.options.review || !this.activeLabel || !this.socket) return;
    if (kind === "undo" || kind === "redo") return this.step(kind);
    const session = this.sessions.get(this.activeLabel.id);
    if (session === undefined) return toast("Nothing to " + kind + " yet for this label.", "warn");
    if (kind === "reset" && !confirm(`Reset all prompts of ${this.activeLabel.name}?`)) return;
    if (kind === "accept" && this.edited.has(this.activeLabel.id)) {
      const { bbox, bits } = cropMask(this.labelmapOurs(), this.pet.shape, this.activeLabel.value);
      void this.socket.acceptMask(session, bbox, bits).then(() => this.updatePending()).catch((e) => toast(e.message, "error"));
      return;
    }
    this.socket.command(kind, session);
    if (kind === "reset") this.history.forget(this.activeLabel.value);
    this.updatePending();
  }

  private updatePending(): void {
    const n = (this.socket?.pendingPrompts ?? 0) + this.queuedPrompts.length;
    studio.pendingPrompts = n;
    this.$("spinner").hidden = n === 0;
  }

  // ------------------------------------------------------------------ socket

  private connect(): void {
    const socket = new ScanSocket(scanSocketUrl(location, this.scan.id));
    this.socket = socket;
    studio.socket = socket;
    const conn = this.$("conn");
    this.disposers.push(socket.onState((state) => {
      conn.textContent = state === "open" ? "live" : state === "reconnecting" ? "reconnecting…" : state;
      conn.className = `conn ${state}`;
      studio.connection = state;
      if (state === "open") {
        // sessions are re-opened (resumed) lazily on the next prompt after a reconnect
        this.sessions.clear();
        this.sessionLabels.clear();
        this.openingLabel = null;
        if (this.activeLabel) socket.activity(`segmenting ${this.activeLabel.name}`);
      }
      this.updatePending();
    }));
    socket.on("hello", (m) => {
      const first = !this.me;
      this.me = String(m.user ?? "");
      // Needs to know who we are (the server says it in hello) to find the reader's own annotation.
      if (first) void this.loadOthersAccepted();
      studio.user = this.me;
    });
    socket.on("session.opened", (m) => {
      const label = Number(m.label);
      const session = m.session as number | string;
      this.sessions.set(label, session);
      this.sessionLabels.set(String(session), label);
      if (this.openingLabel === label) this.openingLabel = null;
      const queued = this.queuedPrompts.filter((q) => q.label === label);
      this.queuedPrompts = this.queuedPrompts.filter((q) => q.label !== label);
      for (const q of queued) socket.prompt(session, q.prompt);
      this.renderSegments();
      this.updatePending();
    });
    socket.onMask((mask) => this.onMask(mask));
    socket.on("queued", (m) => {
      this.$("spinner").title = `queued: ${m.position} ahead, ~${Math.round(Number(m.expected_wait_ms ?? 0) / 1000)} s`;
    });
    socket.on("superseded", () => this.updatePending());
    socket.on("accepted", (m) => {
      const label = this.labels.find((l) => l.id === Number(m.label));
      toast(`Saved ${label?.name ?? "mask"} as version ${m.number ?? m.version}.`, "ok");
      if (label) {
        this.edited.delete(label.id);
        this.dirty.delete(label.value);
        this.history.forget(label.value);
      }
      studio.lastAccepted = m;
      // Show what is now saved in the "accepted" layer: the working layer of this label is reused for the
      // next object, and the saved one would otherwise vanish from the reader's own view.
      void this.showAcceptedMask(Number(m.annotation)).catch((e) => console.warn("could not show the saved mask", e));
      void this.refreshMine(Number(m.annotation));
      this.updatePending();
      this.renderSegments();
    });
    socket.on("mask.accepted", (m) => {
      if (String(m.user) === this.me) return;
      toast(`${m.user} accepted a ${this.labels.find((l) => l.id === Number(m.label))?.name ?? "mask"}.`, "info");
      void this.showAcceptedMask(Number(m.annotation));
    });
    socket.on("presence", (m) => this.renderPresence(m));
    socket.on("progress", (m) => {
      const text = `${m.task}: ${Math.round(Number(m.fraction) * 100)}% ${m.message ?? ""}`;
      toast(m.error ? `${m.task} failed: ${m.error}` : text, m.error ? "error" : "info");
    });
    socket.on("notification", (m) => toast(`${m.by} ${String(m.event).replace("_", " ")} annotation ${m.annotation} (${m.state}).`, "info"));
    socket.on("error", (m) => {
      const text = ERROR_TEXT[String(m.code)] ?? "Something went wrong.";
      toast(`${text}${m.detail ? ` (${m.detail})` : ""}`, "error");
      if (m.code === "not_found" && m.session !== undefined) {
        const label = this.sessionLabels.get(String(m.session));
        if (label !== undefined) this.sessions.delete(label);
      }
      if (this.openingLabel !== null && m.seq === undefined) {
        this.queuedPrompts = this.queuedPrompts.filter((q) => q.label !== this.openingLabel);
        this.openingLabel = null;
      }
      studio.lastError = m;
      this.runDeferredJump();
      this.updatePending();
    });
    socket.on("client.lost", () => toast("The connection dropped; prompts in flight were lost. Reconnecting…", "warn"));
    socket.on("client.fatal", (m) => {
      toast(m.code === 4401 ? "You are signed out. Sign in again." : "This scan is not available to you.", "error");
      if (m.code === 4401) location.href = `/accounts/login/?next=${encodeURIComponent("/" + location.hash)}`;
    });
    socket.connect();
  }

  private onMask(mask: DecodedMask): void {
    const label = this.sessionLabels.get(String(mask.header.session));
    const target = this.labels.find((l) => l.id === label) ?? this.activeLabel;
    this.updatePending();
    if (!target) return;
    if (mask.checksumOk === false) toast("A mask arrived damaged (checksum mismatch); ignoring it.", "error");
    if (mask.checksumOk === false) return;
    const promptAt = studio.promptSentAt as number | undefined;
    const t0 = performance.now();
    if (this.suppressed.delete(mask.header.seq)) return; // the server's side of a local undo / redo
    const data = this.labelmapArray();
    const before = (data as unknown as Uint8Array).slice();
    const t1 = performance.now();
    const [dx, dy] = this.labelmapVolume.dimensions;
    const touched = { frameSize: dx * dy, frames: new Set<number>() };
    const written = applyMask({ data, map: this.map, shape: this.pet.shape }, mask, target.value, false, touched);
    const frameSize = dx * dy;
    this.history.push(diffStep("prompt", target.value, before, data, mask.header.session,
      [...touched.frames].map((k) => [k * frameSize, (k + 1) * frameSize] as [number, number])));
    studio.historyKinds = this.history.kinds;
    const t2 = performance.now();
    // Write back, and re-upload to the GPU, only the slices the mask changed (not the whole volume).
    const frames = this.writeFrames(this.labelmapVolume, data, touched.frames);
    const t3 = performance.now();
    if (frames.length) segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segId, frames);
    this.edited.delete(target.id);
    this.dirty.add(target.value);
    studio.lastMaskVoxels = written;
    studio.lastMask = { ...mask.header, written };
    this.engine?.renderViewports([...VIEWPORTS]);
    const t4 = performance.now();
    // Statistics follow (debounced) from the SEGMENTATION_DATA_MODIFIED event; they are not on the path to the screen.
    this.scheduleStats();
    // Timing hook for tests and the benchmark: two frames after the render was requested the mask is on screen.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const now = performance.now();
      studio.maskDrawnAt = now;
      studio.lastClickToMaskMs = promptAt === undefined ? null : now - promptAt;
      this.runDeferredJump();
      studio.lastMaskProfile = {
        untilDecoded: promptAt === undefined ? null : t0 - promptAt, read: t1 - t0, apply: t2 - t1, write: t3 - t2,
        event: t4 - t3, frames: now - t4,
      };
      studio.masksDrawn = ((studio.masksDrawn as number | undefined) ?? 0) + 1;
    }));
  }

  /**
   * Copy the given frames (k slices of Cornerstone's index order) of a full scalar array into the
   * labelmap's per-slice images; falls back to writing the complete array. Returns the frames written.
   */
  private writeFrames(volume: Types.IImageVolume, data: ArrayLike<number>, frames: Set<number>): number[] {
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

  // ------------------------------------------------------------------ hooks for tests and the benchmark (window.__studio.viewer)

  /** Centre the three orthogonal views on a voxel [slice,row,col]. */
  goToVoxel(index: Vec3): void {
    this.jumpTo(voxelToWorld(this.petSeries.affine, index));
  }

  /** Where a voxel [slice,row,col] lies on a viewport's canvas (CSS pixels from its top left). */
  voxelToCanvas(id: string, index: Vec3): [number, number] {
    return this.views!.worldToCanvas(id, voxelToWorld(this.petSeries.affine, index));
  }

  /** Page point (client px) of a world point on a viewport, by the app's own transform. */
  worldToClient(id: string, world: Vec3): [number, number] {
    return this.views!.worldToClient(id, world);
  }

  /** What a click at a page point would hit: canvas point, world, voxel. */
  pickClient(id: string, clientX: number, clientY: number) {
    return this.views!.pickClient(id, clientX, clientY);
  }

  /** Every canvas's CSS box and drawing buffer. */
  canvasReport() {
    return this.views!.canvasReport();
  }

  /** PET value of a voxel [slice,row,col] in the displayed units. */
  valueAt(index: Vec3): number {
    return this.suvAt(index);
  }

  /** Voxels [slice,row,col] of the working labelmap that carry a label value. */
  labelVoxels(value: number): Vec3[] {
    const data = this.labelmapArray();
    const [ns, nr, nc] = this.pet.shape;
    const out: Vec3[] = [];
    for (let s = 0; s < ns; s++) for (let r = 0; r < nr; r++) for (let c = 0; c < nc; c++) {
      if (data[this.map.offset(s, r, c)] === value) out.push([s, r, c]);
    }
    return out;
  }

  private renderPresence(m: ServerMessage): void {
    const ul = this.$("presence");
    const users = (m.users as { user: string; activity: string; since: string }[]) ?? [];
    ul.innerHTML = "";
    for (const u of users) ul.append(el("li", {}, el("b", {}, u.user), u.activity ? ` — ${u.activity}` : ""));
    studio.presence = users;
  }

  // ------------------------------------------------------------------ accepted masks of others, review

  private async loadOthersAccepted(): Promise<void> {
    if (this.options.review) return;
    let annotations: Annotation[] = [];
    try {
      annotations = await list<Annotation>(`${projectPath(this.project.id)}/annotations/?scan=${this.scan.id}`);
    } catch (e) {
      toast(`Your saved work could not be loaded: ${(e as Error).message}`, "error");
    }
    this.annotation = annotations.find((a) => a.annotator === this.me && !a.is_consensus) ?? null;
    // The reader's own saved objects: drawn in the "accepted" layer and listed in the table.
    if (this.annotation?.current_version) {
      await this.showAcceptedMask(this.annotation.id);
      await this.loadSavedRows(this.annotation.id);
    }
    await this.renderMine();
  }

  private reviewHost(): ReviewHost {
    return {
      project: this.project,
      labels: this.labels,
      jumpToVoxel: (v) => this.goToVoxel(v),
      setMarkers: (markers) => {
        if (!this.views) return;
        this.views.overlay.markers = markers.map((m) => ({ ...m, world: voxelToWorld(this.petSeries.affine, m.world) }));
        this.views.drawOverlays();
        studio.markers = markers;
      },
      crosshairVoxel: () => (this.crosshair ? this.voxelOf(worldToContinuousIndex(this.inverseAffine, this.crosshair)) : null),
      onSavedObjects: (rows) => {
        this.savedRows = rows;
        this.renderSegments();
      },
    };
  }

  /** The annotator's submit / comments panel. */
  private async renderMine(): Promise<void> {
    const box = this.$("my-review");
    if (!box) return;
    const canAnnotate = (this.project.my_roles ?? []).some((r) => r === "annotator" || r === "manager");
    this.$("my-review-box").hidden = !canAnnotate;
    if (!canAnnotate) return;
    try {
      await annotatorPanel(box, this.reviewHost(), this.annotation, (fresh) => { this.annotation = fresh; });
    } catch (e) {
      box.innerHTML = "";
      box.append(el("p", { class: "error" }, `The review status could not be loaded: ${(e as Error).message}`));
    }
  }

  /** After a save: the annotation (state, version), its saved objects and the panel. */
  private async refreshMine(annotationId: number): Promise<void> {
    try {
      this.annotation = await api<Annotation>(`${projectPath(this.project.id)}/annotations/${annotationId}/`);
      await this.loadSavedRows(annotationId);
      await this.renderMine();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  /** Fetch an annotation's mask (object ids) and draw it into the "accepted" overlay, each object in its label's colour. */
  async showAcceptedMask(annotationId: number, version?: number): Promise<number> {
    const base = `${projectPath(this.project.id)}/annotations/${annotationId}`;
    const [versions, mask] = await Promise.all([
      api<Version[]>(`${base}/versions/`),
      loadNifti(`${base}/mask/${version ? `?version=${version}` : ""}`),
    ]);
    const current = version ? versions.find((v) => v.number === version) : versions.reduce((a, b) => (a.number > b.number ? a : b), versions[0]);
    const colourOf = new Map<number, string>();
    for (const seg of current?.segments ?? []) {
      const label = this.labels.find((l) => l.id === seg.label);
      if (label) colourOf.set(seg.id, label.color);
    }
    // Object ids are the segment indices (so each object can be shown or hidden), coloured by label.
    for (const id of VIEWPORTS) {
      for (const [objectId, colour] of colourOf) {
        if (objectId < 256) segmentation.config.color.setSegmentIndexColor(id, this.acceptedSegId, objectId, hexToRgba(colour, 110));
      }
    }
    const data = this.labelmapArray(this.acceptedVolume!);
    for (let i = 0; i < data.length; i++) data[i] = 0;
    const [ns, nr, nc] = this.pet.shape;
    let n = 0;
    for (let s = 0, i = 0; s < ns; s++) for (let r = 0; r < nr; r++) for (let c = 0; c < nc; c++, i++) {
      const o = mask.data[i];
      if (!o) continue;
      data[this.map.offset(s, r, c)] = Math.min(255, o);
      n++;
    }
    this.acceptedVolume!.voxelManager!.setCompleteScalarDataArray!(data);
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.acceptedSegId);
    this.engine?.renderViewports([...VIEWPORTS]);
    studio.acceptedOverlayVoxels = n;
    studio.acceptedOverlayAnnotation = annotationId;
    return n;
  }

  /** Review mode: read-only, the reviewed annotation's objects, comments and the decision. */
  private async setupReview(annotation: Annotation): Promise<void> {
    this.$("review-box").hidden = false;
    this.setMode("navigate");
    await this.showAcceptedMask(annotation.id);
    try {
      await reviewerPanel(this.$("review"), this.reviewHost(), annotation, async (n) => { await this.showAcceptedMask(annotation.id, n); });
    } catch (e) {
      this.$("review").append(el("p", { class: "error" }, (e as Error).message));
    }
  }

  // ------------------------------------------------------------------ keys

  private bindKeys(): void {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
      const key = e.key;
      const ctrl = e.ctrlKey || e.metaKey;
      if (ctrl && key.toLowerCase() === "z") { e.preventDefault(); this.command(e.shiftKey ? "redo" : "undo"); return; }
      if (ctrl && key.toLowerCase() === "y") { e.preventDefault(); this.command("redo"); return; }
      if (ctrl) return;
      if (/^[1-9]$/.test(key)) {
        const label = this.labels[Number(key) - 1];
        if (label) this.selectLabel(label);
        return;
      }
      switch (key) {
        case "p": case "P": this.setMode("prompt"); break;
        case "b": case "B": this.setMode("brush"); break;
        case "e": case "E": this.setMode("eraser"); break;
        case "n": case "N": this.setMode("navigate"); break;
        case "r": case "R": this.command("reset"); break;
        case "Enter": this.command("accept"); break;
        case "w": case "W": this.display.nextSuvPreset(); break;
        case "c": case "C": this.display.nextColormap(); break;
        case "f": case "F": this.display.toggleFusion(); break;
        case "v": case "V": if (this.activeLabel) this.toggleVisibility(this.activeLabel.value); break;
        case "[": case "]":
          this.brushSize = Math.max(1, Math.min(50, this.brushSize + (key === "]" ? 2 : -2)));
          segmentationBrushSize(this.toolGroupId, this.brushSize);
          toast(`Brush size ${this.brushSize} mm`, "info");
          break;
        case "?": this.toggleHelp(); break;
        case "Escape": this.toggleHelp(false); break;
        case "ArrowUp": case "ArrowDown": this.scrollActive(key === "ArrowUp" ? 1 : -1); e.preventDefault(); break;
        default: return;
      }
    };
    window.addEventListener("keydown", onKey);
    this.disposers.push(() => window.removeEventListener("keydown", onKey));
  }

  private scrollActive(delta: number): void {
    const hovered = this.root.querySelector(".vp:hover") as HTMLElement | null;
    const id = hovered?.dataset.viewport ?? "axial";
    if (id === MIP) return;
    const vp = this.viewport(id);
    utilities.scroll(vp as never, { delta });
  }

  dispose(): void {
    for (const d of this.disposers.splice(0)) d();
    this.socket?.close();
    try { ToolGroupManager.destroyToolGroup(this.toolGroupId); } catch { /* */ }
    try { ToolGroupManager.destroyToolGroup(this.mipGroupId); } catch { /* */ }
    try { segmentation.removeSegmentation(this.segId); segmentation.removeSegmentation(this.acceptedSegId); } catch { /* */ }
    this.views?.dispose();
    this.views = null;
    releaseAll();
    studio.ready = false;
    studio.viewer = undefined;
  }
}

function segmentationBrushSize(toolGroupId: string, size: number): void {
  toolUtilities.segmentation.setBrushSizeForToolGroup(toolGroupId, size);
}


/** The reading-room viewer: PET (+CT fusion) in three orthogonal views and a coronal MIP, prompts over the scan WebSocket, labelmap editing. */
import {
  eventTarget,
  utilities,
  volumeLoader,
  type Types,
} from "@cornerstonejs/core";
import { Enums as ToolEnums } from "@cornerstonejs/tools";
import { api, list, projectPath, type Annotation, type Label, type ObjectStats, type Project, type Scan, type Series, type Version } from "./api";
import { Display } from "./display";
import { Tools, type Mode } from "./tools";
import { actionFor, type Action } from "./keys";
import { Layers } from "./layers";
import { bindPointer, boxFromDrag, hottestAlongRay } from "./pointer";
import { segmentRows } from "./objects";
import { buildEngineChoice, renderLabelButtons, renderPresence, renderSegmentTable, viewerHtml } from "./panels";
import { SavedWork, type SavedWorkHost } from "./review";
import { createVolume, initCornerstone, registerVolumeImages, releaseAll } from "./cornerstone";
import { IndexMap, invert4, voxelToWorld, voxelVolumeMl, worldToContinuousIndex, type Mat4, type Vec3 } from "./geometry";
import { segmentStatistics, type SegmentStats } from "./mask";
import { loadNifti, type NiftiVolume } from "./nifti";
import { cropMask, type DecodedMask, type Index3, type ServerMessage } from "./protocol";
import { PromptSessions, type Prompt } from "./prompt-session";
import { el, escapeHtml, studio, toast } from "./ui";
import { voxelOf } from "./registration";
import { formatReading, objectInUnit, segmentInUnit, suvTypes, toDisplay } from "./units";
import { MIP, VIEWPORTS, Viewports } from "./viewports";

export class Viewer {
  private views: Viewports | null = null;
  private get engine() {
    return this.views?.engine ?? null;
  }
  private link: PromptSessions | null = null;
  private pet!: NiftiVolume;
  private petSeries!: Series;
  private inverseAffine!: Mat4;
  private map!: IndexMap;
  private layers!: Layers;
  private scanKey: string;
  private petVolumeId: string;
  private ctVolumeId: string | null = null;
  private tools: Tools;
  private labels: Label[] = [];
  private activeLabel: Label | null = null;
  private edited = new Set<number>(); // label ids edited by brush since their last server mask
  private hidden = new Set<number>();
  private mode: Mode = "prompt";
  private display!: Display;
  private crosshair: Vec3 | null = null;
  private stats = new Map<number, SegmentStats>();
  private saved!: SavedWork;
  private disposers: (() => void)[] = [];
  private statsTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private root: HTMLElement,
    private project: Project,
    private scan: Scan,
    private options: { review?: Annotation } = {},
  ) {
    this.scanKey = `s${scan.id}-${Date.now().toString(36)}`;
    this.petVolumeId = `cornerstoneStreamingImageVolume:pet-${this.scanKey}`;
    this.tools = new Tools(`tg-${this.scanKey}`, `tgmip-${this.scanKey}`);
  }

  // ------------------------------------------------------------------ layout

  private layout(): void {
    this.root.innerHTML = viewerHtml(this.project, this.scan, Boolean(this.options.review));
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
    this.saved = new SavedWork(this.root, this.savedWorkHost());
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
    const hasCt = this.scan.series.some((s) => s.modality === "CT");
    const base = `${projectPath(this.project.id)}/scans/${this.scan.id}`;
    const [labels, me] = await Promise.all([
      list<Label>(`${projectPath(this.project.id)}/labels/`),
      api<{ username?: string }>("/api/projects/" + this.project.id + "/members/?page_size=1").catch(() => ({})),
    ]);
    void me;
    this.labels = labels.sort((a, b) => a.value - b.value);
    this.activeLabel = this.labels.find((l) => !l.archived) ?? null;
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
    this.layers = new Layers(
      volumeLoader.createAndCacheDerivedLabelmapVolume(this.petVolumeId, { volumeId: `lm-${this.scanKey}` }),
      volumeLoader.createAndCacheDerivedLabelmapVolume(this.petVolumeId, { volumeId: `acc-lm-${this.scanKey}` }),
      `seg-${this.scanKey}`, `acc-${this.scanKey}`, this.map, this.pet.shape);

    phases.volumesCreated = performance.now() - opened;
    await this.setupViewports();
    phases.viewportsSet = performance.now() - opened;
    this.setupSegmentation();
    this.setupTools();
    this.bindPointer();
    if (!this.options.review) this.bindStrokes();
    this.bindKeys();
    this.display = new Display(this.root, () => this.engine, this.petVolumeId, this.ctVolumeId, this.petSeries, this.pet.data, suvTypes(pet));
    this.display.onUnitChange(() => {
      this.renderSegments();
      if (this.lastCursor) this.showCursor(this.lastCursor);
    });
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
    if (this.options.review) void this.saved.review(this.options.review);
  }

  private async setupViewports(): Promise<void> {
    this.views = new Viewports(this.root, `re-${this.scanKey}`, this.inverseAffine, this.pet.shape);
    const [ns, nr, nc] = this.pet.shape;
    const extent = Math.max(ns, nr, nc) * Math.max(...this.petSeries.spacing) * 2;
    await this.views.setup(this.petVolumeId, this.ctVolumeId, extent);
  }

  private setupSegmentation(): void {
    this.layers.setup(this.labels);
    if (this.activeLabel) this.layers.setActiveValue(this.activeLabel.value);
    const onModified = (evt: Event) => {
      const detail = (evt as CustomEvent).detail as { segmentationId?: string };
      if (detail?.segmentationId !== this.layers.workingId) return;
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
    this.tools.setup(this.engine!.id);
    this.setMode("prompt");
  }

  private setMode(mode: Mode): void {
    if (this.options.review) mode = "navigate"; // the review screen is read-only
    this.mode = mode;
    this.tools.setMode(mode);
    this.root.querySelectorAll<HTMLButtonElement>("#modes button").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
    this.root.querySelector(".grid")?.setAttribute("data-mode", mode);
    this.link?.activity(mode === "prompt" || mode === "brush" || mode === "eraser" ? `segmenting ${this.activeLabel?.name ?? ""}`.trim() : "reading");
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
    this.engineName = await buildEngineChoice(this.$("engine") as HTMLSelectElement, this.project, (name) => {
      this.engineName = name;
      // The next prompt of each label opens its session again with the chosen engine.
      this.link?.forgetSessions();
    });
  }
  private engineName: string | null = null;
  /** Brush and eraser strokes become history steps: the labelmap before the stroke against after it. */
  private bindStrokes(): void {
    for (const id of VIEWPORTS) {
      this.$(`vp-${id}`).addEventListener("pointerdown", (e) => {
        if ((this.mode !== "brush" && this.mode !== "eraser") || e.button !== 0 || !this.activeLabel) return;
        if (e.ctrlKey || e.altKey || e.metaKey) return; // zoom, window/level
        this.layers.beginStroke(this.mode, this.activeLabel.value);
      }, { capture: true });
    }
  }

  private renderLabels(): void {
    renderLabelButtons(this.$("labels"), this.labels, this.activeLabel?.id ?? null, (label) => this.selectLabel(label));
  }

  private selectLabel(label: Label): void {
    this.activeLabel = label;
    this.layers.setActiveValue(label.value);
    this.renderLabels();
    this.link?.activity(`segmenting ${label.name}`);
  }

  /** Saved objects of the reader's (or the reviewed) annotation, one row each, and live rows for unsaved work. */
  private savedRows: ObjectStats[] = [];
  private dirty = new Set<number>(); // label values with unsaved working-layer changes
  private hiddenObjects = new Set<number>();

  private renderSegments(): void {
    const [, nr, nc] = this.pet.shape;
    const live = new Map([...this.stats].filter(([value]) => this.dirty.has(value)).map(([value, st]) =>
      [value, { ...st, target: [Math.floor(st.maxAt / (nr * nc)), Math.floor(st.maxAt / nc) % nr, st.maxAt % nc] as [number, number, number] }]));
    // SUV values follow the reader's unit; volumes do not depend on it.
    const unit = this.display?.unit ?? null;
    const saved = unit ? this.savedRows.map((o) => objectInUnit(o, unit)) : this.savedRows;
    const shown = unit ? new Map([...live].map(([value, st]) => [value, segmentInUnit(st, unit)])) : live;
    const rows = segmentRows(saved, shown, this.labels, this.edited);
    renderSegmentTable(this.$("segments"), this.$("totals"), rows, this.labels, unit?.name ?? (this.petSeries.units || "raw"), {
      isHidden: (row) => (row.live ? this.hidden.has(row.labelValue ?? -1) : this.hiddenObjects.has(row.objectId ?? -1)),
      toggle: (row) => (row.live ? this.toggleVisibility(row.labelValue!) : this.toggleObject(row.objectId!)),
      discard: this.options.review ? undefined : (row) => {
        const label = this.labels.find((l) => l.id === row.labelId);
        if (label) this.discardWorking(label);
      },
      jump: (target) => this.goToVoxel(target),
    }, this.options.review ? "No segments." : "No segments yet: click in the image.");
  }

  private toggleObject(objectId: number): void {
    const visible = this.hiddenObjects.has(objectId);
    if (visible) this.hiddenObjects.delete(objectId);
    else this.hiddenObjects.add(objectId);
    this.layers.setVisible("saved", objectId, visible);
    this.renderSegments();
    this.engine?.renderViewports([...VIEWPORTS]);
  }

  /** Throw away a label's unsaved working mask (its prompts are reset on the server too). */
  private discardWorking(label: Label): void {
    this.link?.command("reset", label.id);
    this.layers.clearValue(label.value);
    this.dirty.delete(label.value);
    this.edited.delete(label.id);
    this.engine?.renderViewports([...VIEWPORTS]);
    this.scheduleStats();
  }

  private toggleVisibility(value: number): void {
    const visible = this.hidden.has(value);
    if (visible) this.hidden.delete(value);
    else this.hidden.add(value);
    this.layers.setVisible("working", value, visible);
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

  private computeStats(): void {
    const ours = this.layers.ours();
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
      this.lastCursor = null;
      cursor.textContent = id === MIP ? "MIP (projection; double-click jumps to the hottest voxel)" : "outside the scan";
      studio.cursor = null;
      return;
    }
    this.showCursor({ id, voxel: voxel as Vec3, world: world as Vec3 });
  }

  private lastCursor: { id: string; voxel: Vec3; world: Vec3 } | null = null;

  /** The value under the cursor in the chosen SUV unit (stored voxel value × its multiplier). */
  private showCursor(at: { id: string; voxel: Vec3; world: Vec3 }): void {
    this.lastCursor = at;
    const { id, voxel, world } = at;
    const stored = this.suvAt(voxel);
    const unit = this.display?.unit ?? null;
    const value = unit ? toDisplay(stored, unit) : stored;
    this.$("cursor").innerHTML = `<b>${escapeHtml(formatReading(stored, unit, this.petSeries.units || "raw"))}</b><br>voxel [${voxel.join(", ")}]<br>${world.map((x) => x.toFixed(1)).join(", ")} mm (LPS)`;
    studio.cursor = { voxel, value, stored, unit: unit?.name ?? (this.petSeries.units || "raw"), viewport: id };
  }

  private bindPointer(): void {
    bindPointer(this.root, this.views!, {
      mode: () => this.mode,
      dragColour: () => this.activeLabel?.color ?? "#ff0",
      navigate: (id, world) => this.jumpTo(world, id),
      point: (id, x, y, positive) => this.pointPrompt(id, x, y, positive),
      box: (id, x0, y0, x1, y1) => {
        const a = this.views!.pickCanvas(id, [x0, y0]).index;
        const b = this.views!.pickCanvas(id, [x1, y1]).index;
        const normal = this.viewport(id).getCamera().viewPlaneNormal as Vec3;
        const box = boxFromDrag(a, b, normal, this.inverseAffine, this.pet.shape, this.petSeries.spacing);
        if (!box) return toast("That box is outside the scan.", "warn");
        this.sendPrompt({ box: box as [Index3, Index3] });
      },
      cursor: (id, x, y) => this.readCursor(id, x, y),
      mipDoubleClick: (x, y) => {
        const { world } = this.views!.pickClient(MIP, x, y);
        const normal = this.viewport(MIP).getCamera().viewPlaneNormal as Vec3;
        const peak = hottestAlongRay(world, normal, this.petSeries.affine, this.inverseAffine, this.pet.shape, this.petSeries.spacing, (v) => this.suvAt(v));
        if (!peak) return;
        this.jumpTo(peak.world);
        studio.mipPeak = peak;
      },
    });
  }

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

  private deferredJump: { world: Vec3; except: string } | null = null;

  private runDeferredJump(): void {
    const jump = this.deferredJump;
    this.deferredJump = null;
    if (jump) this.jumpTo(jump.world, jump.except);
  }

  private sendPrompt(prompt: Prompt): void {
    if (!this.activeLabel) return toast("Choose a label first.", "warn");
    if (!this.link) return;
    studio.promptSentAt = performance.now();
    this.link.prompt(this.activeLabel.id, prompt);
  }

  /** Undo / redo one step of the edit history (prompt, brush or eraser stroke), newest first. */
  private step(kind: "undo" | "redo"): void {
    const step = this.layers.step(kind);
    if (!step) return toast(`Nothing to ${kind}.`, "warn");
    this.engine?.renderViewports([...VIEWPORTS]);
    // The server keeps the prompts; its prompt history follows, and its mask for that step is not needed.
    if (step.kind === "prompt" && step.session !== undefined) this.link?.followStep(kind, step.session);
    const label = this.labels.find((l) => l.value === step.value);
    // What is on screen is what Accept saves from now on.
    if (label) this.edited.add(label.id);
    this.dirty.add(step.value);
    studio.lastStep = { action: kind, kind: step.kind };
    this.updatePending();
    this.scheduleStats();
  }

  private command(kind: "undo" | "redo" | "reset" | "accept"): void {
    const link = this.link;
    if (this.options.review || !this.activeLabel || !link) return;
    if (kind === "undo" || kind === "redo") return this.step(kind);
    if (!link.hasSession(this.activeLabel.id)) return toast("Nothing to " + kind + " yet for this label.", "warn");
    if (kind === "reset" && !confirm(`Reset all prompts of ${this.activeLabel.name}?`)) return;
    if (kind === "accept" && this.edited.has(this.activeLabel.id)) {
      const { bbox, bits } = cropMask(this.layers.ours(), this.pet.shape, this.activeLabel.value);
      void link.acceptMask(this.activeLabel.id, bbox, bits)?.then(() => this.updatePending()).catch((e) => toast(e.message, "error"));
      return;
    }
    link.command(kind, this.activeLabel.id);
    if (kind === "reset") this.layers.history.forget(this.activeLabel.value);
    this.updatePending();
  }

  private updatePending(): void {
    const n = this.link?.pending ?? 0;
    studio.pendingPrompts = n;
    this.$("spinner").hidden = n === 0;
  }

  // ------------------------------------------------------------------ socket

  private connect(): void {
    const conn = this.$("conn");
    this.link = new PromptSessions(this.scan.id, {
      annotation: () => this.saved.annotation?.id ?? null,
      engine: () => this.engineName,
      activeLabel: () => this.activeLabel,
    }, {
      mask: (mask, labelId) => this.onMask(mask, labelId),
      hello: (user, first) => {
        studio.user = user;
        // Needs to know who we are (the server says it in hello) to find the reader's own annotation.
        if (first && !this.options.review) void this.saved.loadMine(user);
      },
      accepted: (m) => this.onAccepted(m),
      othersAccepted: (m) => {
        toast(`${m.user} accepted a ${this.labels.find((l) => l.id === Number(m.label))?.name ?? "mask"}.`, "info");
        // Blinded projects name no annotation: another reader's work stays hidden.
        if (m.annotation != null) void this.showAcceptedMask(Number(m.annotation));
      },
      presence: (m) => renderPresence(this.$("presence"), m),
      failed: () => this.runDeferredJump(),
      changed: () => this.updatePending(),
      state: (state) => {
        conn.textContent = state === "open" ? "live" : state === "reconnecting" ? "reconnecting…" : state;
        conn.className = `conn ${state}`;
        studio.connection = state;
      },
    });
    this.link.connect();
  }

  private onAccepted(m: ServerMessage): void {
    const label = this.labels.find((l) => l.id === Number(m.label));
    toast(`Saved ${label?.name ?? "mask"} as version ${m.number ?? m.version}.`, "ok");
    if (label) {
      this.edited.delete(label.id);
      this.dirty.delete(label.value);
      this.layers.history.forget(label.value);
    }
    studio.lastAccepted = m;
    // Show what is now saved in the "accepted" layer: the working layer of this label is reused for the
    // next object, and the saved one would otherwise vanish from the reader's own view.
    void this.showAcceptedMask(Number(m.annotation)).catch((e) => console.warn("could not show the saved mask", e));
    void this.saved.refresh(Number(m.annotation));
    this.updatePending();
    this.renderSegments();
  }

  private onMask(mask: DecodedMask, label: number | undefined): void {
    const target = this.labels.find((l) => l.id === label) ?? this.activeLabel;
    this.updatePending();
    if (!target) return;
    if (mask.checksumOk === false) toast("A mask arrived damaged (checksum mismatch); ignoring it.", "error");
    if (mask.checksumOk === false) return;
    const promptAt = studio.promptSentAt as number | undefined;
    const t0 = performance.now();
    if (this.link?.takeSuppressed(mask.header.seq)) return; // the server's side of a local undo / redo
    const record = !this.link?.takeNoHistory(mask.header.seq);
    const { written, timings: [, t1, t2, t3] } = this.layers.applyServerMask(mask, target.value, record);
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

  /** PET value of a voxel [slice,row,col] as stored (the chosen unit's multiplier not applied). */
  valueAt(index: Vec3): number {
    return this.suvAt(index);
  }

  /** Voxels [slice,row,col] of the working labelmap that carry a label value. */
  labelVoxels(value: number): Vec3[] {
    return this.layers.voxels(value);
  }

  // ------------------------------------------------------------------ accepted masks of others, review

  private savedWorkHost(): SavedWorkHost {
    const labels = () => this.labels; // loaded after the host is made
    return {
      project: this.project,
      get labels() { return labels(); },
      scanId: this.scan.id,
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
      showSaved: (id, version) => this.showAcceptedMask(id, version),
      readOnly: () => this.setMode("navigate"),
    };
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
    const n = this.layers.showObjects(mask.data, colourOf);
    this.engine?.renderViewports([...VIEWPORTS]);
    studio.acceptedOverlayVoxels = n;
    studio.acceptedOverlayAnnotation = annotationId;
    return n;
  }

  // ------------------------------------------------------------------ keys

  private bindKeys(): void {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
      const action = actionFor(e);
      if (action === null) return;
      if (typeof action === "object") {
        const label = this.labels.filter((l) => !l.archived)[action.label];
        if (label) this.selectLabel(label);
        return;
      }
      if (["undo", "redo", "slice-up", "slice-down"].includes(action)) e.preventDefault();
      this.run(action);
    };
    window.addEventListener("keydown", onKey);
    this.disposers.push(() => window.removeEventListener("keydown", onKey));
  }

  private run(action: Action): void {
    switch (action) {
      case "mode-prompt": case "mode-brush": case "mode-eraser": case "mode-navigate":
        this.setMode(action.slice(5) as Mode);
        break;
      case "undo": case "redo": case "reset": case "accept": this.command(action); break;
      case "next-suv": this.display.nextSuvPreset(); break;
      case "next-unit": this.display.nextUnit(); break;
      case "next-colormap": this.display.nextColormap(); break;
      case "fusion": this.display.toggleFusion(); break;
      case "visibility": if (this.activeLabel) this.toggleVisibility(this.activeLabel.value); break;
      case "brush-smaller": case "brush-larger":
        toast(`Brush size ${this.tools.stepBrush(action === "brush-larger" ? 2 : -2)} mm`, "info");
        break;
      case "help": this.toggleHelp(); break;
      case "close": this.toggleHelp(false); break;
      case "slice-up": case "slice-down": this.scrollActive(action === "slice-up" ? 1 : -1); break;
    }
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
    this.link?.close();
    this.tools.dispose();
    this.layers?.dispose();
    this.views?.dispose();
    this.views = null;
    releaseAll();
    studio.ready = false;
    studio.viewer = undefined;
  }
}

/**
 * Review on screen, for both sides of it:
 * - the annotator's panel: the annotation's state, the reviewer's comments (object and voxel comments are
 *   markers on the images; click to jump), a reply, and Submit / Resubmit;
 * - the reviewer's panel: the saved objects with their statistics and jump-to, a comment on an object or
 *   on the crosshair's voxel, Approve / Request changes, with the server's reasons shown as they are.
 */
import { api, list, projectPath, type Annotation, type Comment, type Label, type ObjectStats, type Project, type VersionStats, type Version } from "./api";
import type { Vec3 } from "./geometry";
import { el, escapeHtml, studio, toast } from "./ui";
import type { Marker } from "./viewports";

export interface ReviewHost {
  project: Project;
  labels: Label[];
  jumpToVoxel(v: Vec3): void;
  setMarkers(markers: Marker[]): void;
  crosshairVoxel(): Vec3 | null;
  /** saved objects of the annotation's current version changed (statistics rows) */
  onSavedObjects(rows: ObjectStats[]): void;
}

const STATE_TEXT: Record<string, string> = {
  draft: "draft", submitted: "submitted for review", changes_requested: "changes requested", approved: "approved",
};

export async function savedObjects(projectId: number, annotationId: number, version?: number): Promise<ObjectStats[]> {
  // Statistics are computed after each save; wait for them a little rather than show an empty table.
  for (let attempt = 0; attempt < 20; attempt++) {
    const rows = await list<VersionStats>(`${projectPath(projectId)}/statistics/?annotation=${annotationId}${version ? `&version=${version}` : ""}`);
    const row = rows[0];
    if (!row) return [];
    if (row.status === "done") return row.objects;
    if (row.status === "failed") throw new Error(`The statistics could not be computed: ${row.message}`);
    await new Promise((ok) => setTimeout(ok, 500));
  }
  throw new Error("The statistics are still being computed; reopen the scan in a moment.");
}

function commentMarkers(comments: Comment[], objects: ObjectStats[]): Marker[] {
  const byId = new Map(objects.map((o) => [o.id, o]));
  const markers: Marker[] = [];
  comments.forEach((c, i) => {
    const at = c.voxel ?? (c.object_id !== null ? byId.get(c.object_id)?.suv_max_index : undefined);
    if (at) markers.push({ world: at as Vec3, text: `#${i + 1}` });
  });
  return markers;
}

function commentTarget(c: Comment, objects: ObjectStats[]): Vec3 | null {
  if (c.voxel) return c.voxel;
  const o = c.object_id !== null ? objects.find((x) => x.id === c.object_id) : undefined;
  return o ? (o.suv_max_index as Vec3) : null;
}

function renderComments(ul: HTMLElement, comments: Comment[], objects: ObjectStats[], host: ReviewHost): void {
  ul.innerHTML = "";
  if (!comments.length) ul.append(el("li", { class: "muted" }, "No comments."));
  comments.forEach((c, i) => {
    const target = commentTarget(c, objects);
    const object = c.object_id !== null ? objects.find((o) => o.id === c.object_id) : undefined;
    const where = object ? ` on ${object.label_name} #${object.id}` : c.object_id !== null ? ` on object #${c.object_id}` : c.voxel ? ` at [${c.voxel.join(", ")}]` : "";
    const li = el("li", { class: `comment${c.parent ? " reply" : ""}`, "data-comment": String(c.id) },
      el("b", {}, `#${i + 1} ${c.author}`), el("span", { class: "muted" }, where), el("div", {}, c.body));
    if (target) {
      li.title = "Jump to it";
      li.append(el("button", { class: "small", "data-jump-comment": String(c.id), onclick: () => host.jumpToVoxel(target) }, "jump"));
    }
    ul.append(li);
  });
}

/** The annotator's side: state, comments with markers, reply, submit / resubmit. */
export async function annotatorPanel(box: HTMLElement, host: ReviewHost, annotation: Annotation | null, onSubmitted: (a: Annotation) => void): Promise<void> {
  if (!annotation) {
    box.innerHTML = "";
    const submit = el("button", { id: "submit-review", class: "primary", disabled: "" }, "Submit for review");
    box.append(el("p", { class: "muted" }, "Nothing saved yet: accept a mask (Enter) to save it, then submit for review."), submit);
    return;
  }
  const base = `${projectPath(host.project.id)}/annotations/${annotation.id}`;
  const [comments, objects] = await Promise.all([
    api<Comment[]>(`${base}/comments/`),
    annotation.current_version ? savedObjects(host.project.id, annotation.id).catch(() => [] as ObjectStats[]) : Promise.resolve([]),
  ]);
  box.innerHTML = ""; // only now: the panel never stands empty while it loads
  const state = el("p", { id: "my-state", "data-state": annotation.state }, `Your annotation: `, el("b", {}, STATE_TEXT[annotation.state] ?? annotation.state),
    annotation.current_version ? ` (version ${annotation.current_version.number})` : "");
  const ul = el("ul", { id: "my-comments", class: "comments" });
  renderComments(ul, comments, objects, host);
  host.setMarkers(commentMarkers(comments, objects));
  const reply = el("textarea", { id: "reply-text", placeholder: "Reply to the reviewer" }) as HTMLTextAreaElement;
  const error = el("div", { class: "error", id: "my-error", role: "alert" });
  const replyButton = el("button", { id: "reply-send" }, "Reply");
  replyButton.onclick = async () => {
    if (!reply.value.trim()) return;
    try {
      const last = [...comments].reverse().find((c) => c.author !== studio.user);
      await api(`${base}/comments/`, { method: "POST", json: { body: reply.value, parent: last?.id ?? null } });
      reply.value = "";
      error.textContent = "";
      toast("Reply sent.", "ok");
      await annotatorPanel(box, host, annotation, onSubmitted);
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };
  const canSubmit = ["draft", "changes_requested"].includes(annotation.state) && annotation.current_version;
  const submit = el("button", { id: "submit-review", class: "primary" }, annotation.state === "changes_requested" ? "Resubmit for review" : "Submit for review");
  submit.toggleAttribute("disabled", !canSubmit);
  submit.onclick = async () => {
    try {
      const fresh = await api<Annotation>(`${base}/submit/`, { method: "POST" });
      error.textContent = "";
      toast("Submitted for review.", "ok");
      onSubmitted(fresh);
      await annotatorPanel(box, host, fresh, onSubmitted);
    } catch (e) {
      error.textContent = (e as Error).message;
      toast((e as Error).message, "error");
    }
  };
  box.append(state, submit, error);
  if (comments.length || annotation.state === "changes_requested") {
    box.append(el("h4", {}, "Reviewer's comments"), ul, reply, replyButton);
  }
  studio.myAnnotation = { id: annotation.id, state: annotation.state, comments: comments.length };
}

/** The reviewer's side: objects, comment, approve / request changes. */
export async function reviewerPanel(box: HTMLElement, host: ReviewHost, annotation: Annotation, showVersion: (n: number) => Promise<void>): Promise<void> {
  const base = `${projectPath(host.project.id)}/annotations/${annotation.id}`;
  const [versions, comments] = await Promise.all([api<Version[]>(`${base}/versions/`), api<Comment[]>(`${base}/comments/`)]);
  const current = annotation.current_version?.number;
  box.innerHTML = `
    <p>Annotation ${annotation.id} by <b>${escapeHtml(annotation.annotator)}</b> — ${escapeHtml(STATE_TEXT[annotation.state] ?? annotation.state)}</p>
    <label>Version <select id="rv-a">${versions.map((v) => `<option value="${v.number}" ${v.number === current ? "selected" : ""}>v${v.number} (${escapeHtml(v.author)})</option>`).join("")}</select></label>
    <label>Comment on <select id="rv-target"><option value="">the whole annotation</option><option value="voxel">the crosshair's voxel</option></select></label>
    <textarea id="rv-comment" placeholder="Comment (required to request changes)"></textarea>
    <div id="rv-where" class="muted"></div>
    <div class="error" id="rv-error" role="alert"></div>
    <button id="rv-approve" class="primary">Approve</button> <button id="rv-back">Request changes</button>
    <h4>Comments</h4><ul id="rv-comments" class="comments"></ul>`;
  const $ = <T extends HTMLElement>(id: string) => box.querySelector(`#${id}`) as T;
  const target = $<HTMLSelectElement>("rv-target");
  const error = $("rv-error");
  let objects: ObjectStats[] = [];
  const loadObjects = async (number?: number) => {
    try {
      objects = await savedObjects(host.project.id, annotation.id, number);
    } catch (e) {
      error.textContent = (e as Error).message;
      objects = [];
    }
    host.onSavedObjects(objects);
    target.innerHTML = `<option value="">the whole annotation</option><option value="voxel">the crosshair's voxel</option>` +
      objects.map((o) => `<option value="o${o.id}">${escapeHtml(o.label_name)} #${o.id} (${o.volume_ml.toFixed(1)} ml)</option>`).join("");
    renderComments($("rv-comments"), comments, objects, host);
    host.setMarkers(commentMarkers(comments, objects));
  };
  $<HTMLSelectElement>("rv-a").onchange = async (e) => {
    const n = Number((e.target as HTMLSelectElement).value);
    await showVersion(n);
    await loadObjects(n);
  };
  await loadObjects();
  const where = () => {
    const v = host.crosshairVoxel();
    $("rv-where").textContent = target.value === "voxel" ? (v ? `The comment will point at voxel [${v.join(", ")}].` : "No voxel chosen.") : "";
  };
  target.onchange = where;
  const timer = setInterval(where, 500);
  const decide = async (kind: "approve" | "request-changes") => {
    const comment = $<HTMLTextAreaElement>("rv-comment").value;
    if (kind === "request-changes" && !comment.trim()) {
      error.textContent = "Write what should change.";
      return;
    }
    const json: Record<string, unknown> = { comment };
    if (target.value === "voxel") json.voxel = host.crosshairVoxel();
    if (target.value.startsWith("o")) json.object_id = Number(target.value.slice(1));
    try {
      await api(`${base}/${kind}/`, { method: "POST", json });
      toast(kind === "approve" ? "Approved." : "Sent back to the annotator.", "ok");
      clearInterval(timer);
      location.hash = `#/projects/${host.project.id}/review`;
    } catch (e) {
      error.textContent = (e as Error).message;
      toast((e as Error).message, "error");
    }
  };
  $("rv-approve").onclick = () => void decide("approve");
  $("rv-back").onclick = () => void decide("request-changes");
  studio.review = { annotation: annotation.id, objects: objects.length };
}

export interface SavedWorkHost extends ReviewHost {
  scanId: number;
  /** draw an annotation's saved objects (a version, default the current one) in the saved layer */
  showSaved(annotationId: number, version?: number): Promise<number>;
  /** switch the viewer to read-only navigation */
  readOnly(): void;
}

/**
 * The reader's saved work on this scan (their annotation, its objects, the review panel) or, on the review
 * screen, the reviewed annotation.
 */
export class SavedWork {
  annotation: Annotation | null = null;

  constructor(private root: HTMLElement, private host: SavedWorkHost) {}

  private $(id: string): HTMLElement {
    return this.root.querySelector(`#${id}`) as HTMLElement;
  }

  /** The reader's own annotation of the scan: drawn in the saved layer, listed in the table, with its panel. */
  async loadMine(me: string): Promise<void> {
    let annotations: Annotation[] = [];
    try {
      annotations = await list<Annotation>(`${projectPath(this.host.project.id)}/annotations/?scan=${this.host.scanId}`);
    } catch (e) {
      toast(`Your saved work could not be loaded: ${(e as Error).message}`, "error");
    }
    this.annotation = annotations.find((a) => a.annotator === me && !a.is_consensus) ?? null;
    if (this.annotation?.current_version) {
      await this.host.showSaved(this.annotation.id);
      await this.loadObjects(this.annotation.id);
    }
    await this.renderMine();
  }

  /** After a save: the annotation (state, version), its saved objects and the panel. */
  async refresh(annotationId: number): Promise<void> {
    try {
      this.annotation = await api<Annotation>(`${projectPath(this.host.project.id)}/annotations/${annotationId}/`);
      await this.loadObjects(annotationId);
      await this.renderMine();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  private async loadObjects(annotationId: number): Promise<void> {
    try {
      this.host.onSavedObjects(await savedObjects(this.host.project.id, annotationId));
    } catch (e) {
      toast((e as Error).message, "warn");
    }
  }

  private async renderMine(): Promise<void> {
    const box = this.$("my-review");
    if (!box) return;
    const canAnnotate = (this.host.project.my_roles ?? []).some((r) => r === "annotator" || r === "manager");
    this.$("my-review-box").hidden = !canAnnotate;
    if (!canAnnotate) return;
    try {
      await annotatorPanel(box, this.host, this.annotation, (fresh) => { this.annotation = fresh; });
    } catch (e) {
      box.innerHTML = "";
      box.append(el("p", { class: "error" }, `The review status could not be loaded: ${(e as Error).message}`));
    }
  }

  /** The review screen: read-only, the reviewed annotation's objects, comments and the decision. */
  async review(annotation: Annotation): Promise<void> {
    this.$("review-box").hidden = false;
    this.host.readOnly();
    await this.host.showSaved(annotation.id);
    try {
      await reviewerPanel(this.$("review"), this.host, annotation, async (n) => { await this.host.showSaved(annotation.id, n); });
    } catch (e) {
      this.$("review").append(el("p", { class: "error" }, (e as Error).message));
    }
  }
}

/** Side panels of the viewer: label buttons, the segment table, who is here. */
import { api, projectPath, type EngineRow, type Label, type Project, type Scan } from "./api";
import { helpRows } from "./keys";
import { formatNumber, lesionTotals, type SegmentRow } from "./objects";
import type { ServerMessage } from "./protocol";
import { el, escapeHtml, studio, toast } from "./ui";
import { MIP, VIEWPORTS } from "./viewports";

/** The viewer's page: toolbar, side panels, the four views, loading and help overlays. */
export function viewerHtml(project: Project, scan: Scan, readOnly: boolean): string {
  return `
      <div class="viewer${readOnly ? " read-only" : ""}">
        <header class="toolbar">
          <a href="#/projects/${project.id}" class="back">← ${escapeHtml(project.name)}</a>
          <strong class="scan-name">${escapeHtml(scan.name)}</strong>
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
          <table>${helpRows().map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")}</table>
          <button id="help-close">Close (Esc)</button></div></div>
      </div>`;
}

/** The engines the project allows (unavailable ones shown, not choosable); resolves with the one chosen. */
export async function buildEngineChoice(select: HTMLSelectElement, project: Project, changed: (name: string) => void): Promise<string | null> {
  let chosen: string | null = null;
  try {
    const rows = await api<EngineRow[]>(`${projectPath(project.id)}/engines/`);
    const usable = rows.filter((r) => r.allowed);
    select.innerHTML = usable.map((r) => `<option value="${escapeHtml(r.name)}" ${r.available ? "" : "disabled"} title="${escapeHtml(r.available ? r.description : r.reason ?? "")}">${escapeHtml(r.name)}${r.available ? "" : " (unavailable)"}</option>`).join("");
    chosen = usable.find((r) => r.default && r.available)?.name ?? usable.find((r) => r.available)?.name ?? null;
    if (chosen) select.value = chosen;
  } catch (e) {
    select.innerHTML = `<option>${escapeHtml(project.default_engine ?? "default")}</option>`;
    toast(`The engine list could not be loaded: ${(e as Error).message}`, "warn");
  }
  studio.engine = chosen;
  select.onchange = () => {
    studio.engine = select.value;
    changed(select.value);
    toast(`Engine: ${select.value}`, "info");
  };
  return chosen;
}

export function renderLabelButtons(box: HTMLElement, labels: Label[], activeId: number | null, select: (label: Label) => void): void {
  box.innerHTML = "";
  // archived labels stay on saved work, but are not offered for new segments
  const choosable = labels.filter((l) => !l.archived);
  if (!choosable.length) box.textContent = "This project has no labels yet.";
  choosable.forEach((label, i) => {
    box.append(el("button", {
      class: `label ${label.id === activeId ? "active" : ""}`,
      "data-label": String(label.id),
      title: `${i + 1}`,
      onclick: () => select(label),
    }, el("span", { class: "swatch", style: `background:${label.color}` }), `${i + 1}. ${label.name}`));
  });
}

export interface SegmentTableActions {
  isHidden(row: SegmentRow): boolean;
  toggle(row: SegmentRow): void;
  /** discard an unsaved row (absent: no delete buttons, e.g. read-only review) */
  discard?: (row: SegmentRow) => void;
  jump(target: [number, number, number]): void;
}

/** One row per saved object and per unsaved label mask: ml, SUVmax/mean/peak, TLG; click to jump. */
export function renderSegmentTable(table: HTMLElement, totals: HTMLElement, rows: SegmentRow[], labels: Label[], unit: string,
  actions: SegmentTableActions, emptyText: string): void {
  const u = escapeHtml(unit);
  table.innerHTML = `<tr><th></th><th>object</th><th>ml</th><th>${u} max</th><th>${u} mean</th><th>${u} peak</th><th title="${u} mean × ml">TLG</th><th></th></tr>` +
    (rows.length ? "" : `<tr><td colspan="8" class="muted">${emptyText}</td></tr>`);
  for (const row of rows) {
    const hidden = actions.isHidden(row);
    const name = row.live ? `${row.labelName}${row.edited ? " ✎" : ""} (unsaved)` : `${row.labelName} #${row.objectId}`;
    const tr = el("tr", {
      "data-segment": String(row.labelValue), "data-object": row.objectId === null ? undefined : String(row.objectId),
      class: `${row.live ? "live" : "saved"}${hidden ? " hidden-row" : ""}`,
    },
    el("td", {}, el("span", { class: "swatch", style: `background:${row.colour}` })),
    el("td", {}, name),
    el("td", {}, formatNumber(row.ml, 1)),
    el("td", {}, formatNumber(row.suvMax, 2)),
    el("td", {}, formatNumber(row.suvMean, 2)),
    el("td", {}, formatNumber(row.suvPeak, 2)),
    el("td", {}, formatNumber(row.tlg, 1)),
    el("td", { class: "row-actions" },
      el("button", { class: "small", title: "show / hide", onclick: (e: Event) => { e.stopPropagation(); actions.toggle(row); } }, hidden ? "show" : "hide"),
      row.live && actions.discard ? el("button", { class: "small", title: "discard this unsaved mask", onclick: (e: Event) => { e.stopPropagation(); actions.discard!(row); } }, "delete") : null));
    if (row.target) {
      const target = row.target;
      tr.title = "Jump to its hottest voxel";
      tr.onclick = () => actions.jump(target);
    }
    table.append(tr);
  }
  const sum = lesionTotals(rows, labels);
  totals.textContent = sum.count ? `Saved lesions: ${sum.count}, MTV ${sum.mtv.toFixed(1)} ml, TLG ${sum.tlg.toFixed(1)} (${unit})` : "";
  studio.segmentRows = rows.map((r) => ({ object: r.objectId, label: r.labelName, live: r.live, ml: r.ml, suvMax: r.suvMax, suvMean: r.suvMean, suvPeak: r.suvPeak, tlg: r.tlg, unit }));
}

export function renderPresence(ul: HTMLElement, m: ServerMessage): void {
  const users = (m.users as { user: string; activity: string; since: string }[]) ?? [];
  ul.innerHTML = "";
  for (const u of users) ul.append(el("li", {}, el("b", {}, u.user), u.activity ? ` — ${u.activity}` : ""));
  studio.presence = users;
}

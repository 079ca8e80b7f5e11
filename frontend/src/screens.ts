/** Project list, worklist, review queue, agreement. */
import { api, list, projectPath, type Annotation, type Project, type Scan, type WorklistRow } from "./api";
import { el, escapeHtml, studio, toast } from "./ui";

export function header(title: string, back?: { href: string; text: string }): string {
  return `<header class="page-header">${back ? `<a class="back" href="${back.href}">← ${escapeHtml(back.text)}</a>` : ""}
    <h1>${escapeHtml(title)}</h1>
    <form method="post" action="/accounts/logout/" class="logout"><input type="hidden" name="csrfmiddlewaretoken" value="${escapeHtml(csrf())}"><button>Sign out</button></form></header>`;
}

/** Tabs of the manager's screens. */
export function managerTabs(projectId: number, active: string): string {
  const tabs: [string, string, string][] = [
    ["worklist", `#/projects/${projectId}`, "Worklist"], ["review", `#/projects/${projectId}/review`, "Review queue"],
    ["settings", `#/projects/${projectId}/settings`, "Settings"], ["upload", `#/projects/${projectId}/upload`, "Upload"],
    ["exports", `#/projects/${projectId}/exports`, "Exports"], ["pacs", `#/projects/${projectId}/pacs`, "PACS"],
  ];
  return `<nav class="tabs">${tabs.map(([key, href, text]) => `<a href="${href}" data-tab="${key}" class="${key === active ? "active" : ""}">${text}</a>`).join("")}</nav>`;
}

function csrf(): string {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export async function projectList(root: HTMLElement): Promise<void> {
  root.innerHTML = `${header("SegAnyPET Studio — projects")}<main class="page"><ul id="projects" class="cards"><li class="muted">Loading…</li></ul></main>`;
  const projects = await list<Project>("/api/projects/");
  const ul = root.querySelector("#projects")!;
  ul.innerHTML = "";
  if (!projects.length) ul.append(el("li", { class: "muted" }, "You are not a member of any project yet."));
  for (const p of projects) {
    ul.append(el("li", { class: "card" },
      el("a", { href: `#/projects/${p.id}`, "data-project": String(p.id) }, el("h2", {}, p.name)),
      el("p", {}, p.description || ""),
      el("p", { class: "muted" }, `your roles: ${(p.my_roles ?? []).join(", ") || "–"}`),
      (p.my_roles ?? []).some((r) => r === "reviewer" || r === "manager") ? el("a", { href: `#/projects/${p.id}/review` }, "Review queue →") : null));
  }
  studio.screen = "projects";
}

const STATE_TEXT: Record<string, string> = {
  not_started: "not started", draft: "draft", submitted: "submitted", changes_requested: "changes requested", approved: "approved",
};

export async function worklist(root: HTMLElement, projectId: number): Promise<void> {
  const project = await api<Project>(`${projectPath(projectId)}/`);
  root.innerHTML = `${header(project.name, { href: "#/", text: "projects" })}
    <main class="page">${(project.my_roles ?? []).includes("manager") ? managerTabs(projectId, "worklist") : ""}
      <div class="filters">
        <input id="f-text" placeholder="filter by name" />
        <select id="f-status"><option value="">any scan status</option><option>ready</option><option>pending</option><option>ingesting</option><option>failed</option></select>
        <select id="f-state"><option value="">any annotation state</option>${Object.entries(STATE_TEXT).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
        <label><input type="checkbox" id="f-mine"> only assigned to me</label>
        ${(project.my_roles ?? []).some((r) => r === "reviewer" || r === "manager") && !(project.my_roles ?? []).includes("manager") ? `<a href="#/projects/${projectId}/review">Review queue →</a>` : ""}
      </div>
      <div class="inline-error" id="worklist-error" role="alert"></div>
      <table class="worklist" id="worklist"><thead><tr><th>scan</th><th>tracer</th><th>status</th><th>assignee</th><th>annotation</th><th></th></tr></thead><tbody><tr><td colspan="6" class="muted">Loading…</td></tr></tbody></table>
    </main>`;
  // Only what the reader's roles may see is asked for; a failure is shown, never taken for "nothing".
  const roles = project.my_roles ?? [];
  const failures: string[] = [];
  const shown = <T,>(what: string, promise: Promise<T[]>): Promise<T[]> => promise.catch((e: Error) => {
    failures.push(`${what}: ${e.message}`);
    return [] as T[];
  });
  const [scans, mine, annotations, assignments] = await Promise.all([
    list<Scan>(`${projectPath(projectId)}/scans/`),
    roles.includes("annotator") ? shown("your worklist", api<WorklistRow[]>(`${projectPath(projectId)}/assignments/worklist/`)) : Promise.resolve([] as WorklistRow[]),
    shown("annotations", list<Annotation>(`${projectPath(projectId)}/annotations/`)),
    shown("assignments", list<{ scan: number; annotator: { username: string } | string }>(`${projectPath(projectId)}/assignments/`)),
  ]);
  root.querySelector("#worklist-error")!.textContent = failures.length ? `Could not load ${failures.join("; ")}` : "";
  const me = new Map(mine.map((r) => [r.scan, r]));
  const assignees = new Map<number, string[]>();
  for (const a of assignments) {
    const name = typeof a.annotator === "string" ? a.annotator : a.annotator?.username;
    assignees.set(a.scan, [...(assignees.get(a.scan) ?? []), name]);
  }
  const annotationsByScan = new Map<number, Annotation[]>();
  for (const a of annotations) annotationsByScan.set(a.scan, [...(annotationsByScan.get(a.scan) ?? []), a]);
  const tbody = root.querySelector("#worklist tbody")!;
  const render = () => {
    const text = (root.querySelector("#f-text") as HTMLInputElement).value.toLowerCase();
    const status = (root.querySelector("#f-status") as HTMLSelectElement).value;
    const state = (root.querySelector("#f-state") as HTMLSelectElement).value;
    const onlyMine = (root.querySelector("#f-mine") as HTMLInputElement).checked;
    tbody.innerHTML = "";
    for (const scan of scans) {
      const row = me.get(scan.id);
      const myState = row?.annotation_state ?? (annotationsByScan.get(scan.id)?.length ? annotationsByScan.get(scan.id)!.map((a) => `${a.annotator}: ${STATE_TEXT[a.state] ?? a.state}`).join(", ") : "not started");
      if (text && !scan.name.toLowerCase().includes(text)) continue;
      if (status && scan.status !== status) continue;
      if (state && (row?.annotation_state ?? "not_started") !== state) continue;
      if (onlyMine && !row) continue;
      const open = scan.status === "ready" ? el("a", { href: `#/projects/${projectId}/scans/${scan.id}`, class: "button", "data-open-scan": String(scan.id) }, "Open") : el("span", { class: "muted" }, scan.status_message || "not ready");
      tbody.append(el("tr", {},
        el("td", {}, scan.name || `scan ${scan.id}`),
        el("td", {}, scan.tracer || ""),
        el("td", { class: `status ${scan.status}` }, scan.status + (scan.status === "ingesting" && scan.ingest_progress ? ` ${Math.round(scan.ingest_progress * 100)}%` : "")),
        el("td", {}, (assignees.get(scan.id) ?? []).join(", ") || "–"),
        el("td", {}, row ? STATE_TEXT[row.annotation_state] ?? row.annotation_state : myState),
        el("td", {}, open)));
    }
    if (!tbody.children.length) tbody.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No scans match.")));
  };
  root.querySelectorAll("#f-text, #f-status, #f-state, #f-mine").forEach((x) => x.addEventListener("input", render));
  render();
  studio.screen = "worklist";
}

export async function reviewQueue(root: HTMLElement, projectId: number): Promise<void> {
  const project = await api<Project>(`${projectPath(projectId)}/`);
  root.innerHTML = `${header(`${project.name} — review`, { href: `#/projects/${projectId}`, text: "worklist" })}
    <main class="page">${(project.my_roles ?? []).includes("manager") ? managerTabs(projectId, "review") : ""}
      <table class="worklist" id="queue"><thead><tr><th>annotation</th><th>scan</th><th>annotator</th><th>submitted</th><th>approvals</th><th>claimed</th><th></th></tr></thead><tbody></tbody></table>
      <h2>Agreement</h2>
      <div class="filters"><input id="ag-a" placeholder="annotation id A" size="8"><input id="ag-b" placeholder="annotation id B" size="8"><button id="ag-go">Compare</button></div>
      <pre id="ag-out" class="agreement"></pre>
    </main>`;
  const tbody = root.querySelector("#queue tbody")!;
  try {
    const [queue, scans] = await Promise.all([
      list<Annotation>(`${projectPath(projectId)}/annotations/review-queue/`),
      list<Scan>(`${projectPath(projectId)}/scans/`),
    ]);
    const scanName = new Map(scans.map((x) => [x.id, x.name || `scan ${x.id}`]));
    if (!queue.length) tbody.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "Nothing to review.")));
    for (const a of queue) {
      tbody.append(el("tr", {},
        el("td", {}, `#${a.id} v${a.current_version?.number ?? "–"}`),
        el("td", {}, scanName.get(a.scan) ?? `scan ${a.scan}`),
        el("td", {}, a.annotator),
        el("td", {}, a.submitted_at ? new Date(a.submitted_at).toLocaleString() : "–"),
        el("td", {}, a.approvals.join(", ") || "–"),
        el("td", {}, a.claimed_by ?? "–"),
        el("td", {}, el("a", { class: "button", href: `#/projects/${projectId}/scans/${a.scan}/review/${a.id}`, "data-review": String(a.id) }, "Review"))));
    }
  } catch (e) {
    tbody.append(el("tr", {}, el("td", { colspan: "7", class: "error" }, (e as Error).message)));
  }
  (root.querySelector("#ag-go") as HTMLButtonElement).onclick = async () => {
    const a = (root.querySelector("#ag-a") as HTMLInputElement).value.trim();
    const b = (root.querySelector("#ag-b") as HTMLInputElement).value.trim();
    const out = root.querySelector("#ag-out") as HTMLElement;
    try {
      const result = await api<Record<string, unknown>>(`${projectPath(projectId)}/annotations/agreement/?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
      out.textContent = formatAgreement(result);
    } catch (e) {
      out.textContent = (e as Error).message;
      toast((e as Error).message, "error");
    }
  };
  studio.screen = "review";
}

function formatAgreement(result: Record<string, unknown>): string {
  const lines: string[] = [`scan ${result.scan}: annotation ${result.a} vs ${result.b}`];
  for (const [k, v] of Object.entries(result)) {
    if (["scan", "a", "b"].includes(k)) continue;
    lines.push(`${k}: ${JSON.stringify(v, (_key, x) => (typeof x === "number" ? Math.round(x * 1000) / 1000 : x), 2)}`);
  }
  return lines.join("\n");
}

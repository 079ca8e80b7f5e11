/** Manager screens: project settings (members and roles, label set, engines), scan upload, exports. */
import { api, csrfToken, list, projectPath, readableError, type EngineRow, type ExportJob, type Label, type Member, type Project, type Scan } from "./api";
import { header, managerTabs } from "./screens";
import { el, escapeHtml, studio, toast } from "./ui";

const ROLES = ["manager", "annotator", "reviewer"] as const;

function inlineError(box: HTMLElement, error: unknown): void {
  box.textContent = (error as Error).message;
  toast((error as Error).message, "error");
}

// ---------------------------------------------------------------------------------------------- settings

export async function projectSettings(root: HTMLElement, projectId: number): Promise<void> {
  const project = await api<Project>(`${projectPath(projectId)}/`);
  root.innerHTML = `${header(`${project.name} — settings`, { href: `#/projects/${projectId}`, text: "worklist" })}
    <main class="page">${managerTabs(projectId, "settings")}
      <section><h2>Members and roles</h2>
        <table class="worklist" id="members"><thead><tr><th>user</th>${ROLES.map((r) => `<th>${r}</th>`).join("")}<th></th></tr></thead><tbody></tbody></table>
        <div class="filters"><input id="new-member" placeholder="username"> ${ROLES.map((r) => `<label><input type="checkbox" class="new-role" value="${r}" ${r === "annotator" ? "checked" : ""}> ${r}</label>`).join("")}
          <button id="add-member">Add member</button></div>
        <div class="inline-error" id="members-error" role="alert"></div></section>
      <section><h2>Label set</h2>
        <table class="worklist" id="labels-table"><thead><tr><th>value</th><th>name</th><th>colour</th><th>kind</th><th></th></tr></thead><tbody></tbody></table>
        <div class="filters"><input id="new-label-name" placeholder="name"><input id="new-label-value" type="number" min="1" max="255" placeholder="value" size="5">
          <input id="new-label-color" type="color" value="#33cc66"><select id="new-label-kind"><option>lesion</option><option>organ</option><option>other</option></select>
          <button id="add-label">Add label</button></div>
        <div class="inline-error" id="labels-error" role="alert"></div></section>
      <section><h2>Segmentation engines</h2>
        <p class="muted">Annotators choose among the allowed engines in the viewer; the default is preselected.</p>
        <table class="worklist" id="engines"><thead><tr><th>engine</th><th>allowed</th><th>default</th><th>here</th><th>about</th></tr></thead><tbody></tbody></table>
        <button id="save-engines" class="primary">Save engines</button>
        <div class="inline-error" id="engines-error" role="alert"></div></section>
    </main>`;
  const $ = <T extends HTMLElement>(id: string) => root.querySelector(`#${id}`) as T;

  const renderMembers = async () => {
    const tbody = $("members").querySelector("tbody")!;
    const members = await list<Member>(`${projectPath(projectId)}/members/`);
    tbody.innerHTML = "";
    for (const m of members) {
      const boxes = ROLES.map((r) => {
        const input = el("input", { type: "checkbox", "data-member-role": `${m.username}:${r}` }) as HTMLInputElement;
        input.checked = m.roles.includes(r);
        input.onchange = async () => {
          const roles = ROLES.filter((x) => (tbody.querySelector(`[data-member-role="${m.username}:${x}"]`) as HTMLInputElement).checked);
          try {
            await api(`${projectPath(projectId)}/members/${m.id}/`, { method: "PATCH", json: { roles } });
            $("members-error").textContent = "";
            toast(`${m.username}: ${roles.join(", ")}`, "ok");
          } catch (e) {
            input.checked = !input.checked;
            inlineError($("members-error"), e);
          }
        };
        return el("td", {}, input);
      });
      const remove = el("button", { class: "small" }, "remove");
      remove.onclick = async () => {
        if (!confirm(`Remove ${m.username} from the project?`)) return;
        try {
          await api(`${projectPath(projectId)}/members/${m.id}/`, { method: "DELETE" });
          await renderMembers();
        } catch (e) { inlineError($("members-error"), e); }
      };
      tbody.append(el("tr", { "data-member": m.username }, el("td", {}, m.username), ...boxes, el("td", {}, remove)));
    }
  };
  $("add-member").onclick = async () => {
    const roles = [...root.querySelectorAll<HTMLInputElement>(".new-role:checked")].map((x) => x.value);
    try {
      await api(`${projectPath(projectId)}/members/`, { method: "POST", json: { username: $<HTMLInputElement>("new-member").value.trim(), roles } });
      $<HTMLInputElement>("new-member").value = "";
      $("members-error").textContent = "";
      await renderMembers();
    } catch (e) { inlineError($("members-error"), e); }
  };

  const renderLabels = async () => {
    const tbody = $("labels-table").querySelector("tbody")!;
    const labels = await list<Label>(`${projectPath(projectId)}/labels/`);
    tbody.innerHTML = "";
    for (const label of labels.sort((a, b) => a.value - b.value)) {
      const name = el("input", { value: label.name, size: "12" }) as HTMLInputElement;
      const colour = el("input", { type: "color", value: label.color }) as HTMLInputElement;
      const save = async (json: Record<string, unknown>) => {
        try {
          await api(`${projectPath(projectId)}/labels/${label.id}/`, { method: "PATCH", json });
          $("labels-error").textContent = "";
        } catch (e) { inlineError($("labels-error"), e); }
      };
      name.onchange = () => void save({ name: name.value });
      colour.onchange = () => void save({ color: colour.value });
      const remove = el("button", { class: "small" }, label.archived ? "restore" : "delete");
      remove.onclick = async () => {
        try {
          if (label.archived) {
            await api(`${projectPath(projectId)}/labels/${label.id}/`, { method: "PATCH", json: { archived: false } });
          } else {
            if (!confirm(`Delete the label ${label.name}? (A label that saved work uses is archived instead.)`)) return;
            const kept = await api<Label | null>(`${projectPath(projectId)}/labels/${label.id}/`, { method: "DELETE" });
            if (kept?.archived) toast(`${label.name} is used by saved annotations: archived, not deleted.`, "info");
          }
          await renderLabels();
        } catch (e) { inlineError($("labels-error"), e); }
      };
      tbody.append(el("tr", { "data-label-row": label.name, class: label.archived ? "muted" : "" }, el("td", {}, String(label.value)), el("td", {}, name), el("td", {}, colour),
        el("td", {}, label.kind + (label.archived ? " (archived)" : "")), el("td", {}, remove)));
    }
  };
  $("add-label").onclick = async () => {
    try {
      await api(`${projectPath(projectId)}/labels/`, { method: "POST", json: {
        name: $<HTMLInputElement>("new-label-name").value.trim(), value: Number($<HTMLInputElement>("new-label-value").value),
        color: $<HTMLInputElement>("new-label-color").value, kind: $<HTMLSelectElement>("new-label-kind").value } });
      $("labels-error").textContent = "";
      await renderLabels();
    } catch (e) { inlineError($("labels-error"), e); }
  };

  const renderEngines = async () => {
    const rows = await api<EngineRow[]>(`${projectPath(projectId)}/engines/`);
    const tbody = $("engines").querySelector("tbody")!;
    tbody.innerHTML = rows.map((r) => `<tr data-engine="${escapeHtml(r.name)}"><td>${escapeHtml(r.name)}</td>
      <td><input type="checkbox" class="engine-allowed" value="${escapeHtml(r.name)}" ${r.allowed ? "checked" : ""}></td>
      <td><input type="radio" name="engine-default" value="${escapeHtml(r.name)}" ${r.default ? "checked" : ""}></td>
      <td>${r.available ? "available" : `<span class="muted">${escapeHtml(r.reason ?? "unavailable")}</span>`}</td>
      <td class="muted">${escapeHtml(r.description)}</td></tr>`).join("");
  };
  $("save-engines").onclick = async () => {
    const allowed = [...root.querySelectorAll<HTMLInputElement>(".engine-allowed:checked")].map((x) => x.value);
    const def = root.querySelector<HTMLInputElement>("input[name=engine-default]:checked")?.value;
    try {
      await api(`${projectPath(projectId)}/`, { method: "PATCH", json: { allowed_engines: allowed, ...(def ? { default_engine: def } : {}) } });
      $("engines-error").textContent = "";
      toast("Engines saved.", "ok");
      await renderEngines();
    } catch (e) { inlineError($("engines-error"), e); }
  };
  await Promise.all([renderMembers(), renderLabels(), renderEngines()]);
  studio.screen = "settings";
}

// ---------------------------------------------------------------------------------------------- upload

/** POST with upload progress (fetch has none). Resolves with the parsed body, rejects with a readable error. */
function postWithProgress<T>(url: string, form: FormData, onProgress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body: unknown = xhr.responseText;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as T);
      else reject(new Error(readableError(xhr.status, body)));
    };
    xhr.onerror = () => reject(new Error("The upload was interrupted (network)."));
    xhr.send(form);
  });
}

export async function uploadScreen(root: HTMLElement, projectId: number): Promise<void> {
  const project = await api<Project>(`${projectPath(projectId)}/`);
  root.innerHTML = `${header(`${project.name} — upload a scan`, { href: `#/projects/${projectId}`, text: "worklist" })}
    <main class="page">${managerTabs(projectId, "upload")}
      <form id="upload-form" class="form-grid">
        <label for="up-name">name</label><input id="up-name" name="name" placeholder="e.g. Patient 12 baseline">
        <label for="up-tracer">tracer</label><input id="up-tracer" name="tracer" placeholder="FDG">
        <label>kind</label><span><label><input type="radio" name="kind" value="dicom" checked> DICOM files or zips</label>
          <label><input type="radio" name="kind" value="nifti"> NIfTI</label></span>
        <label for="up-files" class="dicom">DICOM</label><input id="up-files" class="dicom" type="file" multiple>
        <label for="up-pet" class="nifti" hidden>PET NIfTI</label><input id="up-pet" class="nifti" type="file" hidden>
        <label for="up-units" class="nifti" hidden>PET units</label><select id="up-units" class="nifti" hidden><option value="SUVbw">SUVbw (body-weight SUV)</option><option value="BQML">BQML (Bq/ml)</option></select>
        <label for="up-ct" class="nifti" hidden>CT NIfTI (optional)</label><input id="up-ct" class="nifti" type="file" hidden>
        <label for="up-labels" class="nifti" hidden>label map (optional)</label><input id="up-labels" class="nifti" type="file" hidden>
        <span></span><button class="primary" id="up-go">Upload</button>
      </form>
      <p><progress id="up-progress" max="1" value="0"></progress> <span id="up-status" class="muted"></span></p>
      <div class="inline-error" id="up-error" role="alert"></div>
    </main>`;
  const $ = <T extends HTMLElement>(id: string) => root.querySelector(`#${id}`) as T;
  root.querySelectorAll<HTMLInputElement>("input[name=kind]").forEach((r) => (r.onchange = () => {
    const nifti = r.value === "nifti" && r.checked;
    root.querySelectorAll<HTMLElement>(".nifti").forEach((x) => (x.hidden = !nifti));
    root.querySelectorAll<HTMLElement>(".dicom").forEach((x) => (x.hidden = nifti));
  }));
  $<HTMLFormElement>("upload-form").onsubmit = async (e) => {
    e.preventDefault();
    const form = new FormData();
    form.append("name", $<HTMLInputElement>("up-name").value);
    form.append("tracer", $<HTMLInputElement>("up-tracer").value);
    const nifti = root.querySelector<HTMLInputElement>("input[name=kind]:checked")?.value === "nifti";
    if (nifti) {
      const pet = $<HTMLInputElement>("up-pet").files?.[0];
      if (!pet) return void ($("up-error").textContent = "Choose the PET NIfTI file.");
      form.append("pet", pet);
      form.append("pet_units", $<HTMLSelectElement>("up-units").value);
      for (const key of ["ct", "labels"]) {
        const file = $<HTMLInputElement>(`up-${key}`).files?.[0];
        if (file) form.append(key, file);
      }
    } else {
      const files = [...($<HTMLInputElement>("up-files").files ?? [])];
      if (!files.length) return void ($("up-error").textContent = "Choose DICOM files or zips.");
      for (const f of files) form.append("files", f);
    }
    $("up-error").textContent = "";
    const progress = $<HTMLProgressElement>("up-progress");
    const status = $("up-status");
    try {
      const scan = await postWithProgress<Scan>(`${projectPath(projectId)}/scans/`, form, (f) => {
        progress.value = f / 2;
        status.textContent = `sending ${Math.round(f * 100)}%`;
      });
      // then the ingest, in the background: follow the scan's status
      for (;;) {
        const now = await api<Scan>(`${projectPath(projectId)}/scans/${scan.id}/`);
        progress.value = 0.5 + (now.ingest_progress ?? 0) / 2;
        status.textContent = `${now.status}${now.status_message ? `: ${now.status_message}` : ""}`;
        if (["ready", "failed", "needs_suv_parameters"].includes(now.status)) {
          if (now.status === "ready") toast(`${now.name || "The scan"} is ready.`, "ok");
          else $("up-error").textContent = now.status_message || now.status;
          break;
        }
        await new Promise((ok) => setTimeout(ok, 1000));
      }
    } catch (err) { inlineError($("up-error"), err); }
  };
  studio.screen = "upload";
}

// ---------------------------------------------------------------------------------------------- exports

const FORMATS: [string, string][] = [["nnunet", "nnU-Net v2 dataset"], ["dicom_seg", "DICOM SEG"], ["nifti", "NIfTI"], ["csv", "CSV statistics"]];
const STATES: [string, string][] = [["approved", "approved"], ["submitted", "submitted"], ["changes_requested", "changes requested"], ["draft", "draft"]];

export async function exportScreen(root: HTMLElement, projectId: number): Promise<void> {
  const project = await api<Project>(`${projectPath(projectId)}/`);
  const labels = await list<Label>(`${projectPath(projectId)}/labels/`);
  root.innerHTML = `${header(`${project.name} — exports`, { href: `#/projects/${projectId}`, text: "worklist" })}
    <main class="page">${managerTabs(projectId, "exports")}
      <section><h2>New export</h2><div class="form-grid">
        <span>formats</span><span>${FORMATS.map(([v, t]) => `<label><input type="checkbox" class="ex-format" value="${v}" ${v === "nnunet" || v === "dicom_seg" ? "checked" : ""}> ${t}</label>`).join(" ")}</span>
        <span>annotation states</span><span>${STATES.map(([v, t]) => `<label><input type="checkbox" class="ex-state" value="${v}" ${v === "approved" ? "checked" : ""}> ${t}</label>`).join(" ")}</span>
        <span>labels</span><span>${labels.map((l) => `<label><input type="checkbox" class="ex-label" value="${l.id}" checked> ${escapeHtml(l.name)}</label>`).join(" ")}</span>
        <label for="ex-from">saved from</label><span><input type="date" id="ex-from"> to <input type="date" id="ex-to"></span>
        <span></span><button class="primary" id="ex-go">Start export</button></div>
        <p><progress id="ex-progress" max="1" value="0"></progress> <span id="ex-status" class="muted"></span></p>
        <div class="inline-error" id="ex-error" role="alert"></div></section>
      <section><h2>History</h2><table class="worklist" id="ex-history"><thead><tr><th>#</th><th>by</th><th>when</th><th>formats</th><th>status</th><th>size</th><th></th></tr></thead><tbody></tbody></table></section>
    </main>`;
  const $ = <T extends HTMLElement>(id: string) => root.querySelector(`#${id}`) as T;
  const checked = (cls: string) => [...root.querySelectorAll<HTMLInputElement>(`.${cls}:checked`)].map((x) => x.value);
  const renderHistory = async () => {
    const jobs = await list<ExportJob>(`${projectPath(projectId)}/exports/`);
    const tbody = $("ex-history").querySelector("tbody")!;
    tbody.innerHTML = "";
    if (!jobs.length) tbody.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No exports yet.")));
    for (const job of jobs) {
      const formats = ((job.settings.formats as string[] | undefined) ?? []).join(", ");
      tbody.append(el("tr", { "data-export": String(job.id) },
        el("td", {}, String(job.id)), el("td", {}, job.created_by ?? "–"), el("td", {}, new Date(job.created_at).toLocaleString()),
        el("td", {}, formats), el("td", { class: `status ${job.status}` }, job.status === "running" ? `running ${Math.round(job.progress * 100)}%` : job.status + (job.message ? `: ${job.message}` : "")),
        el("td", {}, job.archive_bytes ? `${(job.archive_bytes / 1e6).toFixed(1)} MB` : "–"),
        el("td", {}, job.download_url ? el("a", { class: "button", href: job.download_url, download: "", "data-download": String(job.id) }, "Download") : "")));
    }
    return jobs;
  };
  $("ex-go").onclick = async () => {
    const json: Record<string, unknown> = { formats: checked("ex-format"), states: checked("ex-state"), labels: checked("ex-label").map(Number) };
    if ($<HTMLInputElement>("ex-from").value) json.date_from = $<HTMLInputElement>("ex-from").value;
    if ($<HTMLInputElement>("ex-to").value) json.date_to = $<HTMLInputElement>("ex-to").value;
    $("ex-error").textContent = "";
    try {
      let job = await api<ExportJob>(`${projectPath(projectId)}/exports/`, { method: "POST", json });
      await renderHistory();
      while (job.status === "pending" || job.status === "running") {
        $<HTMLProgressElement>("ex-progress").value = job.progress;
        $("ex-status").textContent = `${job.status} ${Math.round(job.progress * 100)}% ${job.message ?? ""}`;
        await new Promise((ok) => setTimeout(ok, 1000));
        job = await api<ExportJob>(`${projectPath(projectId)}/exports/${job.id}/`);
      }
      $<HTMLProgressElement>("ex-progress").value = 1;
      $("ex-status").textContent = job.status === "done" ? "done" : `${job.status}: ${job.message}`;
      if (job.status !== "done") $("ex-error").textContent = job.message || `The export ${job.status}.`;
      studio.lastExport = job.id;
      await renderHistory();
    } catch (e) { inlineError($("ex-error"), e); }
  };
  await renderHistory();
  studio.screen = "exports";
}

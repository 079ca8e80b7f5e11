/** PACS screen (managers): search a DICOMweb source's studies, import them, follow and resume imports. */
import { api, ApiError, list, projectPath, type Project } from "./api";
import { el, escapeHtml, studio, toast } from "./ui";

interface Source { id: number; name: string; qido_url: string; auth: string; secret: string; push_on_approval: boolean }
interface Study {
  study_instance_uid: string; patient_id: string; patient_name: string; study_date: string; study_description: string;
  accession_number: string; modalities: string[]; series_count: number; instance_count: number;
  import_id: number | null; import_status: string | null; scan_id: number | null;
}
interface PacsImport {
  id: number; source_name: string; scan: number; study_instance_uid: string; patient_id: string; status: string;
  resumable: boolean; message: string; instances_total: number; instances_retrieved: number;
}

const RUNNING = new Set(["pending", "retrieving", "ingesting"]);

function dicomDate(value: string): string {
  return value.length === 8 ? `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6)}` : value;
}

function errorText(error: unknown): string {
  if (error instanceof ApiError && error.body && typeof error.body === "object" && "detail" in error.body) {
    return String((error.body as { detail: unknown }).detail);
  }
  return (error as Error).message;
}

export async function pacsScreen(root: HTMLElement, projectId: number): Promise<void> {
  const [project, sources] = await Promise.all([
    api<Project>(`${projectPath(projectId)}/`),
    list<Source>(`${projectPath(projectId)}/pacs-sources/`),
  ]);
  root.innerHTML = `<header class="page-header"><a class="back" href="#/projects/${projectId}">← worklist</a>
      <h1>${escapeHtml(project.name)} — PACS</h1></header>
    <main class="page">
      <form class="filters" id="pacs-search">
        <select id="p-source">${sources.map((s) => `<option value="${s.id}">${escapeHtml(s.name)}</option>`).join("")}</select>
        <input id="p-id" placeholder="patient id" size="14">
        <input id="p-name" placeholder="patient name" size="16">
        <label>from <input id="p-from" type="date"></label>
        <label>to <input id="p-to" type="date"></label>
        <button>Search PET studies</button>
      </form>
      <table class="worklist" id="p-studies"><thead><tr><th>patient</th><th>date</th><th>study</th><th>modalities</th>
        <th>instances</th><th></th></tr></thead><tbody></tbody></table>
      <h2>Imports</h2>
      <table class="worklist" id="p-imports"><thead><tr><th>study</th><th>patient</th><th>source</th><th>status</th>
        <th>progress</th><th></th></tr></thead><tbody></tbody></table>
    </main>`;
  const studies = root.querySelector("#p-studies tbody")!;
  const imports = root.querySelector("#p-imports tbody")!;
  if (!sources.length) {
    studies.append(el("tr", {}, el("td", { colspan: "6", class: "muted" },
      "This project has no DICOMweb source yet: a manager adds one with POST /api/projects/<id>/pacs-sources/.")));
  }
  let timer: number | undefined;

  const refreshImports = async (): Promise<void> => {
    if (!root.isConnected) return;
    const rows = await list<PacsImport>(`${projectPath(projectId)}/pacs-imports/`);
    imports.innerHTML = "";
    for (const row of rows) {
      const action = row.status === "done"
        ? el("a", { class: "button", href: `#/projects/${projectId}/scans/${row.scan}` }, "Open")
        : row.status === "failed" && row.resumable
          ? el("button", { onclick: () => void resume(row.id) }, "Resume")
          : null;
      imports.append(el("tr", {},
        el("td", { title: row.study_instance_uid }, `…${row.study_instance_uid.slice(-16)}`),
        el("td", {}, row.patient_id),
        el("td", {}, row.source_name),
        el("td", { class: `status ${row.status}`, title: row.message }, row.status + (row.message && row.status === "failed" ? `: ${row.message}` : "")),
        el("td", {}, `${row.instances_retrieved} / ${row.instances_total}`),
        el("td", {}, action)));
    }
    if (!rows.length) imports.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No imports yet.")));
    window.clearTimeout(timer);
    if (rows.some((r) => RUNNING.has(r.status))) timer = window.setTimeout(() => void refreshImports(), 2000);
  };

  const resume = async (importId: number): Promise<void> => {
    try {
      await api(`${projectPath(projectId)}/pacs-imports/${importId}/resume/`, { method: "POST" });
      toast("Import resumed.", "ok");
    } catch (error) {
      toast(errorText(error), "error");
    }
    await refreshImports();
  };

  const importStudy = async (sourceId: number, study: Study, button: HTMLButtonElement): Promise<void> => {
    button.disabled = true;
    try {
      await api(`${projectPath(projectId)}/pacs-imports/`, { method: "POST", json: { source: sourceId, study_instance_uid: study.study_instance_uid } });
      toast(`Importing ${study.patient_id || study.study_instance_uid}…`, "ok");
    } catch (error) {
      toast(errorText(error), "error");
      button.disabled = false;
    }
    await refreshImports();
  };

  const search = async (): Promise<void> => {
    const sourceId = Number((root.querySelector("#p-source") as HTMLSelectElement).value);
    if (!sourceId) return;
    const params = new URLSearchParams();
    const value = (id: string) => (root.querySelector(id) as HTMLInputElement).value.trim();
    if (value("#p-id")) params.set("patient_id", value("#p-id"));
    if (value("#p-name")) params.set("patient_name", value("#p-name"));
    if (value("#p-from")) params.set("date_from", value("#p-from"));
    if (value("#p-to")) params.set("date_to", value("#p-to"));
    studies.innerHTML = `<tr><td colspan="6" class="muted">Searching…</td></tr>`;
    try {
      const found = await api<Study[]>(`${projectPath(projectId)}/pacs-sources/${sourceId}/studies/?${params}`);
      studies.innerHTML = "";
      for (const study of found) {
        const button = el("button", {}, "Import");
        button.onclick = () => void importStudy(sourceId, study, button);
        const action = study.scan_id && study.import_status !== "failed"
          ? el("a", { class: "button", href: `#/projects/${projectId}/scans/${study.scan_id}` }, "In the project")
          : button;
        studies.append(el("tr", {},
          el("td", {}, `${study.patient_name} (${study.patient_id})`),
          el("td", {}, dicomDate(study.study_date)),
          el("td", { title: study.study_instance_uid }, study.study_description || study.accession_number || "–"),
          el("td", {}, study.modalities.join(", ")),
          el("td", {}, String(study.instance_count)),
          el("td", {}, action)));
      }
      if (!found.length) studies.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No PET study matches.")));
    } catch (error) {
      studies.innerHTML = "";
      studies.append(el("tr", {}, el("td", { colspan: "6", class: "error" }, errorText(error))));
    }
  };

  (root.querySelector("#pacs-search") as HTMLFormElement).onsubmit = (event) => {
    event.preventDefault();
    void search();
  };
  await refreshImports();
  studio.screen = "pacs";
}

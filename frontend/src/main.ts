/** SegAnyPET Studio: hash router over the screens. */
import "./styles.css";
import { api, projectPath, type Annotation, type Project, type Scan } from "./api";
import { exportScreen, projectSettings, uploadScreen } from "./manage";
import { pacsScreen } from "./pacs";
import { projectList, reviewQueue, worklist } from "./screens";
import { escapeHtml, studio } from "./ui";
import { Viewer } from "./viewer";

const root = document.getElementById("app")!;
let viewer: Viewer | null = null;

async function route(): Promise<void> {
  viewer?.dispose();
  viewer = null;
  studio.ready = false;
  studio.error = undefined;
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean);
  try {
    if (parts[0] === "projects" && parts[1]) {
      const projectId = Number(parts[1]);
      if (parts[2] === "review" && !parts[3]) return await reviewQueue(root, projectId);
      if (parts[2] === "settings") return await projectSettings(root, projectId);
      if (parts[2] === "upload") return await uploadScreen(root, projectId);
      if (parts[2] === "exports") return await exportScreen(root, projectId);
      if (parts[2] === "pacs" && !parts[3]) return await pacsScreen(root, projectId);
      if (parts[2] === "scans" && parts[3]) {
        const scanId = Number(parts[3]);
        const [project, scan] = await Promise.all([
          api<Project>(`${projectPath(projectId)}/`),
          api<Scan>(`${projectPath(projectId)}/scans/${scanId}/`),
        ]);
        let review: Annotation | undefined;
        if (parts[4] === "review" && parts[5]) review = await api<Annotation>(`${projectPath(projectId)}/annotations/${parts[5]}/`);
        studio.screen = "viewer";
        viewer = new Viewer(root, project, scan, { review });
        await viewer.start();
        return;
      }
      return await worklist(root, projectId);
    }
    await projectList(root);
  } catch (error) {
    console.error(error);
    studio.error = (error as Error).message;
    if (!root.querySelector(".error")) {
      root.innerHTML = `<main class="page"><p class="error">${escapeHtml((error as Error).message)}</p><a href="#/">Back to the projects</a></main>`;
    }
  }
}

window.addEventListener("hashchange", () => void route());
void route();

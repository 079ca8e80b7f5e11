/** REST client: session cookie + Django CSRF token on unsafe requests. */
import type { Mat4, Vec3 } from "./geometry";

export interface Project { id: number; name: string; description: string; my_roles?: string[]; default_engine?: string }
/** `archived`: kept for the objects that use it, not offered for new ones. */
export interface Label { id: number; name: string; value: number; color: string; kind: string; archived?: boolean }
export interface Series {
  id: number; modality: string; shape: Vec3; spacing: Vec3; affine: Mat4; units: string; raw_units: string;
  suv: Record<string, unknown> | null; description: string;
}
export interface Scan {
  id: number; project: number; name: string; status: string; status_message: string; tracer: string;
  patient_id: string; study_date: string | null; series: Series[]; ingest_progress?: number;
}
export interface Version { id: number; number: number; author: string; created_at: string; source: string; segments: { id: number; label: number; voxels?: number }[]; message: string }
export interface Annotation {
  id: number; scan: number; annotator: string; state: string; is_consensus: boolean; current_version: Version | null;
  claimed_by: string | null; submitted_at: string | null; updated_at: string; approvals: string[];
}
export interface WorklistRow { assignment: number; scan: number; scan_name: string; scan_status: string; annotation: number | null; annotation_state: string }
export interface Comment { id: number; version: number; author: string; body: string; object_id: number | null; voxel: Vec3 | null; created_at: string }

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly body: unknown) {
    super(message);
  }
}

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function describe(body: unknown): string {
  if (!body) return "";
  if (typeof body === "string") return body.slice(0, 300);
  if (typeof body === "object") {
    const o = body as Record<string, unknown>;
    if (typeof o.detail === "string") return o.detail;
    return Object.entries(o).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : JSON.stringify(v)}`).join("; ");
  }
  return String(body);
}

export async function api<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set("Accept", "application/json");
  const method = (init.method ?? "GET").toUpperCase();
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers.set("X-CSRFToken", csrfToken());
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(init.json);
  }
  const response = await fetch(path, { ...init, method, headers, body, credentials: "same-origin" });
  if (response.status === 401 || response.status === 403) {
    if (response.status === 401 || !document.cookie.includes("csrftoken")) {
      window.location.href = `/accounts/login/?next=${encodeURIComponent(location.pathname + location.hash)}`;
    }
  }
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!response.ok) throw new ApiError(response.status, `${method} ${path}: ${response.status} ${describe(parsed)}`.trim(), parsed);
  return parsed as T;
}

/** All pages of a DRF list (page-number pagination) or a plain list. */
export async function list<T>(path: string): Promise<T[]> {
  const out: T[] = [];
  let url: string | null = path;
  while (url) {
    const page: T[] | { results: T[]; next: string | null } = await api(url);
    if (Array.isArray(page)) return page;
    out.push(...page.results);
    url = page.next ? new URL(page.next, location.origin).pathname + new URL(page.next, location.origin).search : null;
  }
  return out;
}

export const projectPath = (p: number) => `/api/projects/${p}`;

/** REST client: session cookie + Django CSRF token on unsafe requests. */
import type { Mat4, Vec3 } from "./geometry";

export interface Project {
  id: number; name: string; description: string; my_roles?: string[]; default_engine?: string; allowed_engines?: string[];
  required_approvals?: number; blinded_double_read?: boolean;
}
export interface EngineRow { name: string; description: string; available: boolean; reason?: string; allowed: boolean; default: boolean }
export interface Member { id: number; username: string; roles: string[]; joined_at: string }
export interface ObjectStats {
  id: number; label: number | null; label_name: string; label_value: number | null; kind: string; voxels: number; volume_ml: number;
  suv_max: number; suv_mean: number; suv_peak: number; mtv_ml: number; tlg: number; suv_max_index: [number, number, number];
  suv_peak_index: [number, number, number]; hu_mean: number | null;
  /** the SUV type suv_max/mean/peak and tlg are in, and the same values in every other available type */
  units?: string; by_type?: Record<string, { suv_max: number; suv_mean: number; suv_peak: number; tlg: number }>;
}
export interface VersionStats { id: number; annotation: number; version: number; version_number: number; status: string; message: string; units: string; objects: ObjectStats[] }
export interface ExportJob {
  id: number; created_by: string | null; created_at: string; settings: Record<string, unknown>; status: string; progress: number;
  message: string; archive_bytes: number | null; summary: Record<string, unknown> | null; download_url: string | null;
}
export interface Label { id: number; name: string; value: number; color: string; kind: string; archived?: boolean }
export interface Series {
  id: number; modality: string; shape: Vec3; spacing: Vec3; affine: Mat4; units: string; raw_units: string;
  suv: Record<string, unknown> | null; description: string;
  /** the SUV type the voxels are stored in ("" when they are not SUV) and every type a reader may choose */
  suv_type?: string; suv_types?: SuvTypeInfo[];
}
/** One SUV type of a PET series: display value = stored voxel value × multiplier, or why it is unavailable. */
export interface SuvTypeInfo {
  type: string; label: string; units: string; stored: boolean; available: boolean; multiplier: number | null; reason: string | null;
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
export interface Comment { id: number; version: number; parent: number | null; author: string; body: string; object_id: number | null; voxel: Vec3 | null; created_at: string }

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly body: unknown, readonly request = "") {
    super(message);
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: "That was not accepted",
  401: "You are signed out; sign in again",
  403: "You are not allowed to do this",
  404: "Not found (it may have been removed, or it is not visible to you)",
  409: "It changed meanwhile",
  413: "That is too large",
  429: "Too many requests; wait a moment",
  500: "The server failed; try again, and tell the administrator if it keeps happening",
  502: "The server is not reachable right now",
  503: "The server is busy for a moment; try again shortly",
};

/** What a person reads for a failed request: the server's own explanation first, never a method and path. */
export function readableError(status: number, body: unknown): string {
  const detail = describe(body);
  const base = STATUS_TEXT[status] ?? `The request failed (${status})`;
  if (!detail || /^<!doctype|^<html/i.test(detail)) return `${base}.`;
  // The server's sentence says it best when it is one (e.g. the four-eyes rule).
  return status === 403 || status === 409 || status === 400 ? detail : `${base}: ${detail}`;
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
    const field = (k: string) => (k === "non_field_errors" ? "" : `${k.replace(/_/g, " ")}: `);
    return Object.entries(o).map(([k, v]) => `${field(k)}${Array.isArray(v) ? v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(" ") : typeof v === "string" ? v : JSON.stringify(v)}`).join("; ");
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
  if (!response.ok) {
    console.warn(`${method} ${path}: ${response.status}`, parsed); // for the developer; the user gets readableError
    throw new ApiError(response.status, readableError(response.status, parsed), parsed, `${method} ${path}`);
  }
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

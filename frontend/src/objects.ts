/**
 * The segment table's logic, kept free of the DOM and of Cornerstone so it is unit-tested: one row per
 * object instance as the statistics API has them (saved objects), plus live rows for what is being
 * edited now (per label, from the browser's own statistics).
 */
import type { Label, ObjectStats } from "./api";
import type { SegmentStats } from "./mask";

export interface SegmentRow {
  key: string;
  /** saved object id, or null for a live (unsaved) row */
  objectId: number | null;
  labelId: number | null;
  labelName: string;
  labelValue: number | null;
  colour: string;
  ml: number;
  suvMax: number;
  suvMean: number;
  /** SUVpeak needs the 1 ml sphere search the server does; live rows have none */
  suvPeak: number | null;
  tlg: number;
  /** where "jump to" goes: the hottest voxel, [slice,row,col] */
  target: [number, number, number] | null;
  live: boolean;
  edited: boolean;
}

/** Rows of saved objects (statistics API) and live working segments, saved first, by label then id. */
export function segmentRows(
  saved: ObjectStats[],
  live: Map<number, SegmentStats & { target?: [number, number, number] | null }>,
  labels: Label[],
  edited: Set<number> = new Set(),
): SegmentRow[] {
  const byId = new Map(labels.map((l) => [l.id, l]));
  const byValue = new Map(labels.map((l) => [l.value, l]));
  const rows: SegmentRow[] = saved.map((o) => {
    const label = o.label !== null ? byId.get(o.label) : undefined;
    return {
      key: `o${o.id}`, objectId: o.id, labelId: o.label, labelName: label?.name ?? o.label_name ?? "?",
      labelValue: label?.value ?? o.label_value, colour: label?.color ?? "#888888", ml: o.volume_ml, suvMax: o.suv_max,
      suvMean: o.suv_mean, suvPeak: o.suv_peak, tlg: o.tlg, target: o.suv_max_index ?? null, live: false, edited: false,
    };
  });
  rows.sort((a, b) => (a.labelValue ?? 999) - (b.labelValue ?? 999) || (a.objectId ?? 0) - (b.objectId ?? 0));
  const liveRows: SegmentRow[] = [];
  for (const [value, s] of live) {
    if (!s.voxels) continue;
    const label = byValue.get(value);
    liveRows.push({
      key: `l${value}`, objectId: null, labelId: label?.id ?? null, labelName: label?.name ?? `label ${value}`, labelValue: value,
      colour: label?.color ?? "#888888", ml: s.volumeMl, suvMax: s.suvMax, suvMean: s.suvMean, suvPeak: null,
      tlg: s.suvMean * s.volumeMl, target: s.target ?? null, live: true, edited: label ? edited.has(label.id) : false,
    });
  }
  liveRows.sort((a, b) => (a.labelValue ?? 0) - (b.labelValue ?? 0));
  return [...rows, ...liveRows];
}

/** Totals over lesion rows: count, MTV (ml) and TLG. */
export function lesionTotals(rows: SegmentRow[], labels: Label[]): { count: number; mtv: number; tlg: number } {
  const lesion = new Set(labels.filter((l) => l.kind === "lesion").map((l) => l.id));
  const picked = rows.filter((r) => !r.live && r.labelId !== null && lesion.has(r.labelId));
  return { count: picked.length, mtv: picked.reduce((a, r) => a + r.ml, 0), tlg: picked.reduce((a, r) => a + r.tlg, 0) };
}

export function formatNumber(x: number | null, digits: number): string {
  return x === null || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

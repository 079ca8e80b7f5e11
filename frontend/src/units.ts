/**
 * SUV types as the reader's choice (SUVbw, SUL, SUVbsa, ...). The PET volume stays in the type it is
 * stored in; every number the reader sees is the stored voxel value × the chosen type's multiplier, as
 * the series API gives it (`suv_types`). Kept free of the DOM and Cornerstone so it is unit-tested.
 */
import type { ObjectStats, Series, SuvTypeInfo } from "./api";
import type { SegmentStats } from "./mask";

/** A chosen unit: its name (e.g. "SUL"), what it is, and display value = stored voxel value × multiplier. */
export interface Unit {
  name: string;
  label: string;
  units: string;
  multiplier: number;
}

/** PET windows [name, lower, upper] in the chosen SUV unit: 0–5 SUL is a different image from 0–5 SUVbw. */
export const SUV_PRESETS: [string, number, number][] = [["0–5", 0, 5], ["0–10", 0, 10], ["0–20", 0, 20]];

export interface Range {
  lower: number;
  upper: number;
}

/** The SUV types of a PET series, as the API lists them; empty when the values are not SUV (raw units). */
export function suvTypes(series: Pick<Series, "suv_types">): SuvTypeInfo[] {
  return series.suv_types ?? [];
}

/** A type that can be chosen: available, with a positive finite multiplier. */
export function isUsable(info: SuvTypeInfo): boolean {
  return info.available && typeof info.multiplier === "number" && Number.isFinite(info.multiplier) && info.multiplier > 0;
}

/** The unit of a type by name; null when the series has no such type or it is unavailable. */
export function unitOf(types: SuvTypeInfo[], name: string): Unit | null {
  const info = types.find((t) => t.type === name);
  if (!info || !isUsable(info)) return null;
  return { name: info.type, label: info.label, units: info.units, multiplier: info.multiplier as number };
}

/** The type the voxels are stored in (multiplier 1): the default choice. Null without SUV. */
export function storedUnit(types: SuvTypeInfo[]): Unit | null {
  const stored = types.find((t) => t.stored && isUsable(t));
  return stored ? unitOf(types, stored.type) : null;
}

/** The available types after `current`, wrapping round (the keyboard's "next unit"). */
export function nextUnit(types: SuvTypeInfo[], current: string): Unit | null {
  const usable = types.filter(isUsable);
  if (!usable.length) return null;
  const at = usable.findIndex((t) => t.type === current);
  return unitOf(types, usable[(at + 1) % usable.length].type);
}

/** A stored voxel value in the chosen unit. */
export function toDisplay(stored: number, unit: Unit): number {
  return stored * unit.multiplier;
}

/** A value in the chosen unit back on the stored voxels' scale. */
export function toStored(shown: number, unit: Unit): number {
  return shown / unit.multiplier;
}

/**
 * The VOI range to give Cornerstone (on the stored voxels) for a window in the chosen unit: a preset of
 * 0–5 in SUL is 0–5/m on voxels stored as SUVbw, where m is the SUVbw → SUL multiplier.
 */
export function storedWindow(shown: Range, unit: Unit): Range {
  return { lower: toStored(shown.lower, unit), upper: toStored(shown.upper, unit) };
}

/** A VOI range on the stored voxels as the reader reads it, in the chosen unit. */
export function shownWindow(stored: Range, unit: Unit): Range {
  return { lower: toDisplay(stored.lower, unit), upper: toDisplay(stored.upper, unit) };
}

/** Which preset [name, lower, upper] (in the chosen unit) a window shown in that unit is; -1 if none. */
export function matchingPreset(presets: [string, number, number][], shown: Range): number {
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b));
  return presets.findIndex(([, lo, hi]) => close(lo, shown.lower) && close(hi, shown.upper));
}

/**
 * A saved object's SUVmax/mean/peak and TLG in the chosen unit. The statistics API gives them in the
 * stored type (`units`) and in every other available type (`by_type`); older statistics without
 * `by_type` are scaled by the multiplier (every SUV type is a scalar multiple of the stored one).
 */
export function objectInUnit(o: ObjectStats, unit: Unit): ObjectStats {
  if (o.units === unit.name) return o;
  const given = o.by_type?.[unit.name];
  if (given) return { ...o, suv_max: given.suv_max, suv_mean: given.suv_mean, suv_peak: given.suv_peak, tlg: given.tlg };
  const m = unit.multiplier;
  return { ...o, suv_max: o.suv_max * m, suv_mean: o.suv_mean * m, suv_peak: o.suv_peak * m, tlg: o.tlg * m };
}

/** The browser's own statistics of an unsaved mask (stored values) in the chosen unit. */
export function segmentInUnit<T extends SegmentStats>(s: T, unit: Unit): T {
  return { ...s, suvMax: toDisplay(s.suvMax, unit), suvMean: toDisplay(s.suvMean, unit) };
}

/** The cursor readout's value: "SUL 3.42". */
export function formatReading(stored: number, unit: Unit | null, rawUnits = "raw"): string {
  return unit ? `${unit.name} ${toDisplay(stored, unit).toFixed(2)}` : `${rawUnits} ${stored.toFixed(2)}`;
}

/** The tooltip of a type in the unit switch: what it is, or why it cannot be chosen. */
export function describeType(info: SuvTypeInfo): string {
  if (isUsable(info)) return `${info.label}, ${info.units}${info.stored ? " (stored)" : ` (×${(info.multiplier as number).toPrecision(4)} of the stored values)`}`;
  return `${info.label}: unavailable: ${info.reason ?? "not computed"}`;
}

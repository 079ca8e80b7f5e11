import { describe, expect, it } from "vitest";
import type { Label, ObjectStats } from "../api";
import { formatNumber, lesionTotals, segmentRows } from "../objects";

const labels: Label[] = [
  { id: 10, name: "liver", value: 1, color: "#c8783c", kind: "organ" },
  { id: 11, name: "lesion", value: 5, color: "#f0dc28", kind: "lesion" },
];

function object(id: number, label: number, ml: number, mean: number): ObjectStats {
  return {
    id, label, label_name: label === 10 ? "liver" : "lesion", label_value: label === 10 ? 1 : 5, kind: label === 10 ? "organ" : "lesion",
    voxels: Math.round(ml / 0.064), volume_ml: ml, suv_max: mean * 2, suv_mean: mean, suv_peak: mean * 1.5, mtv_ml: ml, tlg: ml * mean,
    suv_max_index: [id, 2, 3], suv_peak_index: [id, 2, 3], hu_mean: null,
  };
}

describe("segment table", () => {
  it("has one row per saved object instance, by label then id, each with its own jump target", () => {
    const rows = segmentRows([object(3, 11, 2, 4), object(1, 11, 1, 6), object(2, 10, 1500, 2)], new Map(), labels);
    expect(rows.map((r) => r.objectId)).toEqual([2, 1, 3]);
    expect(rows.map((r) => r.labelName)).toEqual(["liver", "lesion", "lesion"]);
    expect(rows[2]).toMatchObject({ ml: 2, suvPeak: 6, tlg: 8, target: [3, 2, 3], live: false, colour: "#f0dc28" });
  });

  it("adds live rows for unsaved work after the saved objects, TLG = SUVmean x ml, no SUVpeak", () => {
    const live = new Map([[5, { voxels: 10, volumeMl: 0.64, suvMax: 9, suvMean: 5, maxAt: 0, target: [7, 8, 9] as [number, number, number] }]]);
    const rows = segmentRows([object(1, 10, 1500, 2)], live, labels, new Set([11]));
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatchObject({ live: true, objectId: null, labelName: "lesion", suvPeak: null, edited: true, target: [7, 8, 9] });
    expect(rows[1].tlg).toBeCloseTo(3.2);
  });

  it("leaves out empty live segments", () => {
    const live = new Map([[5, { voxels: 0, volumeMl: 0, suvMax: 0, suvMean: 0, maxAt: 0 }]]);
    expect(segmentRows([], live, labels)).toEqual([]);
  });

  it("totals saved lesions only", () => {
    const live = new Map([[5, { voxels: 10, volumeMl: 0.64, suvMax: 9, suvMean: 5, maxAt: 0 }]]);
    const rows = segmentRows([object(1, 11, 2, 4), object(2, 11, 3, 1), object(3, 10, 1500, 2)], live, labels);
    expect(lesionTotals(rows, labels)).toEqual({ count: 2, mtv: 5, tlg: 11 });
  });

  it("formats missing numbers as a dash", () => {
    expect(formatNumber(null, 2)).toBe("–");
    expect(formatNumber(Number.NaN, 1)).toBe("–");
    expect(formatNumber(1.234, 1)).toBe("1.2");
  });
});

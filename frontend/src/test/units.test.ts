import { describe, expect, it } from "vitest";
import type { ObjectStats, SuvTypeInfo } from "../api";
import {
  describeType, formatReading, matchingPreset, nextUnit, objectInUnit, segmentInUnit, shownWindow, storedUnit, storedWindow,
  SUV_PRESETS, suvTypes, toDisplay, toStored, unitOf,
} from "../units";

// A male patient, 80 kg, 1.80 m: lean body mass (Janmahasatian) 9270·80 / (6680 + 216·24.69) = 61.7 kg, so
// SUL = SUVbw × 62.3 / 80. The multipliers are what the series API would give for him.
const lbm = (9270 * 80) / (6680 + 216 * (80 / 1.8 ** 2));
const SUL = lbm / 80;
const types: SuvTypeInfo[] = [
  { type: "SUVbw", label: "SUV (body weight)", units: "g/ml", stored: true, available: true, multiplier: 1, reason: null },
  { type: "SUL", label: "SUL (lean body mass, Janmahasatian)", units: "g/ml", stored: false, available: true, multiplier: SUL, reason: null },
  { type: "SULjames", label: "SUL (lean body mass, James 128)", units: "g/ml", stored: false, available: false, multiplier: null,
    reason: "not computed" },
  { type: "SUVbsa", label: "SUV (body surface area, DuBois)", units: "cm2/ml", stored: false, available: true, multiplier: 2.5, reason: null },
];

function stats(over: Partial<ObjectStats> = {}): ObjectStats {
  return {
    id: 1, label: 5, label_name: "lesion", label_value: 5, kind: "lesion", voxels: 100, volume_ml: 6.4, suv_max: 12, suv_mean: 6,
    suv_peak: 9, mtv_ml: 6.4, tlg: 38.4, suv_max_index: [1, 2, 3], suv_peak_index: [1, 2, 3], hu_mean: null, units: "SUVbw", ...over,
  };
}

describe("SUV units", () => {
  it("defaults to the stored type and finds every available one by name", () => {
    expect(storedUnit(types)).toMatchObject({ name: "SUVbw", multiplier: 1 });
    expect(unitOf(types, "SUL")?.multiplier).toBeCloseTo(0.7716, 4);
    expect(unitOf(types, "SULjames")).toBeNull(); // unavailable: never chosen
    expect(unitOf(types, "SUVxyz")).toBeNull();
    expect(storedUnit([])).toBeNull(); // raw units: no SUV at all
    expect(suvTypes({})).toEqual([]);
  });

  it("steps through the available types only, wrapping round", () => {
    expect(nextUnit(types, "SUVbw")?.name).toBe("SUL");
    expect(nextUnit(types, "SUL")?.name).toBe("SUVbsa"); // SULjames is skipped
    expect(nextUnit(types, "SUVbsa")?.name).toBe("SUVbw");
  });

  it("shows a stored value times the multiplier, and converts back", () => {
    const sul = unitOf(types, "SUL")!;
    expect(toDisplay(10, sul)).toBeCloseTo(10 * SUL, 12);
    expect(toStored(toDisplay(3.7, sul), sul)).toBeCloseTo(3.7, 12);
    expect(formatReading(10, sul)).toBe(`SUL ${(10 * SUL).toFixed(2)}`);
    expect(formatReading(1234.5, null, "BQML")).toBe("BQML 1234.50");
  });

  it("gives Cornerstone a window on the stored voxels for a preset in the chosen unit", () => {
    const sul = unitOf(types, "SUL")!;
    const stored = storedWindow({ lower: 0, upper: 5 }, sul);
    expect(stored.upper).toBeCloseTo(5 / SUL, 12); // 0–5 SUL is a wider window on SUVbw voxels
    expect(shownWindow(stored, sul).upper).toBeCloseTo(5, 12);
    // the stored type's presets are the very numbers (the smoke test's 0–10)
    expect(storedWindow({ lower: 0, upper: 10 }, storedUnit(types)!)).toEqual({ lower: 0, upper: 10 });
  });

  it("tells which preset a window is in a unit, and none after a switch that keeps the image", () => {
    expect(matchingPreset(SUV_PRESETS, { lower: 0, upper: 10 })).toBe(1);
    const sul = unitOf(types, "SUL")!;
    // the 0–10 SUVbw window read in SUL is 0–7.72 SUL: no preset
    expect(matchingPreset(SUV_PRESETS, shownWindow({ lower: 0, upper: 10 }, sul))).toBe(-1);
    expect(matchingPreset(SUV_PRESETS, shownWindow(storedWindow({ lower: 0, upper: 20 }, sul), sul))).toBe(2);
  });

  it("takes a saved object's values in another type from the API's by_type, else scales them", () => {
    const sul = unitOf(types, "SUL")!;
    const given = { suv_max: 9.3, suv_mean: 4.6, suv_peak: 7.0, tlg: 29.9 };
    expect(objectInUnit(stats({ by_type: { SUL: given } }), sul)).toMatchObject({ ...given, volume_ml: 6.4 });
    const scaled = objectInUnit(stats(), sul);
    expect(scaled.suv_max).toBeCloseTo(12 * SUL, 12);
    expect(scaled.suv_mean).toBeCloseTo(6 * SUL, 12);
    expect(scaled.suv_peak).toBeCloseTo(9 * SUL, 12);
    expect(scaled.tlg).toBeCloseTo(38.4 * SUL, 12);
    expect(scaled.volume_ml).toBe(6.4); // volumes do not depend on the unit
    expect(objectInUnit(stats(), storedUnit(types)!)).toEqual(stats()); // already in the chosen type
  });

  it("scales the browser's live statistics of unsaved masks", () => {
    const bsa = unitOf(types, "SUVbsa")!;
    const live = segmentInUnit({ voxels: 10, volumeMl: 0.64, suvMax: 8, suvMean: 4, maxAt: 7 }, bsa);
    expect(live).toEqual({ voxels: 10, volumeMl: 0.64, suvMax: 20, suvMean: 10, maxAt: 7 });
  });

  it("describes an unavailable type by its reason", () => {
    expect(describeType(types[2])).toContain("unavailable: not computed");
    expect(describeType(types[0])).toContain("(stored)");
    expect(describeType(types[1])).toContain("×0.7716");
  });
});

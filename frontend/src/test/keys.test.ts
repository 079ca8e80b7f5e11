import { describe, expect, it } from "vitest";
import { SHORTCUTS, actionFor, helpRows } from "../keys";

describe("shortcuts", () => {
  it("maps keys to actions", () => {
    expect(actionFor({ key: "z", ctrlKey: true })).toBe("undo");
    expect(actionFor({ key: "Z", ctrlKey: true, shiftKey: true })).toBe("redo");
    expect(actionFor({ key: "y", metaKey: true })).toBe("redo");
    expect(actionFor({ key: "b" })).toBe("mode-brush");
    expect(actionFor({ key: "Enter" })).toBe("accept");
    expect(actionFor({ key: "3" })).toEqual({ label: 2 });
    expect(actionFor({ key: "3", ctrlKey: true })).toBeNull();
    expect(actionFor({ key: "b", ctrlKey: true })).toBeNull();
    expect(actionFor({ key: "q" })).toBeNull();
  });

  it("lists every action in the help", () => {
    const help = helpRows().map(([keys, text]) => `${keys} ${text}`).join("\n");
    for (const s of SHORTCUTS) {
      // the arrow-down entry shares its help row with arrow-up
      if (!s.keys) continue;
      expect(help).toContain(`${s.keys} ${s.text}`);
    }
    expect(help).toContain("double-click on the MIP");
    expect(new Set(SHORTCUTS.map((s) => s.action)).size).toBe(SHORTCUTS.length);
  });
});

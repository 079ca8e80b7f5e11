import { describe, expect, it } from "vitest";
import { EditHistory, diffStep, type StepKind } from "../history";

/** Apply an action to a labelmap the way the viewer does: copy before, change, record the difference. */
function act(history: EditHistory, data: Uint8Array, kind: StepKind, change: (d: Uint8Array) => void, session?: string): void {
  const before = data.slice();
  change(data);
  history.push(diffStep(kind, 5, before, data, session));
}

describe("edit history", () => {
  it("undoes exactly the last action, whatever its kind, in order, and redoes it", () => {
    const data = new Uint8Array(20);
    const h = new EditHistory();
    act(h, data, "prompt", (d) => d.fill(5, 2, 8), "s1"); // mask of the click
    act(h, data, "brush", (d) => d.fill(5, 10, 13)); // stroke beside it
    act(h, data, "eraser", (d) => d.fill(0, 11, 13)); // erase part of the stroke
    act(h, data, "prompt", (d) => { d.fill(0, 2, 4); }, "s1"); // a negative click shrinks the mask
    const final = data.slice();
    expect(h.kinds).toEqual(["prompt", "brush", "eraser", "prompt"]);

    expect(h.undo(data)?.kind).toBe("prompt");
    expect([...data.slice(2, 8)]).toEqual([5, 5, 5, 5, 5, 5]); // the negative click is gone, the stroke stays
    expect([...data.slice(10, 13)]).toEqual([5, 0, 0]);
    expect(h.undo(data)?.kind).toBe("eraser");
    expect([...data.slice(10, 13)]).toEqual([5, 5, 5]); // only the eraser came back
    expect(h.undo(data)?.kind).toBe("brush");
    expect([...data.slice(10, 13)]).toEqual([0, 0, 0]);
    expect([...data.slice(2, 8)]).toEqual([5, 5, 5, 5, 5, 5]); // the click's mask is untouched
    const step = h.undo(data);
    expect(step?.kind).toBe("prompt");
    expect(step?.session).toBe("s1");
    expect([...data]).toEqual(new Array(20).fill(0));
    expect(h.undo(data)).toBeNull();

    for (const kind of ["prompt", "brush", "eraser", "prompt"]) expect(h.redo(data)?.kind).toBe(kind);
    expect([...data]).toEqual([...final]);
    expect(h.redo(data)).toBeNull();
  });

  it("a new action after an undo ends the redo branch", () => {
    const data = new Uint8Array(10);
    const h = new EditHistory();
    act(h, data, "brush", (d) => d.fill(5, 0, 2));
    h.undo(data);
    expect(h.canRedo).toBe(true);
    act(h, data, "eraser", (d) => { d[0] = 0; }); // changes nothing: not recorded
    expect(h.canRedo).toBe(true);
    act(h, data, "brush", (d) => d.fill(5, 5, 7));
    expect(h.canRedo).toBe(false);
    expect(h.redo(data)).toBeNull();
  });

  it("keeps only the voxels that changed, and forgets a saved label", () => {
    const before = Uint8Array.from([0, 5, 0, 1]);
    const after = Uint8Array.from([5, 5, 0, 1]);
    const step = diffStep("brush", 5, before, after)!;
    expect([...step.offsets]).toEqual([0]);
    const h = new EditHistory();
    h.push(step);
    h.push(diffStep("brush", 1, Uint8Array.from([0]), Uint8Array.from([1])));
    h.forget(5);
    expect(h.kinds).toEqual(["brush"]);
    expect(h.undo(Uint8Array.from([1]))?.value).toBe(1);
  });

  it("is bounded", () => {
    const h = new EditHistory(3);
    const data = new Uint8Array(10);
    for (let i = 0; i < 5; i++) act(h, data, "brush", (d) => { d[i] = 5; });
    let n = 0;
    while (h.undo(data)) n++;
    expect(n).toBe(3);
    expect([...data.slice(0, 2)]).toEqual([5, 5]);
  });
});

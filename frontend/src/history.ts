/**
 * The edit history of the working labelmap: prompts, brush strokes and eraser strokes in the order they
 * happened. Each step keeps only the voxels it changed (offset, value before, value after), so one undo
 * takes back exactly the last action and redo puts it back, whatever kind it was.
 */

export type StepKind = "prompt" | "brush" | "eraser";

export interface Step {
  kind: StepKind;
  /** label value the step was made with */
  value: number;
  /** prompt steps: the server session, so its own prompt history can follow */
  session?: number | string;
  offsets: Uint32Array;
  before: Uint8Array;
  after: Uint8Array;
}

type Voxels = { [i: number]: number; length: number };

/** The voxels that differ between two copies of a labelmap (within `ranges` of offsets, when given). */
export function diffStep(kind: StepKind, value: number, before: Voxels, after: Voxels, session?: number | string,
  ranges: [number, number][] = [[0, after.length]]): Step | null {
  const offsets: number[] = [];
  for (const [start, end] of ranges) for (let i = start; i < end; i++) if (before[i] !== after[i]) offsets.push(i);
  if (!offsets.length) return null;
  const o = Uint32Array.from(offsets);
  return {
    kind, value, session, offsets: o,
    before: Uint8Array.from(o, (i) => before[i]),
    after: Uint8Array.from(o, (i) => after[i]),
  };
}

export class EditHistory {
  private done: Step[] = [];
  private undone: Step[] = [];

  constructor(private limit = 200) {}

  push(step: Step | null): void {
    if (!step) return;
    this.done.push(step);
    if (this.done.length > this.limit) this.done.shift();
    this.undone = []; // a new action ends the redo branch
  }

  /** Take back the last step on `data`; returns it (null when there is none). */
  undo(data: Voxels): Step | null {
    const step = this.done.pop();
    if (!step) return null;
    for (let k = 0; k < step.offsets.length; k++) data[step.offsets[k]] = step.before[k];
    this.undone.push(step);
    return step;
  }

  redo(data: Voxels): Step | null {
    const step = this.undone.pop();
    if (!step) return null;
    for (let k = 0; k < step.offsets.length; k++) data[step.offsets[k]] = step.after[k];
    this.done.push(step);
    return step;
  }

  /** Forget the steps of one label (after it was saved or reset: its history starts again). */
  forget(value: number): void {
    this.done = this.done.filter((s) => s.value !== value);
    this.undone = this.undone.filter((s) => s.value !== value);
  }

  get kinds(): StepKind[] {
    return this.done.map((s) => s.kind);
  }

  get canUndo(): boolean {
    return this.done.length > 0;
  }

  get canRedo(): boolean {
    return this.undone.length > 0;
  }
}

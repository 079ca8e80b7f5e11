import { describe, expect, it } from "vitest";
import { invert4, voxelToWorld, type Mat4, type Vec3 } from "../geometry";
import { boxFromDrag, hottestAlongRay } from "../pointer";
import { bufferMatches, canvasToClient, clientToCanvas, directionLetters, orientationMarkers, pickCanvas, voxelOf } from "../registration";

// a head-first PET: slice axis towards the feet (-z), rows towards posterior (+y), cols towards left (+x), 4 mm
const affine: Mat4 = [[0, 0, 4, -256], [0, 4, 0, -256], [-4, 0, 0, 400], [0, 0, 0, 1]];
const shape: Vec3 = [220, 128, 128];

describe("transform chain", () => {
  it("page ↔ canvas points are offsets from the canvas's box", () => {
    const box = { left: 300.5, top: 40, width: 412, height: 412.5 };
    expect(clientToCanvas(box, 500.5, 100)).toEqual([200, 60]);
    expect(canvasToClient(box, clientToCanvas(box, 321, 77))).toEqual([321, 77]);
  });

  it("a canvas point maps through the camera to the voxel whose centre the camera put there", () => {
    // a camera that puts world (x, y) at canvas (x/2 + 100, y/2 + 100) on the slice z = 200
    const camera = {
      canvasToWorld: (p: [number, number]) => [(p[0] - 100) * 2, (p[1] - 100) * 2, 200],
      worldToCanvas: (w: Vec3) => [w[0] / 2 + 100, w[1] / 2 + 100],
    };
    const voxel: Vec3 = [50, 60, 70];
    const world = voxelToWorld(affine, voxel);
    const canvas = camera.worldToCanvas(world) as [number, number];
    const pick = pickCanvas(camera, invert4(affine), shape, canvas);
    expect(pick.voxel).toEqual(voxel);
    expect(pick.world).toEqual(world);
  });

  it("a point outside the grid has no voxel", () => {
    expect(voxelOf([-0.6, 3, 3], shape)).toBeNull();
    expect(voxelOf([219.4, 127.4, 0], shape)).toEqual([219, 127, 0]);
    expect(voxelOf([219.6, 0, 0], shape)).toBeNull();
  });

  it("a drawing buffer matches its box at the device pixel ratio, to the browser's rounding", () => {
    expect(bufferMatches({ width: 824, height: 825 }, { width: 412, height: 412.5 }, 2)).toBe(true);
    expect(bufferMatches({ width: 430, height: 430 }, { width: 412.5, height: 412.5 }, 1)).toBe(false);
  });
});

describe("orientation markers", () => {
  it("reads LPS directions as patient letters", () => {
    expect(directionLetters([1, 0, 0])).toBe("L");
    expect(directionLetters([0, -1, 0])).toBe("A");
    expect(directionLetters([0, 0, -1])).toBe("I");
    expect(directionLetters([0.5, 0, -0.9])).toBe("IL");
  });

  it("puts patient left on screen right in a radiological axial view (anterior up)", () => {
    expect(orientationMarkers([1, 0, 0], [0, 1, 0])).toEqual({ right: "L", left: "R", bottom: "P", top: "A" });
  });

  it("puts the head at the top of a coronal view", () => {
    expect(orientationMarkers([1, 0, 0], [0, 0, -1])).toMatchObject({ top: "S", bottom: "I" });
  });
});

describe("pointer geometry", () => {
  const inverse = invert4(affine);
  it("finds the hottest voxel along a MIP ray", () => {
    const hot: Vec3 = [100, 40, 64];
    const valueAt = (v: Vec3) => (v[0] === hot[0] && v[1] === hot[1] && v[2] === hot[2] ? 9 : v[1] === 40 ? 1 : 0);
    // a coronal ray (along y, posterior) through the hot voxel's x and z, starting from another row
    const start = voxelToWorld(affine, [100, 10, 64]);
    const peak = hottestAlongRay(start, [0, 1, 0], affine, inverse, shape, [4, 4, 4], valueAt);
    expect(peak?.voxel).toEqual(hot);
    expect(peak?.value).toBe(9);
    expect(peak?.world).toEqual(voxelToWorld(affine, hot));
  });

  it("turns an axial drag into a box as deep as it is wide, on the dragged slice", () => {
    const box = boxFromDrag([50, 10, 20], [50, 20, 30], [0, 0, -1], inverse, shape, [4, 4, 4]);
    // slice axis is through-plane (z); in-plane 11 voxels wide → half depth ≈ 11*4/2/4 rounded
    expect(box).not.toBeNull();
    const [lo, hi] = box!;
    expect([lo[1], hi[1], lo[2], hi[2]]).toEqual([10, 21, 20, 31]);
    expect(lo[0] < 50 && hi[0] > 50).toBe(true);
    expect(boxFromDrag([50, -30, -30], [50, -20, -20], [0, 0, -1], inverse, shape, [4, 4, 4])).toBeNull();
  });
});

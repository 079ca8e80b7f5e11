/**
 * Cornerstone3D set-up: an in-memory image loader ("studio:") that serves the slices of a
 * decoded NIfTI volume with their own DICOM-like positions (so tools that map slices to image
 * ids behave), and volume creation from those images.
 */
import {
  Enums,
  cache,
  imageLoader,
  init as coreInit,
  metaData,
  utilities,
  volumeLoader,
  type Types,
} from "@cornerstonejs/core";
import { init as toolsInit } from "@cornerstonejs/tools";
import { sliceGeometry, type Mat4, type Vec3 } from "./geometry";
import type { VoxelArray } from "./nifti";

interface Source {
  data: VoxelArray;
  shape: Vec3;
  modality: string;
}

const sources = new Map<string, Source>();
let initialised = false;

export async function initCornerstone(): Promise<void> {
  if (initialised) return;
  initialised = true;
  await coreInit();
  toolsInit();
  imageLoader.registerImageLoader("studio", loadStudioImage as unknown as Types.ImageLoaderFn);
  // Statistics and a few tools ask for modality and PET series metadata by image id.
  metaData.addProvider((type: string, imageId: string) => {
    if (!imageId?.startsWith("studio:")) return undefined;
    const key = imageId.slice(7).split("?")[0];
    const source = sources.get(key);
    if (!source) return undefined;
    if (type === "generalSeriesModule") return { modality: source.modality, seriesInstanceUID: `studio.${key}` };
    if (type === "petSeriesModule" && source.modality === "PT") return { correctedImage: ["ATTN", "DECY"], units: "SUV" };
    return undefined;
  }, 10000);
}

function loadStudioImage(imageId: string): { promise: Promise<unknown>; cancelFn: undefined; decache: () => void } {
  const [key, frame] = imageId.slice(7).split("?frame=");
  const source = sources.get(key);
  const promise = (async () => {
    if (!source) throw new Error(`no in-memory volume for ${imageId}`);
    const slice = parseInt(frame, 10);
    const [, rows, columns] = source.shape;
    const n = rows * columns;
    const Ctor = source.data.constructor as new (n: number) => VoxelArray;
    const pixelData = new Ctor(n);
    pixelData.set(source.data.subarray(slice * n, (slice + 1) * n) as never);
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = pixelData[i];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const plane = metaData.get(Enums.MetadataModules.IMAGE_PLANE, imageId);
    const voxelManager = utilities.VoxelManager.createImageVoxelManager({
      width: columns,
      height: rows,
      numberOfComponents: 1,
      scalarData: pixelData as Types.PixelDataTypedArray,
    });
    return {
      imageId,
      dataType: pixelData.constructor.name,
      columnPixelSpacing: plane.columnPixelSpacing,
      rowPixelSpacing: plane.rowPixelSpacing,
      columns,
      rows,
      width: columns,
      height: rows,
      invert: false,
      sizeInBytes: n * pixelData.BYTES_PER_ELEMENT,
      getPixelData: () => voxelManager.getScalarData(),
      getCanvas: undefined,
      numberOfComponents: 1,
      color: false,
      rgba: false,
      slope: 1,
      intercept: 0,
      windowCenter: (max + min) / 2,
      windowWidth: Math.max(1e-3, max - min),
      voxelManager,
      minPixelValue: min,
      maxPixelValue: max,
    };
  })();
  return { promise, cancelFn: undefined, decache: () => {} };
}

/** Register an in-memory [slice,row,col] array and its per-slice metadata; returns its image ids. */
export function registerVolumeImages(key: string, data: VoxelArray, shape: Vec3, affine: Mat4, modality: string): string[] {
  sources.set(key, { data, shape, modality });
  const g = sliceGeometry(affine, shape);
  const bits = data.BYTES_PER_ELEMENT * 8;
  const imageIds: string[] = [];
  for (let s = 0; s < shape[0]; s++) {
    const imageId = `studio:${key}?frame=${s}`;
    imageIds.push(imageId);
    utilities.genericMetadataProvider.add(imageId, {
      type: "imagePlaneModule",
      metadata: {
        frameOfReferenceUID: "1.2.826.0.1.3680043.10.543.studio",
        rows: g.rows,
        columns: g.columns,
        imageOrientationPatient: [...g.rowCosines, ...g.columnCosines],
        rowCosines: g.rowCosines,
        columnCosines: g.columnCosines,
        imagePositionPatient: g.positions[s],
        sliceThickness: g.sliceSpacing,
        sliceLocation: g.positions[s][2],
        pixelSpacing: g.pixelSpacing,
        rowPixelSpacing: g.pixelSpacing[0],
        columnPixelSpacing: g.pixelSpacing[1],
      },
    });
    utilities.genericMetadataProvider.add(imageId, {
      type: "imagePixelModule",
      metadata: {
        samplesPerPixel: 1,
        photometricInterpretation: "MONOCHROME2",
        rows: g.rows,
        columns: g.columns,
        bitsAllocated: bits,
        bitsStored: bits,
        highBit: bits - 1,
        pixelRepresentation: data instanceof Uint8Array || data instanceof Uint16Array ? 0 : 1,
      },
    });
    utilities.genericMetadataProvider.add(imageId, {
      type: "generalImageModule",
      metadata: { instanceNumber: s + 1 },
    });
  }
  return imageIds;
}

export async function createVolume(volumeId: string, imageIds: string[]): Promise<Types.IImageVolume> {
  const volume = (await volumeLoader.createAndCacheVolume(volumeId, { imageIds })) as Types.IImageVolume & {
    load?: (cb?: () => void) => void;
  };
  await new Promise<void>((resolve) => {
    if (!volume.load) return resolve();
    volume.load(() => resolve());
  });
  return volume;
}

export function removeVolume(volumeId: string, key: string): void {
  try {
    cache.removeVolumeLoadObject(volumeId);
  } catch {
    /* not cached */
  }
  sources.delete(key);
}

/**
 * Forget every volume, image and in-memory source of the viewer that is being closed. Only one viewer
 * is open at a time; without this each opened scan (PET, CT, two labelmaps) stayed in Cornerstone's
 * cache for the rest of the page's life.
 */
export function releaseAll(): void {
  try {
    cache.purgeCache();
  } catch {
    /* nothing cached */
  }
  sources.clear();
  utilities.genericMetadataProvider.clear();
}

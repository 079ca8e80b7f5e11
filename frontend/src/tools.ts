/**
 * Cornerstone tools of the viewer: pan, zoom, slice scroll and window/level on every view, and the brush
 * and eraser on the slice views; which one the left button drives follows the viewer's mode.
 */
import {
  BrushTool,
  Enums as ToolEnums,
  PanTool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  utilities as toolUtilities,
} from "@cornerstonejs/tools";
import { MIP, VIEWPORTS } from "./viewports";

export type Mode = "prompt" | "brush" | "eraser" | "navigate";

export class Tools {
  brushSize = 8;

  constructor(private groupId: string, private mipGroupId: string) {}

  setup(engineId: string): void {
    for (const tool of [PanTool, ZoomTool, StackScrollTool, WindowLevelTool, BrushTool]) {
      try {
        addTool(tool);
      } catch {
        /* already added */
      }
    }
    const group = ToolGroupManager.createToolGroup(this.groupId)!;
    group.addTool(PanTool.toolName);
    group.addTool(ZoomTool.toolName);
    group.addTool(StackScrollTool.toolName);
    group.addTool(WindowLevelTool.toolName);
    group.addToolInstance("StudioBrush", BrushTool.toolName, { activeStrategy: "FILL_INSIDE_CIRCLE" });
    group.addToolInstance("StudioEraser", BrushTool.toolName, { activeStrategy: "ERASE_INSIDE_CIRCLE" });
    for (const id of VIEWPORTS) group.addViewport(id, engineId);
    const mip = ToolGroupManager.createToolGroup(this.mipGroupId)!;
    mip.addTool(PanTool.toolName);
    mip.addTool(ZoomTool.toolName);
    mip.addViewport(MIP, engineId);
    const { MouseBindings, KeyboardBindings } = ToolEnums;
    for (const g of [group, mip]) {
      g.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      g.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Ctrl }] });
    }
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Alt }] });
    // The brush starts at the size the [ ] keys step from (Cornerstone's own default is 25 mm).
    toolUtilities.segmentation.setBrushSizeForToolGroup(this.groupId, this.brushSize);
  }

  /** The left button paints in brush mode, erases in eraser mode, and is the viewer's own otherwise. */
  setMode(mode: Mode): void {
    const group = ToolGroupManager.getToolGroup(this.groupId);
    if (!group) return;
    const primary = [{ mouseButton: ToolEnums.MouseBindings.Primary }];
    group.setToolPassive("StudioBrush");
    group.setToolPassive("StudioEraser");
    if (mode === "brush") group.setToolActive("StudioBrush", { bindings: primary });
    if (mode === "eraser") group.setToolActive("StudioEraser", { bindings: primary });
  }

  /** Step the brush size (mm); returns the new size. */
  stepBrush(delta: number): number {
    this.brushSize = Math.max(1, Math.min(50, this.brushSize + delta));
    toolUtilities.segmentation.setBrushSizeForToolGroup(this.groupId, this.brushSize);
    return this.brushSize;
  }

  dispose(): void {
    try { ToolGroupManager.destroyToolGroup(this.groupId); } catch { /* */ }
    try { ToolGroupManager.destroyToolGroup(this.mipGroupId); } catch { /* */ }
  }
}

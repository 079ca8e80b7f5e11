"""Segmentation engines behind one interface (:mod:`worker.engines.base`).

Importing this package stays light: no PyTorch until a SegAnyPET engine is built via :func:`get_engine`.
"""

from worker.engines.base import Box, Engine, Point, PromptError, Prompts, SegmentationResult
from worker.engines.registry import EngineUnavailableError, available_engines, get_engine

__all__ = [
    "Box",
    "Engine",
    "EngineUnavailableError",
    "Point",
    "PromptError",
    "Prompts",
    "SegmentationResult",
    "available_engines",
    "get_engine",
]

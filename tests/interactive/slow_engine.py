"""Imported only by test workers (celery --include): makes the threshold engine take 5 s per prompt,
so that a test can kill the worker while a prompt is running."""

import time

from worker.engines.classical import ClassicalPETEngine

_original = ClassicalPETEngine.segment


def _slow(self, *args, **kwargs):
    time.sleep(5)
    return _original(self, *args, **kwargs)


ClassicalPETEngine.segment = _slow

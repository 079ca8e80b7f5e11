"""Segmentation engines and Celery tasks.

Everything under ``worker.engines`` is plain NumPy/PyTorch and must not import Django,
so it can be tested and benchmarked on its own.
"""

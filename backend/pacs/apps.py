from django.apps import AppConfig


class PacsConfig(AppConfig):
    name = "backend.pacs"
    label = "pacs"
    verbose_name = "PACS (DICOMweb) sources, imports and SEG pushes"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the approval hook; Celery finds tasks.py itself)

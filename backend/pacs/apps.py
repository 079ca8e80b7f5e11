from django.apps import AppConfig


class PacsConfig(AppConfig):
    name = "backend.pacs"
    label = "pacs"
    verbose_name = "PACS (DICOMweb) sources, imports and SEG pushes"

    def ready(self) -> None:
        from . import signals, tasks  # noqa: F401  (connects the approval hook, registers the Celery tasks)

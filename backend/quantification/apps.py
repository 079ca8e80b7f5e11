from django.apps import AppConfig


class QuantificationConfig(AppConfig):
    name = "backend.quantification"
    label = "quantification"
    verbose_name = "Quantification (SUV, MTV, TLG)"

    def ready(self) -> None:
        from backend.annotations.signals import version_saved

        from .services import schedule_statistics

        def on_version_saved(sender, version_id: int, **kwargs) -> None:
            schedule_statistics(version_id)

        version_saved.connect(on_version_saved, weak=False, dispatch_uid="quantification.statistics")

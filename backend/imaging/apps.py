from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "backend.imaging"
    label = "imaging"

    def ready(self) -> None:
        from .integrity import connect

        connect()

from django.apps import AppConfig


class InteractiveConfig(AppConfig):
    name = "backend.interactive"
    label = "interactive"

    def ready(self) -> None:
        from .engines import configure_engines

        configure_engines()

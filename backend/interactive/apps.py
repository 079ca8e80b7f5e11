from django.apps import AppConfig


class InteractiveConfig(AppConfig):
    name = "backend.interactive"
    label = "interactive"

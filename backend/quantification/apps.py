from django.apps import AppConfig


class QuantificationConfig(AppConfig):
    name = "backend.quantification"
    label = "quantification"
    verbose_name = "Quantification (SUV, MTV, TLG)"

from django.contrib import admin

from .models import Scan, Series


class SeriesInline(admin.TabularInline):
    model = Series
    extra = 0
    fields = ["modality", "description", "units", "shape", "spacing", "volume_file"]
    readonly_fields = fields


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "tracer", "status", "created_at"]
    list_filter = ["status", "project", "tracer"]
    search_fields = ["name", "patient_id"]
    inlines = [SeriesInline]


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ["scan", "modality", "units", "manufacturer"]
    list_filter = ["modality", "units"]

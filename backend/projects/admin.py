from django.contrib import admin

from .models import Label, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "default_engine", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, LabelInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "is_manager", "is_annotator", "is_reviewer"]
    list_filter = ["project", "is_manager", "is_annotator", "is_reviewer"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "value", "kind", "color"]
    list_filter = ["project", "kind"]

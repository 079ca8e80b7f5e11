from django.db import migrations, models

import backend.projects.models


def allow_current_default(apps, schema_editor):
    """Existing projects allow their current default engine (and threshold, the new field's default)."""
    Project = apps.get_model("projects", "Project")
    for project in Project.objects.all():
        project.allowed_engines = list(dict.fromkeys(["threshold", project.default_engine]))
        project.save(update_fields=["allowed_engines"])


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0002_project_blinded_double_read_and_more'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='allowed_engines',
            field=models.JSONField(blank=True, default=backend.projects.models.default_allowed_engines),
        ),
        migrations.RunPython(allow_current_default, migrations.RunPython.noop),
    ]

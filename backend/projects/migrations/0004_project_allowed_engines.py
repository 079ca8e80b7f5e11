from django.db import migrations, models

import backend.projects.models


def allow_current_default(apps, schema_editor):
    """Existing projects keep choosing any engine (as before the field) and surely their default one."""
    Project = apps.get_model("projects", "Project")
    everything = backend.projects.models.default_allowed_engines()
    for project in Project.objects.all():
        project.allowed_engines = list(dict.fromkeys([*everything, project.default_engine]))
        project.save(update_fields=["allowed_engines"])


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0003_label_archived_when_in_use'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='allowed_engines',
            field=models.JSONField(blank=True, default=backend.projects.models.default_allowed_engines),
        ),
        migrations.RunPython(allow_current_default, migrations.RunPython.noop),
    ]

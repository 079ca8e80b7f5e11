from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from .models import Label, Membership, Project, Role


class ProjectSerializer(serializers.ModelSerializer):
    my_roles = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "default_engine", "allowed_engines", "required_approvals",
                  "blinded_double_read", "created_at", "my_roles"]
        read_only_fields = ["id", "created_at", "my_roles"]

    def validate(self, attrs: dict) -> dict:
        from worker.engines.registry import engine_names  # torch-free listing

        known = engine_names()
        default = attrs.get("default_engine", self.instance.default_engine if self.instance else "threshold")
        allowed = attrs.get("allowed_engines", self.instance.allowed_engines if self.instance else [default])
        if not isinstance(allowed, list) or not all(isinstance(x, str) for x in allowed):
            raise serializers.ValidationError({"allowed_engines": "A list of engine names is expected."})
        unknown = [x for x in [default, *allowed] if x not in known]
        if unknown:
            raise serializers.ValidationError(
                {"allowed_engines": f"Unknown engine(s) {', '.join(sorted(set(unknown)))}; known: {', '.join(known)}."})
        if default not in allowed:
            if "allowed_engines" in attrs:
                raise serializers.ValidationError(
                    {"default_engine": f"The default engine {default!r} must be one of the allowed engines."})
            allowed = [*allowed, default]
        attrs["allowed_engines"] = list(dict.fromkeys(allowed))
        return attrs

    def get_my_roles(self, project: Project) -> list[str]:
        user = self.context["request"].user
        membership = next((m for m in project.memberships.all() if m.user_id == user.id), None)
        return membership.roles if membership else []


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=Role.choices), allow_empty=False, max_length=3
    )

    class Meta:
        model = Membership
        fields = ["id", "username", "roles", "joined_at"]
        read_only_fields = ["id", "joined_at"]

    def to_representation(self, instance: Membership) -> dict:
        data = super().to_representation(instance)
        data["roles"] = instance.roles
        return data

    def validate_username(self, user):
        project = self.context["project"]
        existing = Membership.objects.filter(project=project, user=user)
        if self.instance is not None:
            existing = existing.exclude(pk=self.instance.pk)
        if existing.exists():
            raise serializers.ValidationError("This user is already a member of the project.")
        return user

    def create(self, validated_data: dict) -> Membership:
        roles = validated_data.pop("roles")
        membership = Membership(project=self.context["project"], **validated_data)
        membership.set_roles(roles)
        membership.save()
        return membership

    def update(self, instance: Membership, validated_data: dict) -> Membership:
        if "roles" in validated_data:
            instance.set_roles(validated_data.pop("roles"))
        if "user" in validated_data:
            instance.user = validated_data["user"]
        instance.save()
        return instance


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "value", "color", "kind", "archived"]
        read_only_fields = ["id"]

    def validate(self, attrs: dict) -> dict:
        project = self.context["project"]
        for field in ("name", "value"):
            if field not in attrs:
                continue
            clash = Label.objects.filter(project=project, **{field: attrs[field]})
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError({field: f"Another label of this project has this {field}."})
        return attrs

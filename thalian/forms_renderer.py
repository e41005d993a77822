"""One layout for every form field (label, field, help text, errors, each in its own wrapper), so settings,
wizard and account forms look and read the same."""

from django.forms.renderers import TemplatesSetting


class FormRenderer(TemplatesSetting):
    field_template_name = "forms/field.html"

from django import forms

from .csv_import import KINDS
from .services import MODES


class ImportForm(forms.Form):
    kind = forms.ChoiceField(choices=[(k, k.capitalize()) for k in KINDS], label="What the file contains")
    mode = forms.ChoiceField(
        choices=[(m, m.capitalize()) for m in MODES],
        initial="merge",
        label="Mode",
        help_text="Replace (entitlements only) marks access of the applications in the file that the file "
        "does not list as removed.",
    )
    file = forms.FileField(label="CSV file (UTF-8)")


class ScimConnectorForm(forms.Form):
    base_url = forms.URLField(label="SCIM base URL", max_length=500, assume_scheme="https")
    token = forms.CharField(
        label="Bearer token",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current token.",
    )
    enabled = forms.BooleanField(label="Sync on a schedule", required=False, initial=True)
    sync_interval_hours = forms.IntegerField(label="Every (hours)", min_value=1, max_value=720, initial=24)

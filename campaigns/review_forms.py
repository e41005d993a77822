"""Forms of the review pages: one decision, a bulk decision on checked items or on every item in view."""

from __future__ import annotations

from django import forms

from .decisions import MAX_COMMENT_LENGTH, MAX_REASON_LENGTH
from .models import Decision

MAX_SELECTED = 1000


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=Decision.choices, error_messages={"required": "Choose a decision."})
    reason = forms.CharField(required=False, max_length=MAX_REASON_LENGTH)
    comment = forms.CharField(required=False, max_length=MAX_COMMENT_LENGTH, widget=forms.Textarea)
    # Exceptions only; empty means the organization's default length.
    expires_on = forms.DateField(required=False, error_messages={"invalid": "Enter the expiry date as YYYY-MM-DD."})


class BulkDecisionForm(DecisionForm):
    MODE_SELECTED = "selected"
    MODE_ALL = "all"

    mode = forms.ChoiceField(choices=[(MODE_SELECTED, "Selected items"), (MODE_ALL, "All items in view")])
    item_ids = forms.TypedMultipleChoiceField(coerce=int, required=False)
    expected = forms.IntegerField(required=False, min_value=0)
    # An approval leaves out items recommended for revoke unless the reviewer includes them explicitly.
    include_recommended_revoke = forms.BooleanField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Checked ids are validated against the member's items by the selector, not against a choice list.
        self.fields["item_ids"].valid_value = lambda value: True

    def clean_item_ids(self):
        ids = self.cleaned_data["item_ids"]
        if len(ids) > MAX_SELECTED:
            raise forms.ValidationError(
                f"{len(ids)} items are checked; at most {MAX_SELECTED} can be decided as a selection. "
                "Use a filter and decide all items in view instead."
            )
        return ids

    def clean(self):
        data = super().clean()
        if data.get("mode") == self.MODE_SELECTED and not data.get("item_ids"):
            raise forms.ValidationError("No items are checked: tick the items to decide first.")
        if data.get("mode") == self.MODE_ALL and data.get("expected") is None:
            raise forms.ValidationError("Confirm the number of items first.")
        return data


class DelegationForm(forms.Form):
    """A standing delegation from My settings → Delegation (validated further by ``delegation_create``)."""

    delegate = forms.EmailField(max_length=254, error_messages={
        "required": "delegate: give the e-mail of the member who reviews in your place.",
        "invalid": "delegate: enter a valid e-mail address."})
    starts_on = forms.DateField(error_messages={"required": "starts_on: choose the first day.",
                                                "invalid": "starts_on: enter the date as YYYY-MM-DD."})
    ends_on = forms.DateField(required=False, error_messages={"invalid": "ends_on: enter the date as YYYY-MM-DD."})
    move_open_items = forms.BooleanField(required=False)

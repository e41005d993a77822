from __future__ import annotations

from django import forms

from .models import RequestStatus, RequestType, StageKind


class RequestForm(forms.Form):
    type = forms.ChoiceField(label="Request", choices=[(RequestType.GRANT, "Grant access"),
                                                         (RequestType.REVOKE, "Revoke access")])
    identity = forms.CharField(label="For (e-mail)", required=False, max_length=254,
                               help_text="Leave empty to request for yourself.")
    application = forms.CharField(label="Application", max_length=200)
    role = forms.CharField(label="Role or entitlement", max_length=255)
    reason = forms.CharField(label="Reason", widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
    ends_at = forms.DateTimeField(label="Ends at (temporary access)", required=False,
                                  widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                  help_text="Leave empty for permanent access.")

    def __init__(self, *args, applications: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["application"].widget.attrs["list"] = "application-names"
        self.application_names = applications or []


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    reason = forms.CharField(label="Reason (required to deny)", required=False, max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2}))


class ReassignForm(forms.Form):
    to = forms.CharField(label="Move the current stage to (member e-mail)", max_length=254)
    reason = forms.CharField(label="Reason", max_length=500)


STATUS_FILTER = [("", "Any status"), *RequestStatus.choices]


class PolicyForm(forms.Form):
    application = forms.CharField(label="Application (empty: the organization's policy)", required=False,
                                  max_length=200)
    stage_1 = forms.ChoiceField(label="Stage 1", choices=StageKind.choices)
    stage_1_members = forms.CharField(label="Stage 1 members (named members only)", required=False)
    stage_2 = forms.ChoiceField(label="Stage 2", choices=[("", "None"), *StageKind.choices], required=False)
    stage_2_members = forms.CharField(label="Stage 2 members", required=False)
    stage_3 = forms.ChoiceField(label="Stage 3", choices=[("", "None"), *StageKind.choices], required=False)
    stage_3_members = forms.CharField(label="Stage 3 members", required=False)
    fallback = forms.CharField(label="Fallback approver (member e-mail)", required=False, max_length=254,
                               help_text="Approves a stage nobody else may approve (no manager, self-approval).")
    remind_every_days = forms.IntegerField(label="Remind approvers every (days, 0: never)", min_value=0,
                                           max_value=365)
    escalate_after_days = forms.IntegerField(label="Escalate to admins after (days, 0: never)", min_value=0,
                                             max_value=365)
    expire_after_days = forms.IntegerField(label="Undecided requests expire after (days)", min_value=1,
                                           max_value=365)

    def changes(self) -> dict:
        data = self.cleaned_data
        stages = []
        for n in (1, 2, 3):
            kind = data.get(f"stage_{n}")
            if kind:
                stage = {"kind": kind}
                if kind == StageKind.MEMBERS:
                    stage["members"] = data.get(f"stage_{n}_members") or ""
                stages.append(stage)
        return {"stages": stages, "fallback": data.get("fallback") or "",
                "remind_every_days": data["remind_every_days"], "escalate_after_days": data["escalate_after_days"],
                "expire_after_days": data["expire_after_days"]}


class LikeForm(forms.Form):
    identity = forms.CharField(label="For (e-mail)", required=False, max_length=254,
                               help_text="Leave empty for yourself.")
    like_kind = forms.ChoiceField(label="Like", choices=[("identity", "Another person (e-mail)"),
                                                          ("title", "A job title"), ("department", "A department")])
    like_value = forms.CharField(label="Person, job title or department", max_length=254)
    include_revokes = forms.BooleanField(label="Also propose revoking what they do not have", required=False)

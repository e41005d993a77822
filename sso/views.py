"""Sign-in (e-mail first, routed to single sign-on), SSO protocol endpoints, two-factor steps and the
organization's single sign-on settings page."""

from __future__ import annotations

import time
from collections.abc import Mapping

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from thalian import tenancy
from thalian.access import org_view
from thalian.models import Membership, Organization
from thalian.permissions import Perm

from . import mfa, oidc, saml, selectors, services
from .forms import CodeForm, DomainForm, ProviderForm, SsoLoginForm, SsoSettingsForm
from .http import FetchError
from .models import IdentityProvider, Protocol, VerifiedDomain

PASSWORD_BACKEND = "thalian.auth.ThrottledEmailBackend"
PENDING_KEY = "mfa_pending"
PENDING_SECONDS = 600
MAX_CODE_FAILURES = 5
SAML_REQUEST_SECONDS = 600


def _error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(str(m) for msgs in exc.message_dict.values() for m in msgs)
    return " ".join(exc.messages)


def _safe_next(request, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return url
    return ""


def _sso_start_url(provider: IdentityProvider, *, next_url: str, email: str = "") -> str:
    if provider.protocol == Protocol.OIDC:
        base = reverse("sso_oidc_start", args=[provider.public_id])
    else:
        base = reverse("sso_saml_start", args=[provider.organization.slug, provider.public_id])
    return f"{base}?{urlencode({k: v for k, v in {'next': next_url, 'login_hint': email}.items() if v})}"


def _sso_error(request, message: str, *, status: int = 400):
    return render(request, "sso/error.html", {"message": message}, status=status)


# Sign-in -------------------------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """E-mail first: an address of a verified domain with an identity provider goes to that provider; other
    addresses sign in with their password (then a second factor when they have one)."""

    form_class = SsoLoginForm
    template_name = "registration/login.html"

    def post(self, request, *args, **kwargs):
        email = (request.POST.get("username") or "").strip().lower()
        wants_sso = "sso" in request.POST
        if email and (wants_sso or not request.POST.get("password")):
            providers = selectors.sso_providers_for_email(email)
            next_url = _safe_next(request, request.POST.get("next"))
            if len(providers) == 1:
                # A page that moves on by itself rather than a redirect: the sign-in form's CSP (form-action
                # 'self') forbids a form submission that redirects to another origin.
                url = _sso_start_url(providers[0], next_url=next_url, email=email)
                return render(request, "sso/continue.html", {"provider": providers[0], "url": url})
            if providers:
                choices = [(p, _sso_start_url(p, next_url=next_url, email=email)) for p in providers]
                return render(request, "sso/choose_provider.html", {"choices": choices, "email": email})
            # A fresh form: nothing of this step is a failed password attempt.
            form = self.form_class(request, initial={"username": email})
            if wants_sso:
                step = {"sso_message": f"Single sign-on is not set up for {selectors.email_domain(email)}: "
                                       "sign in with your password."}
            else:
                step = {"password_message": "Enter your password."}
            return self.render_to_response(self.get_context_data(form=form, password_step=True, **step))
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        user = form.get_user()
        device = selectors.mfa_device_for(user)
        required = bool(selectors.mfa_required_by(user))
        if device is None and not required:
            return super().form_valid(form)
        self.request.session.cycle_key()
        self.request.session[PENDING_KEY] = {
            "user": user.pk, "backend": PASSWORD_BACKEND, "next": self.get_success_url(), "at": time.time(),
            "failures": 0,
        }
        return redirect("mfa_challenge" if device is not None else "mfa_setup")


def _pending(request):
    data = request.session.get(PENDING_KEY)
    if not data or time.time() - data.get("at", 0) > PENDING_SECONDS:
        request.session.pop(PENDING_KEY, None)
        return None, None
    user = get_user_model().objects.filter(pk=data["user"], is_active=True).first()
    return user, data


def _finish_pending(request, user, data):
    request.session.pop(PENDING_KEY, None)
    auth_login(request, user, backend=data["backend"])
    return data.get("next") or reverse(settings.LOGIN_REDIRECT_URL)


def mfa_challenge(request):
    """Second step of a password sign-in: an authenticator code or a recovery code."""
    user, data = _pending(request)
    if user is None:
        messages.error(request, "Sign in again: the sign-in expired.")
        return redirect("login")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid() and mfa.mfa_locked_out(user):
        request.session.pop(PENDING_KEY, None)
        messages.error(request, "Too many wrong codes. Try again in a few minutes.")
        return redirect("login")
    if request.method == "POST" and form.is_valid():
        used = mfa.mfa_verify(user=user, code=form.cleaned_data["code"])
        if used:
            mfa.mfa_failures_clear(user)
            next_url = _finish_pending(request, user, data)
            if used == "recovery_code":
                left = mfa.recovery_codes_left(user)
                messages.warning(request, f"You used a recovery code; {left} left. Make new ones under Two-factor sign-in.")
            return redirect(next_url)
        mfa.mfa_failure_record(user)
        data["failures"] = data.get("failures", 0) + 1
        if data["failures"] >= MAX_CODE_FAILURES:
            request.session.pop(PENDING_KEY, None)
            messages.error(request, "Too many wrong codes. Sign in again.")
            return redirect("login")
        request.session[PENDING_KEY] = data
        form.add_error("code", "That code is not valid. Codes of the authenticator app are accepted once.")
        status = 400
    elif request.method == "POST":
        status = 400
    return render(request, "sso/mfa_challenge.html", {"form": form, "email": user.email}, status=status)


def mfa_setup(request):
    """Two-factor sign-in of the signed-in person (or of a password sign-in that must enrol first)."""
    pending_user, data = (None, None) if request.user.is_authenticated else _pending(request)
    user = request.user if request.user.is_authenticated else pending_user
    if user is None:
        return redirect(f"{reverse('login')}?next={reverse('mfa_setup')}")
    device = selectors.mfa_device_for(user)
    form = CodeForm(request.POST or None)
    context = {"device": device, "form": form, "pending": pending_user is not None, "recovery_codes": None}
    status = 200
    action = request.POST.get("action") if request.method == "POST" else None
    try:
        if action == "start":
            new = mfa.mfa_setup_start(user=user)
            request.session["mfa_setup"] = new.pk
            form = CodeForm()
        elif action in ("confirm", "disable", "regenerate"):
            if not form.is_valid():
                raise ValidationError("Enter a code.")
            code = form.cleaned_data["code"]
            if action == "confirm":
                context["recovery_codes"] = mfa.mfa_setup_confirm(user=user, code=code, request=request)
                request.session.pop("mfa_setup", None)
                if pending_user is not None:
                    context["continue_url"] = _finish_pending(request, pending_user, data)
                messages.success(request, "Two-factor sign-in is on.")
            elif action == "disable":
                mfa.mfa_disable(user=user, code=code, request=request)
                messages.success(request, "Two-factor sign-in is off.")
                return redirect("mfa_setup")
            else:
                context["recovery_codes"] = mfa.recovery_codes_regenerate(user=user, code=code, request=request)
            form = CodeForm()
    except ValidationError as exc:
        form.add_error(None, _error_text(exc))
        status = 400
    context["form"] = form
    context["device"] = selectors.mfa_device_for(user)
    enrolling = mfa.MfaDevice.objects.filter(user=user, confirmed_at__isnull=True).first()
    if enrolling is not None and context["device"] is None and context["recovery_codes"] is None:
        context["enrolling"] = enrolling
        context["qr"] = mfa.qr_svg_data_uri(enrolling)
        context["otpauth"] = mfa.provisioning_uri(enrolling)
    if context["device"] is not None:
        context["codes_left"] = mfa.recovery_codes_left(user)
    context["required_by"] = selectors.mfa_required_by(user)
    response = render(request, "sso/mfa_setup.html", context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _complete_sso_login(request, provider: IdentityProvider, *, subject: str, email: str, groups, next_url: str):
    try:
        user = services.sso_login(provider=provider, subject=subject, email=email, groups=groups, request=request)
    except services.SsoLoginRefused as exc:
        return _sso_error(request, str(exc), status=403)
    auth_login(request, user, backend=PASSWORD_BACKEND)
    request.session["last_org"] = provider.organization.slug
    return redirect(next_url or reverse("org_dashboard", args=[provider.organization.slug]))


# OpenID Connect ------------------------------------------------------------------------------------------


def _enabled_provider(public_id, protocol: str) -> IdentityProvider:
    with tenancy.scopes_disabled():
        provider = (
            IdentityProvider.objects.select_related("organization")
            .filter(public_id=public_id, protocol=protocol, enabled=True)
            .first()
        )
    if provider is None:
        raise Http404("No such identity provider")
    return provider


@require_GET
def oidc_start(request, public_id):
    provider = _enabled_provider(public_id, Protocol.OIDC)
    try:
        start = oidc.authorization_start(provider, login_hint=request.GET.get("login_hint", "")[:254])
    except FetchError as exc:
        return _sso_error(request, f"{provider.name} cannot be reached for sign-in: {exc}", status=502)
    pending = request.session.get("sso_oidc", {})
    # Several tabs may sign in at once; keep the five most recent attempts.
    pending = dict(list(pending.items())[-4:])
    pending[start.state] = {
        "provider": str(provider.public_id), "nonce": start.nonce, "verifier": start.code_verifier,
        "next": _safe_next(request, request.GET.get("next")), "at": time.time(),
    }
    request.session["sso_oidc"] = pending
    return HttpResponseRedirect(start.url)


@require_GET
def oidc_callback(request):
    pending = request.session.get("sso_oidc", {})
    attempt = pending.pop(request.GET.get("state", ""), None)
    request.session["sso_oidc"] = pending
    if attempt is None or time.time() - attempt["at"] > PENDING_SECONDS:
        return _sso_error(request, "This sign-in expired or was already used. Start again from the sign-in page.")
    provider = _enabled_provider(attempt["provider"], Protocol.OIDC)
    if request.GET.get("error"):
        reason = request.GET.get("error_description") or request.GET["error"]
        services.sso_login_failed(organization=provider.organization, provider=provider, reason=reason[:300], request=request)
        return _sso_error(request, f"{provider.name} did not sign you in: {reason[:300]}", status=403)
    try:
        claims = oidc.authorization_finish(
            provider, code=request.GET.get("code", ""), code_verifier=attempt["verifier"], nonce=attempt["nonce"]
        )
    except (oidc.OidcError, FetchError) as exc:
        services.sso_login_failed(organization=provider.organization, provider=provider, reason=str(exc), request=request)
        return _sso_error(request, f"Sign-in through {provider.name} was refused: {exc}.", status=403)
    if claims.get("email_verified") is False:
        services.sso_login_failed(organization=provider.organization, provider=provider, reason="e-mail not verified", request=request)
        return _sso_error(request, f"{provider.name} has not verified the e-mail address {claims.get('email')}.", status=403)
    groups = claims.get(provider.groups_claim) if provider.groups_claim else None
    return _complete_sso_login(
        request, provider, subject=str(claims["sub"]), email=str(claims.get("email") or ""), groups=groups,
        next_url=attempt["next"],
    )


# SAML ----------------------------------------------------------------------------------------------------


def _organization(slug: str) -> Organization:
    return get_object_or_404(Organization, slug=slug)


def _saml_providers(organization: Organization) -> list[IdentityProvider]:
    with tenancy.scope(organization):
        return list(IdentityProvider.objects.select_related("organization").filter(protocol=Protocol.SAML, enabled=True))


@require_GET
def saml_metadata(request, org_slug: str):
    organization = _organization(org_slug)
    return HttpResponse(saml.sp_metadata(organization), content_type="application/samlmetadata+xml")


@require_GET
def saml_start(request, org_slug: str, public_id):
    provider = _enabled_provider(public_id, Protocol.SAML)
    if provider.organization.slug != org_slug:
        raise Http404("No such identity provider")
    request_id, location = saml.authn_request(provider.organization, provider, relay_state=_safe_next(request, request.GET.get("next")))
    # The response comes back as a cross-site POST, which carries no Lax session cookie: the request id is
    # remembered server-side instead.
    cache.set(f"sso:saml-request:{request_id}", str(provider.public_id), timeout=SAML_REQUEST_SECONDS)
    return HttpResponseRedirect(location)


class _OutstandingRequests(Mapping):
    """pysaml2's `outstanding` mapping, answered from the cache: request id -> provider it was sent to."""

    def __getitem__(self, key):
        value = cache.get(f"sso:saml-request:{key}")
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __contains__(self, key):
        return cache.get(f"sso:saml-request:{key}") is not None


@csrf_exempt  # posted by the identity provider; the signed response is the proof
@require_POST
def saml_acs(request, org_slug: str):
    organization = _organization(org_slug)
    providers = _saml_providers(organization)
    try:
        identity = saml.response_parse(
            organization, providers, saml_response=request.POST.get("SAMLResponse", ""), outstanding=_OutstandingRequests()
        )
    except saml.SamlError as exc:
        services.sso_login_failed(organization=organization, reason=str(exc), request=request)
        return _sso_error(request, f"Single sign-on was refused: {exc}.", status=403)
    provider = next((p for p in providers if p.idp_entity_id == identity.issuer), None)
    if provider is None:
        services.sso_login_failed(organization=organization, reason=f"unknown issuer {identity.issuer}", request=request)
        return _sso_error(request, f"Single sign-on was refused: {identity.issuer} is not an identity provider of {organization.name}.", status=403)
    # One use per assertion, also for IdP-initiated responses that answer no request of ours.
    if not cache.add(f"sso:saml-assertion:{identity.assertion_id}", 1, timeout=24 * 3600):
        services.sso_login_failed(organization=organization, provider=provider, reason="assertion replayed", request=request)
        return _sso_error(request, "Single sign-on was refused: this assertion was already used.", status=403)
    groups = identity.attributes.get(provider.groups_claim) if provider.groups_claim else None
    return _complete_sso_login(
        request, provider, subject=identity.subject, email=identity.email, groups=groups,
        next_url=_safe_next(request, request.POST.get("RelayState")),
    )


# Organization settings page ------------------------------------------------------------------------------


def _get_provider(request, public_id) -> IdentityProvider:
    """Access helper: an identity provider of the current organization, 404 for anything else."""
    return get_object_or_404(IdentityProvider.objects.all(), public_id=public_id)


def _get_domain(request, pk: int) -> VerifiedDomain:
    return get_object_or_404(VerifiedDomain.objects.all(), pk=pk)


def _settings_initial(organization) -> dict:
    current = selectors.sso_settings_for(organization)
    return {
        "enforce_sso": current.enforce_sso, "jit_enabled": current.jit_enabled,
        "jit_default_role": current.jit_default_role, "break_glass_emails": "\n".join(current.break_glass_emails),
        "require_mfa_for_admins": current.require_mfa_for_admins,
    }


def _sso_page(request, *, settings_form=None, domain_form=None, test_result=None, status=200):
    organization = request.organization
    return render(
        request,
        "sso/settings.html",
        {
            "settings_form": settings_form or SsoSettingsForm(initial=_settings_initial(organization)),
            "domain_form": domain_form or DomainForm(),
            "providers": selectors.providers_for_organization(),
            "domains": selectors.domains_for_organization(),
            "sp": {
                "entity_id": saml.entity_id(organization), "acs_url": saml.acs_url(organization),
                "metadata_url": reverse("sso_saml_metadata", args=[organization.slug]),
                "oidc_callback": oidc.callback_url(),
            },
            "test_result": test_result,
            "mfa_members": selectors.members_with_mfa(organization),
        },
        status=status,
    )


@org_view(Perm.MANAGE_ORGANIZATION)
def sso_settings(request):
    if request.method != "POST":
        return _sso_page(request)
    form = SsoSettingsForm(request.POST)
    if form.is_valid():
        try:
            services.sso_settings_update(actor=request.membership, request=request, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]:
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, "Single sign-on settings saved.")
            return redirect("sso_settings", org_slug=request.organization.slug)
    return _sso_page(request, settings_form=form, status=400)


def _provider_page(request, *, form, provider=None, protocol: str, status=200):
    return render(
        request, "sso/provider_form.html",
        {"form": form, "provider": provider, "protocol": protocol, "protocol_label": Protocol(protocol).label},
        status=status,
    )


def _save_provider(request, *, protocol: str, provider: IdentityProvider | None):
    form = ProviderForm(request.POST, protocol=protocol)
    if form.is_valid():
        data = {**form.cleaned_data, "protocol": protocol}
        try:
            provider = services.provider_save(actor=request.membership, data=data, provider=provider, request=request)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"{provider.name} saved.")
            return redirect("sso_settings", org_slug=request.organization.slug)
    return _provider_page(request, form=form, provider=provider, protocol=protocol, status=400)


@org_view(Perm.MANAGE_ORGANIZATION)
def provider_new(request, protocol: str):
    if protocol not in Protocol.values:
        raise Http404("No such protocol")
    if request.method == "POST":
        return _save_provider(request, protocol=protocol, provider=None)
    return _provider_page(request, form=ProviderForm(protocol=protocol), protocol=protocol)


@org_view(Perm.MANAGE_ORGANIZATION)
def provider_edit(request, public_id):
    provider = _get_provider(request, public_id)
    if request.method == "POST":
        return _save_provider(request, protocol=provider.protocol, provider=provider)
    form = ProviderForm(initial=ProviderForm.initial_for(provider), protocol=provider.protocol)
    return _provider_page(request, form=form, provider=provider, protocol=provider.protocol)


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def provider_test(request, public_id):
    provider = _get_provider(request, public_id)
    ok, lines = services.provider_test(provider=provider)
    return _sso_page(request, test_result={"provider": provider, "ok": ok, "lines": lines})


def _act_and_report(request, action, *, done: str, failed: str):
    """Runs one service call of a settings button; says what happened on the settings page."""
    try:
        action()
    except ValidationError as exc:
        messages.error(request, f"{failed} {_error_text(exc)}".strip())
    else:
        messages.success(request, done)
    return redirect("sso_settings", org_slug=request.organization.slug)


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def provider_delete(request, public_id):
    provider = _get_provider(request, public_id)
    return _act_and_report(
        request, lambda: services.provider_delete(actor=request.membership, provider=provider, request=request),
        done=f"{provider.name} was deleted.", failed="Not deleted:",
    )


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def domain_claim(request):
    form = DomainForm(request.POST)
    if form.is_valid():
        try:
            claim = services.domain_claim(actor=request.membership, domain=form.cleaned_data["domain"], request=request)
        except ValidationError as exc:
            form.add_error("domain", _error_text(exc))
        else:
            messages.success(request, f"{claim.domain} claimed: add the TXT record shown, then press Verify.")
            return redirect("sso_settings", org_slug=request.organization.slug)
    return _sso_page(request, domain_form=form, status=400)


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def domain_verify(request, pk: int):
    domain = _get_domain(request, pk)
    return _act_and_report(
        request, lambda: services.domain_verify(actor=request.membership, domain=domain, request=request),
        done=f"{domain.domain} is verified.", failed=f"{domain.domain} is not verified yet.",
    )


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def domain_delete(request, pk: int):
    domain = _get_domain(request, pk)
    return _act_and_report(
        request, lambda: services.domain_delete(actor=request.membership, domain=domain, request=request),
        done=f"{domain.domain} was removed.", failed="Not removed:",
    )


@require_POST
@org_view(Perm.MANAGE_ORGANIZATION)
def member_mfa_reset(request, pk: int):
    member = get_object_or_404(
        Membership.objects.select_related("user", "organization"), pk=pk, organization=request.organization
    )
    return _act_and_report(
        request, lambda: mfa.mfa_reset(actor=request.membership, membership=member, request=request),
        done=f"Two-factor sign-in of {member.user.email} was reset.", failed="",
    )

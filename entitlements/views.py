"""Inventory pages: imports, applications (with SCIM connector), identities, entitlements."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from thalian.access import org_view, require
from thalian.permissions import Perm

from . import selectors, services
from .csv_import import ImportValidationError
from .forms import ImportForm, ScimConnectorForm
from .models import Application, ScimConnector, SyncRun

PAGE_SIZE = 50


def _get_application(pk: int) -> Application:
    """Applications of the active organization only: any other id answers 404."""
    return selectors.application_for_page(pk)


def _get_sync_run(pk: int) -> SyncRun:
    return get_object_or_404(SyncRun.objects.select_related("triggered_by"), pk=pk)


def _list_page(request, *, template: str, queryset_fn, kind: str, extra: dict | None = None):
    page = selectors.KeysetPage([], None, None)
    total, capped, sort, error = 0, False, "", ""
    try:
        qs = queryset_fn(request.GET)
        sort, field, descending = selectors.sort_parse(request.GET.get("sort"), kind=kind)
        after, before = request.GET.get("after"), request.GET.get("before")
        if field:
            page = selectors.keyset_page_sorted(
                qs, field=field, descending=descending, after=after, before=before, size=PAGE_SIZE
            )
        else:
            page = selectors.keyset_page(qs, after=after, before=before, size=PAGE_SIZE)
        total, capped = selectors.list_total(qs)
    except selectors.FilterError as exc:
        error = str(exc)
    params = request.GET.copy()
    params.pop("after", None)
    params.pop("before", None)
    sort_params = params.copy()
    sort_params.pop("sort", None)
    context = {
        "page": page, "filter_error": error, "query": params.urlencode(), "filters": request.GET,
        "total": total, "total_capped": capped, "sort": sort, "sort_query": sort_params.urlencode(),
        **(extra or {}),
    }
    if request.htmx:
        template = f"{template}#results"
    return render(request, template, context, status=400 if error else 200)


@org_view(Perm.VIEW_INVENTORY)
def entitlement_list(request):
    return _list_page(
        request,
        template="entitlements/entitlements.html",
        queryset_fn=selectors.entitlements_filtered,
        kind="entitlements",
        extra={"choices": selectors.filter_choices()},
    )


@org_view(Perm.VIEW_INVENTORY)
def identity_list(request):
    return _list_page(
        request,
        template="entitlements/identities.html",
        queryset_fn=selectors.identities_filtered,
        kind="identities",
        extra={"choices": selectors.filter_choices()},
    )


@org_view(Perm.VIEW_INVENTORY)
def identity_detail(request, pk: int):
    identity = selectors.identity_for_page(pk)
    return render(
        request,
        "entitlements/identity_detail.html",
        {"identity": identity, "access": selectors.identity_access(identity)},
    )


@org_view(Perm.VIEW_INVENTORY)
def application_list(request):
    return _list_page(
        request, template="entitlements/applications.html", queryset_fn=selectors.applications_filtered,
        kind="applications",
    )


@org_view(Perm.VIEW_INVENTORY)
def application_detail(request, pk: int):
    application = _get_application(pk)
    connector = ScimConnector.objects.filter(application=application).first()
    form = ScimConnectorForm(
        initial={
            "base_url": connector.base_url if connector else "",
            "enabled": connector.enabled if connector else True,
            "sync_interval_hours": connector.sync_interval_hours if connector else 24,
        }
    )
    return _render_application(request, application, connector, form)


def _render_application(request, application, connector, form, status=200):
    return render(
        request,
        "entitlements/application_detail.html",
        {
            "application": application,
            "connector": connector,
            "form": form,
            "summary": selectors.application_summary(application, freshness_days=request.organization.freshness_days),
            "history": selectors.application_sync_history(application),
        },
        status=status,
    )


@require_POST
@org_view(Perm.MANAGE_INVENTORY)
def scim_connector_save(request, pk: int):
    application = _get_application(pk)
    connector = ScimConnector.objects.filter(application=application).first()
    form = ScimConnectorForm(request.POST)
    if form.is_valid():
        try:
            services.scim_connector_save(application=application, actor=request.user, **form.cleaned_data)
        except services.ConnectorError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "SCIM connector saved.")
            return redirect("application_detail", org_slug=request.organization.slug, pk=application.pk)
    return _render_application(request, application, connector, form, status=400)


@require_POST
@org_view(Perm.MANAGE_INVENTORY)
def scim_connector_delete(request, pk: int):
    application = _get_application(pk)
    connector = get_object_or_404(ScimConnector, application=application)
    services.scim_connector_delete(connector=connector, actor=request.user)
    messages.success(request, "SCIM connector removed; the application is fed by file uploads again.")
    return redirect("application_detail", org_slug=request.organization.slug, pk=application.pk)


@require_POST
@org_view(Perm.MANAGE_INVENTORY)
def scim_sync_now(request, pk: int):
    application = _get_application(pk)
    connector = get_object_or_404(ScimConnector, application=application)
    run = services.scim_sync_request(connector=connector, actor=request.user)
    messages.success(request, "Sync queued.")
    return redirect("import_detail", org_slug=request.organization.slug, pk=run.pk)


@require_http_methods(["GET", "POST"])
@org_view(Perm.VIEW_INVENTORY)
def import_list(request):
    form = ImportForm()
    errors = None
    error_total = 0
    status = 200
    if request.method == "POST":
        require(request.membership, Perm.MANAGE_INVENTORY)
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                submission = services.inventory_import_submit(
                    organization=request.organization,
                    kind=form.cleaned_data["kind"],
                    mode=form.cleaned_data["mode"],
                    upload=upload,
                    file_name=upload.name,
                    size=upload.size,
                    actor=request.user,
                )
            except ImportValidationError as exc:
                errors, error_total, status = exc.errors, exc.total, 400
            else:
                run = submission.run
                if submission.queued:
                    messages.info(request, f"{upload.name} is being imported; this page shows the progress.")
                else:
                    messages.success(
                        request,
                        f"Imported {upload.name}: {run.created} created, {run.updated} updated, {run.removed} removed, "
                        f"{run.unchanged} unchanged.",
                    )
                return redirect("import_detail", org_slug=request.organization.slug, pk=run.pk)
        else:
            status = 400
    elif not request.membership.can(Perm.MANAGE_INVENTORY):
        form = None
    return render(
        request,
        "entitlements/imports.html",
        {
            "form": form,
            "errors": errors,
            "error_total": error_total,
            "runs": selectors.sync_runs_recent(),
        },
        status=status,
    )


def _run_action(request, pk: int, action, success: str):
    run = _get_sync_run(pk)
    try:
        action(run=run, actor=request.user, request=request)
    except services.RunActionError as exc:
        messages.error(request, str(exc).capitalize() + ".")
    else:
        messages.success(request, success)
    return redirect("import_detail", org_slug=request.organization.slug, pk=run.pk)


@require_POST
@org_view(Perm.MANAGE_INVENTORY)
def import_cancel(request, pk: int):
    return _run_action(request, pk, services.sync_run_cancel, "The run was cancelled and its upload deleted.")


@require_POST
@org_view(Perm.MANAGE_INVENTORY)
def import_retry(request, pk: int):
    return _run_action(request, pk, services.sync_run_retry, "The import was sent to a worker again.")


@org_view(Perm.VIEW_INVENTORY)
def import_detail(request, pk: int):
    run = _get_sync_run(pk)
    progress = services.import_progress(run.pk) if run.status == "running" else None
    done = progress if progress is not None else (run.processed_rows if run.is_finished else 0)
    percent = min(100, int(done * 100 / run.total_rows)) if run.total_rows else (100 if run.is_finished else 0)
    context = {
        "run": run, "done": done, "percent": percent, "applications": run.applications.order_by("name"),
        "can_manage": request.membership.can(Perm.MANAGE_INVENTORY), "max_attempts": settings.CLAIM_MAX_ATTEMPTS,
    }
    template = "entitlements/import_detail.html"
    if request.htmx:
        template += "#status"
    return render(request, template, context)

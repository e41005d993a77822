from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from access_requests.selectors import requests_waiting_for_ticket
from campaigns.models import Campaign
from thalian.access import org_view, require
from thalian.models import Membership
from thalian.permissions import Perm

from . import comments, itsm_connections, request_tickets, selectors, services
from .forms import ConnectionForm
from .models import ItsmConnection, RequestTicket, Ticket, TicketState


def _connection_for_member(membership: Membership, public_id) -> ItsmConnection:
    """Access helper: a connection of the member's organization (404 otherwise) the member may manage (403)."""
    require(membership, Perm.MANAGE_SETTINGS)
    connection = ItsmConnection.objects.filter(public_id=public_id).first()
    if connection is None:
        raise Http404("No such connection")
    return connection


def _ticket_for_member(membership: Membership, ticket_id: int) -> Ticket:
    ticket = Ticket.objects.select_related("item", "campaign").filter(pk=ticket_id).first()
    if ticket is None:
        raise Http404("No such ticket")
    if not (membership.can(Perm.MANAGE_CAMPAIGNS) or membership.can(Perm.MANAGE_SETTINGS)):
        raise PermissionDenied("Your role does not allow retrying tickets.")
    return ticket


def _campaign_for_member(membership: Membership, campaign_id) -> Campaign:
    require(membership, Perm.VIEW_ALL_CAMPAIGNS)
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise Http404("No such campaign")
    return campaign


@org_view(Perm.MANAGE_SETTINGS)
def connections(request):
    form = ConnectionForm()
    if request.method == "POST":
        form = ConnectionForm(request.POST)
        if form.is_valid():
            try:
                connection = itsm_connections.itsm_connection_create(
                    organization=request.organization,
                    actor=request.user,
                    data=form.service_data(),
                    request=request,
                )
            except ValidationError as exc:
                form.apply_errors(exc)
            else:
                messages.success(
                    request, f"Connection {connection.name} saved. Use Test connection to check it."
                )
                return redirect("itsm_connection_edit", request.organization.slug, connection.public_id)
    return render(
        request,
        "itsm/connections.html",
        {"connections": selectors.connections_list(), "form": form},
        status=400 if form.errors else 200,
    )


@org_view(Perm.MANAGE_SETTINGS)
def connection_edit(request, public_id):
    connection = _connection_for_member(request.membership, public_id)
    if request.method == "POST":
        form = ConnectionForm(request.POST, connection=connection)
        if form.is_valid():
            try:
                itsm_connections.itsm_connection_update(
                    connection=connection, actor=request.user, data=form.service_data(), request=request
                )
            except ValidationError as exc:
                form.apply_errors(exc)
            else:
                messages.success(request, f"Connection {connection.name} saved.")
                return redirect("itsm_connection_edit", request.organization.slug, connection.public_id)
    else:
        form = ConnectionForm(connection=connection, route_ids=selectors.routed_application_ids(connection))
    return render(
        request,
        "itsm/connection_edit.html",
        {"connection": connection, "form": form},
        status=400 if form.errors else 200,
    )


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def connection_test(request, public_id):
    connection = _connection_for_member(request.membership, public_id)
    ok, message = itsm_connections.itsm_connection_test(connection=connection, actor=request.user, request=request)
    context = {"connection": connection, "ok": ok, "message": message}
    if request.htmx:
        return render(request, "itsm/connection_edit.html#test-result", context)
    (messages.success if ok else messages.error)(request, f"Test connection: {message}")
    return redirect("itsm_connection_edit", request.organization.slug, connection.public_id)


@require_POST
@org_view(Perm.MANAGE_SETTINGS)
def connection_delete(request, public_id):
    connection = _connection_for_member(request.membership, public_id)
    name = connection.name
    itsm_connections.itsm_connection_delete(connection=connection, actor=request.user, request=request)
    messages.success(request, f"Connection {name} deleted.")
    return redirect("itsm_connections", request.organization.slug)


@org_view(Perm.VIEW_REMEDIATION)
def remediation_queue(request):
    state = request.GET.get("state", "")
    if state and state not in selectors.REMEDIATION_FILTERS:
        state = ""
    base = selectors.remediation_queue(membership=request.membership)
    items = selectors.remediation_queue(membership=request.membership, state=state)
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "items": page.object_list,
        "state": state,
        "counts": selectors.remediation_counts(base.order_by()),
        "unticketed": selectors.unticketed_revokes_by_campaign(organization=request.organization)
        if selectors.sees_all_remediation(request.membership)
        else [],
        "can_open_tickets": request.membership.can(Perm.MANAGE_CAMPAIGNS),
        "sees_all": selectors.sees_all_remediation(request.membership),
        "can_confirm_any": request.membership.can(Perm.CONFIRM_ANY_REMOVAL),
        "can_confirm": request.membership.can(Perm.CONFIRM_REMOVAL),
        "waiting_requests": list(requests_waiting_for_ticket(member=request.membership)[:100]),
        "failed_request_tickets": list(
            RequestTicket.objects.filter(state=TicketState.FAILED).select_related(
                "access_request__identity", "access_request__application")[:100]
        ) if request.membership.can(Perm.MANAGE_CAMPAIGNS) else [],
        "filters": [
            ("", "All"),
            ("action_required", "Action required"),
            ("ticket_failed", "Ticket failed"),
            ("pending", "Pending removal"),
            ("verified_removed", "Verified removed"),
            ("confirmed_removed", "Confirmed removed"),
        ],
    }
    template = "itsm/remediation_queue.html#queue" if request.htmx else "itsm/remediation_queue.html"
    return render(request, template, context)


@org_view(Perm.VIEW_ALL_CAMPAIGNS)
def campaign_remediation(request, campaign_id):
    campaign = _campaign_for_member(request.membership, campaign_id)
    context = {
        "campaign": campaign,
        "summary": selectors.campaign_remediation_summary(campaign),
        "failed": selectors.failed_tickets(campaign=campaign),
        "failed_comments": list(selectors.failed_comments(campaign=campaign)),
        "unticketed": list(
            selectors.unticketed_revokes_sample(organization=request.organization, campaign=campaign)
        ),
        "unticketed_count": selectors.unticketed_revokes(organization=request.organization, campaign=campaign)
        .count(),
        "can_open_tickets": request.membership.can(Perm.MANAGE_CAMPAIGNS),
        "can_retry": request.membership.can(Perm.MANAGE_CAMPAIGNS)
        or request.membership.can(Perm.MANAGE_SETTINGS),
    }
    template = "itsm/campaign_remediation.html#summary" if request.htmx else "itsm/campaign_remediation.html"
    return render(request, template, context)


@require_POST
@org_view(Perm.VIEW_CAMPAIGNS)
def ticket_retry(request, ticket_id: int):
    ticket = _ticket_for_member(request.membership, ticket_id)
    try:
        services.ticket_retry(ticket=ticket, actor=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"Ticket for {ticket.item.identity_email} in {ticket.item.application_name} queued again.",
        )
    return redirect("campaign_remediation", request.organization.slug, ticket.campaign_id)


@require_POST
@org_view(Perm.VIEW_CAMPAIGNS)
def ticket_comments_retry(request, ticket_id: int):
    ticket = _ticket_for_member(request.membership, ticket_id)
    try:
        count = comments.ticket_comments_retry(ticket=ticket, actor=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"{count} comment{'s' if count != 1 else ''} on {ticket.key or 'the ticket'} queued again; "
            "each is looked for on the ticket before it is posted.",
        )
    return redirect("campaign_remediation", request.organization.slug, ticket.campaign_id)


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS)
def campaign_retry_failed(request, campaign_id):
    campaign = _campaign_for_member(request.membership, campaign_id)
    count = services.tickets_retry_failed(
        organization=request.organization, campaign_id=campaign.pk, actor=request.user, request=request
    )
    messages.success(request, f"{count} failed ticket{'s' if count != 1 else ''} queued again.")
    return redirect("campaign_remediation", request.organization.slug, campaign.pk)


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS)
def campaign_open_tickets(request, campaign_id):
    """"Open tickets now" for the campaign's revokes that have no ticket."""
    campaign = _campaign_for_member(request.membership, campaign_id)
    try:
        opened = services.tickets_open_unticketed(
            organization=request.organization, campaign=campaign, actor=request.user, request=request
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{opened} ticket{'s' if opened != 1 else ''} opened for revokes without one.")
    return redirect(_safe_back(request, campaign))


def _safe_back(request, campaign: Campaign) -> str:
    from django.urls import reverse
    from django.utils.http import url_has_allowed_host_and_scheme

    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back
    return reverse("campaign_remediation", args=[request.organization.slug, campaign.pk])


@require_POST
@org_view(Perm.VIEW_REMEDIATION)
def access_request_open_ticket(request, request_id):
    """The application's owner (or staff) opens the waiting ticket of an access request once a connection applies."""
    req = requests_waiting_for_ticket(member=request.membership).filter(pk=request_id).first()
    if req is None:
        raise Http404("No such access request waiting for a ticket.")
    try:
        request_tickets.request_tickets_open_waiting(organization=request.organization, actor=request.user,
                                                     request_ids=[req.pk], request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Ticket queued for {req.role} in {req.application.name} ({req.identity.email}).")
    return redirect("remediation_queue", request.organization.slug)


@require_POST
@org_view(Perm.MANAGE_CAMPAIGNS)
def access_request_ticket_retry(request, ticket_id: int):
    ticket = RequestTicket.objects.filter(pk=ticket_id).select_related("access_request__application").first()
    if ticket is None:
        raise Http404("No such ticket.")
    try:
        request_tickets.request_ticket_retry(ticket=ticket, actor=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Ticket for {ticket.access_request.application.name} queued again.")
    return redirect("remediation_queue", request.organization.slug)

from .permissions import perms_for


def organization(request):
    membership = getattr(request, "membership", None)
    user = getattr(request, "user", None)
    memberships = []
    if user is not None and user.is_authenticated:
        memberships = list(user.memberships.select_related("organization").order_by("organization__name"))
    return {
        "org": getattr(request, "organization", None),
        "membership": membership,
        "perms_org": perms_for(membership.role if membership else None),
        "my_memberships": memberships,
    }

from .access import user_memberships
from .permissions import perms_for


def organization(request):
    membership = getattr(request, "membership", None)
    return {
        "org": getattr(request, "organization", None),
        "membership": membership,
        "perms_org": perms_for(membership.role if membership else None),
        "my_memberships": user_memberships(request),
    }

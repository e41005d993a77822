"""factory_boy factories for the object graph. Creation runs with tenant scoping disabled (fixture code)."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ReviewItem
from entitlements.models import Application, Entitlement, Identity
from thalian.models import Membership, Organization, Plan, User
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled


class ScopedFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        with scopes_disabled():
            return super()._create(model_class, *args, **kwargs)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"org{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    plan = Plan.PRO


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.VIEWER


class IdentityFactory(ScopedFactory):
    class Meta:
        model = Identity

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"person{n}@corp.test")
    name = factory.Faker("name")
    department = "Engineering"


class ApplicationFactory(ScopedFactory):
    class Meta:
        model = Application

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"App {n}")
    category = "Productivity"
    owner_email = "owner@corp.test"
    last_synced_at = factory.LazyFunction(timezone.now)


class EntitlementFactory(ScopedFactory):
    class Meta:
        model = Entitlement

    organization = factory.SubFactory(OrganizationFactory)
    identity = factory.SubFactory(IdentityFactory, organization=factory.SelfAttribute("..organization"))
    application = factory.SubFactory(ApplicationFactory, organization=factory.SelfAttribute("..organization"))
    role = "member"
    last_used = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=3))


class CampaignFactory(ScopedFactory):
    class Meta:
        model = Campaign

    organization = factory.SubFactory(OrganizationFactory)
    title = factory.Sequence(lambda n: f"Q{n % 4 + 1} access review")
    due_date = factory.LazyFunction(lambda: timezone.localdate() + dt.timedelta(days=14))
    status = CampaignStatus.DRAFT


class ReviewItemFactory(ScopedFactory):
    class Meta:
        model = ReviewItem

    organization = factory.SubFactory(OrganizationFactory)
    campaign = factory.SubFactory(CampaignFactory, organization=factory.SelfAttribute("..organization"))
    identity_email = factory.Sequence(lambda n: f"person{n}@corp.test")
    identity_name = "Pat Doe"
    identity_department = "Engineering"
    identity_kind = "human"
    identity_status = "active"
    application_name = "GitHub"
    role = "member"
    recommendation = "approve"
    recommendation_reason = "active and recently used"

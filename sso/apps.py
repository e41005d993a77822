from django.apps import AppConfig


class SsoConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sso"
    verbose_name = "Single sign-on and two-factor sign-in"

    def ready(self) -> None:
        from thalian.auth import password_refusal_register

        from . import checks  # noqa: F401
        from .selectors import password_login_refusal

        password_refusal_register(password_login_refusal)

"""The browser test uses the integration fixtures (the real provider on loopback)."""

from tests.integration.conftest import oidc_provider, provider_config

__all__ = ["oidc_provider", "provider_config"]

"""The browser test uses the integration fixtures (the real provider, the browser queue)."""

from tests.integration.conftest import browser, oidc_provider, provider_config

__all__ = ["browser", "oidc_provider", "provider_config"]

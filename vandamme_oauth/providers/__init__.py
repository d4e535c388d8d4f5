"""Provider dialects: one module per provider whose login needs more than plain OAuth data.

A dialect holds what a [`ProviderConfig`][vandamme_oauth.ProviderConfig] cannot say as plain
data: a device-code variant, backend headers, answers of its own. Adding a provider with
such needs means one new module here and one line in `device_variant()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import chatgpt

if TYPE_CHECKING:
    from .._device_codes import DeviceVariant
    from .._provider import ProviderConfig

__all__ = ["chatgpt", "device_variant"]


def device_variant(provider: ProviderConfig) -> DeviceVariant | None:
    """The provider's own device-code variant, or None for RFC 8628."""
    if chatgpt.is_chatgpt(provider):
        return chatgpt.DEVICE
    return None

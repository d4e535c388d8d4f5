"""Dynamic client registration (RFC 7591) as pure functions: what a native public client
asks for, what an answer gives, refusals in one line, and secrets kept out of sight."""

from __future__ import annotations

import json

import pytest

from vandamme_oauth import Registration, RegistrationError
from vandamme_oauth._registration import DEVICE_GRANT, parse_registration, registration_request

ENDPOINT = "https://as.example/register"


def test_a_native_public_client_asks_for_the_code_and_refresh_grants() -> None:
    assert registration_request(["http://127.0.0.1/auth/callback"], ("openid",)) == {
        "client_name": "vandamme-oauth",
        "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/auth/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid",
    }
    assert "scope" not in registration_request(["http://127.0.0.1/cb"], ())
    two = registration_request(["http://127.0.0.1/cb"], ("openid", "offline_access"))
    assert two["scope"] == "openid offline_access"


def test_a_public_registration_is_read() -> None:
    body = json.dumps(
        {
            "client_id": "c1",
            "registration_access_token": "RAT",
            "registration_client_uri": "https://as.example/reg/c1",
            "client_secret_expires_at": 0,
            "token_endpoint_auth_method": "none",
        }
    ).encode()
    registration = parse_registration(ENDPOINT, 201, body)
    assert registration == Registration(
        client_id="c1",
        registration_access_token="RAT",
        registration_client_uri="https://as.example/reg/c1",
    )
    assert not registration.secret_expired()
    assert "RAT" not in repr(registration)


def test_a_confidential_registration_keeps_its_secret_out_of_sight() -> None:
    body = json.dumps(
        {"client_id": "c2", "client_secret": "S3CRET", "client_secret_expires_at": 1000}
    ).encode()
    registration = parse_registration(ENDPOINT, 200, body)
    assert registration.client_secret == "S3CRET"
    assert registration.token_endpoint_auth_method == "client_secret_basic"
    assert "S3CRET" not in repr(registration)
    assert "S3CRET" not in json.dumps(registration.to_dict())
    assert not registration.secret_expired(now=999.0)
    assert registration.secret_expired(now=1000.0)


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            400,
            b'{"error": "invalid_redirect_uri", "error_description": "no loopback"}',
            "was refused (invalid_redirect_uri: no loopback); register a client with the "
            "provider and pass its id (--client-id)",
        ),
        (403, b"<html>forbidden</html>", "was refused (HTTP 403)"),
        (201, b'{"client_secret": "x"}', "has no client_id"),
        (201, b"not json", "has no client_id"),
    ],
)
def test_refusals_and_unusable_answers_say_what_to_do(status: int, body: bytes, says: str) -> None:
    with pytest.raises(RegistrationError) as caught:
        parse_registration(ENDPOINT, status, body)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_device_login_asks_for_the_device_grant_too() -> None:
    request = registration_request(["http://127.0.0.1/cb"], (), device=True)
    assert request["grant_types"] == [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]


def test_the_registered_grants_are_read_and_an_unknown_list_allows_all() -> None:
    body = json.dumps({"client_id": "c3", "grant_types": ["authorization_code", 7]}).encode()
    registration = parse_registration(ENDPOINT, 201, body)
    assert registration.grant_types == ("authorization_code",)
    assert registration.allows("authorization_code")
    assert not registration.allows(DEVICE_GRANT)
    unknown = parse_registration(ENDPOINT, 201, json.dumps({"client_id": "c4"}).encode())
    assert unknown.grant_types is None
    assert unknown.allows(DEVICE_GRANT)
    assert unknown.to_dict()["grant_types"] is None
    assert registration.to_dict()["grant_types"] == ["authorization_code"]


def test_what_the_server_says_of_the_method_and_odd_values_are_read_as_such() -> None:
    """The server's method counts; an empty secret is none; a token or URI that is not text,
    and a secret expiry of 0 ("never"), are left out."""
    body = json.dumps(
        {
            "client_id": "c5",
            "client_secret": "S",
            "client_secret_expires_at": 1,
            "token_endpoint_auth_method": "client_secret_post",
            "registration_access_token": 7,
            "registration_client_uri": ["x"],
        }
    ).encode()
    registration = parse_registration(ENDPOINT, 201, body)
    assert registration.token_endpoint_auth_method == "client_secret_post"
    assert registration.client_secret_expires_at == 1.0
    assert registration.registration_access_token is None
    assert registration.registration_client_uri is None
    empty = parse_registration(ENDPOINT, 201, b'{"client_id": "c6", "client_secret": ""}')
    assert empty.client_secret is None
    assert empty.token_endpoint_auth_method == "none"
    odd = parse_registration(ENDPOINT, 201, b'{"client_id": "c7", "client_secret": 5}')
    assert odd.client_secret is None
    assert odd.token_endpoint_auth_method == "none"


def test_an_answer_without_a_usable_client_id_is_refused() -> None:
    for body in (b'{"client_id": ""}', b'{"client_id": 7}', b"[]", b"not json"):
        with pytest.raises(RegistrationError, match="has no client_id"):
            parse_registration(ENDPOINT, 201, body)


def test_a_secret_expiry_counts_only_with_a_secret_and_against_the_clock() -> None:
    assert not Registration("c", client_secret_expires_at=1.0).secret_expired(now=2.0)
    assert Registration("c", client_secret="S", client_secret_expires_at=1.0).secret_expired()
    assert not Registration("c", client_secret="S", client_secret_expires_at=4e9).secret_expired()

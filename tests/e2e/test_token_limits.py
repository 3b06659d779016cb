"""The brute-force guard on tokens, against a real server: an address that sent too many
wrong tokens (dashboard sign-in form, API bearer token) is refused with 429 and
Retry-After before its token is looked at, even a right one; other addresses are not
affected; a right sign-in forgets the failures; a read token used for a write is no
guess."""

from __future__ import annotations

import re

import httpx

from .server import READ_TOKEN, WRITE_TOKEN, LiveServer

OTHER_ADDRESS = "127.0.0.2"  # also loopback on Linux: a second client address


def from_address(live: LiveServer, address: str | None = None) -> httpx.Client:
    """A client without a token, connecting from `address` (None: 127.0.0.1)."""
    transport = httpx.HTTPTransport(local_address=address) if address else None
    return httpx.Client(base_url=live.url, timeout=10.0, transport=transport)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text[:300]
    return client.post("/dashboard/login", data={"csrf": csrf.group(1), "token": token})


def test_dashboard_sign_in_refuses_an_address_after_five_wrong_tokens(
    sqlite_live: LiveServer,
) -> None:
    with from_address(sqlite_live) as client, from_address(sqlite_live, OTHER_ADDRESS) as other:
        for _ in range(5):
            assert sign_in(client, "guess").status_code == 401
        refused = sign_in(client, WRITE_TOKEN)  # even the right token, now
        assert refused.status_code == 429
        assert "too many wrong tokens from this address" in refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert client.get("/dashboard/").status_code == 303  # not signed in: to the form
        assert sign_in(other, WRITE_TOKEN).status_code == 303  # another address signs in


def test_a_right_sign_in_forgets_the_wrong_ones(sqlite_live: LiveServer) -> None:
    with from_address(sqlite_live) as client:
        for _ in range(4):
            assert sign_in(client, "guess").status_code == 401
        assert sign_in(client, READ_TOKEN).status_code == 303
        for _ in range(5):
            assert sign_in(client, "guess").status_code == 401
        assert sign_in(client, "guess").status_code == 429


def test_api_refuses_an_address_after_thirty_wrong_bearer_tokens(sqlite_live: LiveServer) -> None:
    headers = {"Authorization": "Bearer guess"}
    with from_address(sqlite_live) as client, from_address(sqlite_live, OTHER_ADDRESS) as other:
        for _ in range(30):
            assert client.get("/queues", headers=headers).status_code == 401
        right = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        refused = client.get("/queues", headers=right)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "too_many_failures"
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert other.get("/queues", headers=right).status_code == 200
        # Without any token there is nothing to guess with: 401, as before.
        assert client.get("/queues").status_code == 401


def test_a_read_token_sent_for_a_write_is_not_a_guess(sqlite_live: LiveServer) -> None:
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    with from_address(sqlite_live) as client:
        for _ in range(35):
            assert client.post("/queues/emails/pause", headers=read).status_code == 401
        assert client.get("/queues", headers=read).status_code == 200

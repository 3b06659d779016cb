"""Webhook verification follows each provider's documented recipe, dedupes only on signed
material, and refuses anything else with a `WebhookRejected` carrying 400 or 401.

The signatures here are computed from the providers' recipes (Stripe's and GitHub's HMACs
by hand, Standard Webhooks by its reference package and its published test vector), not
with the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from taskflare import InvalidQueueConfig
from taskflare.webhooks import (
    DEFAULT_REPLAY_WINDOW,
    VerifiedWebhook,
    WebhookRejected,
    WebhookSource,
    hmac_signature_header,
    stripe_signature_header,
)

NOW = 1_750_000_000
STRIPE_SECRET = "whsec_stripe_test_4f1a"
GITHUB_SECRET = "It's a Secret to Everybody"
# The Standard Webhooks specification's test vector (also in Svix's documentation).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

EVENT = json.dumps({"id": "evt_1NG8Du2eZvKYlo2C", "type": "invoice.paid"}).encode()
PUSH = json.dumps({"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"})


def stripe_source(**kwargs: Any) -> WebhookSource:
    return WebhookSource("stripe", STRIPE_SECRET, "stripe-event", "stripe", **kwargs)


def github_source(**kwargs: Any) -> WebhookSource:
    return WebhookSource("github", GITHUB_SECRET, "github-event", "github", **kwargs)


def generic_source(**kwargs: Any) -> WebhookSource:
    return WebhookSource("hooks", GITHUB_SECRET, "hook-event", "hmac-sha256", **kwargs)


def standard_source(**kwargs: Any) -> WebhookSource:
    return WebhookSource("svix", SPEC_SECRET, "svix-event", "standard-webhooks", **kwargs)


def stripe_header(body: bytes, t: int = NOW, secret: str = STRIPE_SECRET) -> str:
    """Stripe's recipe: HMAC-SHA256 of `"<t>.<raw body>"`, hex, as `t=...,v1=...`."""
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def hub_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    """GitHub's recipe: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_headers(
    body: bytes, msg_id: str = "msg_2mR8Yb", t: int = NOW, secret: str = SPEC_SECRET
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(t, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(t), "webhook-signature": signature}


def rejected(
    source: WebhookSource, body: bytes, headers: dict[str, str], now: float = NOW
) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        source.verify(body, headers, now=now)
    return info.value


# -- Stripe -------------------------------------------------------------------------------


def test_stripe_event_verifies_and_its_id_is_the_dedup_key() -> None:
    verified = stripe_source().verify(EVENT, {"Stripe-Signature": stripe_header(EVENT)}, NOW)
    assert verified == VerifiedWebhook(
        event=json.loads(EVENT), dedup_key="evt_1NG8Du2eZvKYlo2C", ttl=DEFAULT_REPLAY_WINDOW
    )


def test_stripe_redelivery_with_a_new_timestamp_keeps_the_event_key() -> None:
    source = stripe_source()
    first = source.verify(EVENT, {"stripe-signature": stripe_header(EVENT, NOW)}, NOW)
    later = source.verify(EVENT, {"stripe-signature": stripe_header(EVENT, NOW + 60)}, NOW + 60)
    assert first.dedup_key == later.dedup_key == "evt_1NG8Du2eZvKYlo2C"


def test_stripe_accepts_any_matching_v1_among_several_and_ignores_v0() -> None:
    # During a secret rotation Stripe signs with each secret; v0 is a test-mode signature.
    other = stripe_header(EVENT, secret="whsec_old").split(",")[1]
    header = f"t={NOW},{other},v0={'0' * 64},{stripe_header(EVENT).split(',')[1]}"
    assert stripe_source().verify(EVENT, {"Stripe-Signature": header}, NOW).dedup_key


def test_stripe_without_an_event_id_dedupes_on_the_hash_of_the_signed_payload() -> None:
    body = b'{"type": "ping"}'
    verified = stripe_source().verify(body, {"Stripe-Signature": stripe_header(body)}, NOW)
    signed = f"{NOW}.".encode() + body
    assert verified.dedup_key == "sha256:" + hashlib.sha256(signed).hexdigest()


def test_stripe_bad_signatures_are_401() -> None:
    source = stripe_source()
    wrong = rejected(source, EVENT, {"Stripe-Signature": stripe_header(EVENT, secret="nope")})
    assert (wrong.status, str(wrong)) == (401, "signature does not match")
    tampered = EVENT.replace(b"invoice.paid", b"invoice.void")
    assert rejected(source, tampered, {"Stripe-Signature": stripe_header(EVENT)}).status == 401
    missing = rejected(source, EVENT, {"X-Signature": hub_signature(EVENT)})
    assert (missing.status, str(missing)) == (401, "missing Stripe-Signature header")


@pytest.mark.parametrize("skew", [-301, 301, -80_000])
def test_stripe_timestamp_outside_the_tolerance_is_401(skew: int) -> None:
    header = {"Stripe-Signature": stripe_header(EVENT, NOW + skew)}
    error = rejected(stripe_source(), EVENT, header)
    assert error.status == 401 and "tolerance" in str(error)
    # The tolerance is a setting.
    assert stripe_source(tolerance=86_400).verify(EVENT, header, NOW).dedup_key


@pytest.mark.parametrize(
    "header",
    [
        "t=abc,v1=",
        "t=²,v1=" + "0" * 64,  # str.isdigit() says yes, int() says no
        "t=1" + "0" * 400 + ",v1=" + "0" * 64,  # not parsed: refused by its length
        "t=-5,v1=" + "0" * 64,
        f"t={NOW}",
        f"t={NOW},v1=abc",
        f"t={NOW},v1=" + "é" * 64,
        f"t={NOW},v1=" + "g" * 64,
        f"t={NOW},t={NOW},v1=" + "0" * 64,
        f"v1={'0' * 64}",
        "x" * 5000,
    ],
)
def test_malformed_stripe_signature_header_is_400(header: str) -> None:
    assert rejected(stripe_source(), EVENT, {"Stripe-Signature": header}).status == 400


# -- GitHub and the generic hmac-sha256 -------------------------------------------------


def test_github_x_hub_signature_256_matches_githubs_documented_example() -> None:
    # From GitHub's "Validating webhook deliveries": secret, payload and expected header.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert hub_signature(b"Hello, World!") == expected
    # The signature passes; only then is the body read, and "Hello, World!" is not JSON.
    error = rejected(github_source(), b"Hello, World!", {"X-Hub-Signature-256": expected})
    assert (error.status, error.code) == (400, "invalid")
    forged = {"X-Hub-Signature-256": expected.replace("7571", "7570")}
    assert rejected(github_source(), b"Hello, World!", forged).status == 401


def test_github_push_verifies_and_the_delivery_header_does_not_change_the_key() -> None:
    body = PUSH.encode()
    source = github_source()
    headers = {"X-Hub-Signature-256": hub_signature(body), "X-GitHub-Delivery": "d-1"}
    first = source.verify(body, headers, NOW)
    # A captured request resent with a fresh (unsigned) delivery id is the same event.
    replay = source.verify(body, {**headers, "X-GitHub-Delivery": "d-2"}, NOW + 86_400)
    assert first.dedup_key == replay.dedup_key == "sha256:" + hashlib.sha256(body).hexdigest()
    assert first.ttl == DEFAULT_REPLAY_WINDOW == 7 * 86_400
    assert first.event == json.loads(body)


def test_github_needs_its_own_header() -> None:
    body = PUSH.encode()
    wrong_header = rejected(github_source(), body, {"X-Signature": hub_signature(body)})
    assert (wrong_header.status, str(wrong_header)) == (401, "missing X-Hub-Signature-256 header")
    sha1 = "sha1=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert rejected(github_source(), body, {"X-Hub-Signature": sha1}).status == 401


def test_generic_scheme_uses_x_signature_and_ignores_unsigned_event_id_headers() -> None:
    body = json.dumps({"kind": "build.finished", "build": 7}).encode()
    source = generic_source(replay_window=30 * 86_400)
    headers = {"X-Signature": hub_signature(body), "X-Event-Id": "e-1"}
    first = source.verify(body, headers, NOW)
    replay = source.verify(body, {**headers, "X-Event-Id": "e-2", "webhook-id": "w"}, NOW)
    assert first.dedup_key == replay.dedup_key == "sha256:" + hashlib.sha256(body).hexdigest()
    assert first.ttl == 30 * 86_400


def test_a_signed_body_id_is_the_key_for_hub_schemes() -> None:
    body = json.dumps({"id": 4815162342, "action": "opened"}).encode()
    verified = github_source().verify(body, {"X-Hub-Signature-256": hub_signature(body)}, NOW)
    assert verified.dedup_key == "4815162342"


@pytest.mark.parametrize(
    "value",
    [
        "sha256=\xe9",  # latin-1 as Starlette decodes it: compare_digest raised TypeError
        "sha256=" + "é" * 64,
        "md5=abc",
        "sha256=" + "0" * 63,
        "sha256=" + "0" * 65,
        "sha256= " + "0" * 63,
        "sha256=" + "0" * 64 + "\n",
        "=",
        "x" * 100_000,
    ],
)
def test_malformed_x_signature_is_400(value: str) -> None:
    body = PUSH.encode()
    assert rejected(generic_source(), body, {"X-Signature": value}).status == 400
    assert rejected(github_source(), body, {"X-Hub-Signature-256": value}).status == 400


def test_wrong_hub_signature_is_401_in_any_hex_case() -> None:
    body = PUSH.encode()
    assert rejected(generic_source(), body, {"x-signature": hub_signature(body, "x")}).status == 401
    upper = "sha256=" + hub_signature(body).removeprefix("sha256=").upper()
    assert generic_source().verify(body, {"x-signature": upper}, NOW).dedup_key


# -- Standard Webhooks ---------------------------------------------------------------------


def test_standard_webhooks_accepts_the_specifications_test_vector() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verified = standard_source().verify(SPEC_BODY, headers, now=SPEC_TIMESTAMP + 10)
    assert verified.dedup_key == SPEC_ID
    assert verified.event == {"test": 2432232314}


def test_standard_webhooks_key_is_the_signed_webhook_id_even_when_the_body_has_an_id() -> None:
    headers = standard_headers(EVENT, msg_id="msg_abc")
    verified = standard_source().verify(EVENT, headers, NOW)
    assert verified.dedup_key == "msg_abc"
    # The id is signed: changing it breaks the signature instead of making a new job.
    assert rejected(standard_source(), EVENT, {**headers, "webhook-id": "msg_new"}).status == 401


def test_standard_webhooks_signature_list_with_rotation_and_other_versions() -> None:
    good = standard_headers(EVENT)
    old = standard_headers(EVENT, secret="whsec_" + "b2xkLXNlY3JldC1vZi10aGUtZW5kcG9pbnQ=")
    listed = f"v1a,c29tZS1lZDI1NTE5 {old['webhook-signature']}  {good['webhook-signature']}"
    assert standard_source().verify(EVENT, {**good, "webhook-signature": listed}, NOW)
    only_old = {**good, "webhook-signature": old["webhook-signature"]}
    assert rejected(standard_source(), EVENT, only_old).status == 401
    only_v1a = {**good, "webhook-signature": "v1a,c29tZS1lZDI1NTE5"}
    assert rejected(standard_source(), EVENT, only_v1a).status == 401


def test_standard_webhooks_outside_the_tolerance_is_401() -> None:
    headers = standard_headers(EVENT, t=NOW - 301)
    assert "tolerance" in str(rejected(standard_source(), EVENT, headers))
    verified = standard_source(tolerance=600).verify(EVENT, headers, NOW)
    assert verified.ttl == DEFAULT_REPLAY_WINDOW  # max(replay window, 2 x tolerance)
    short = standard_source(tolerance=600, replay_window=60).verify(EVENT, headers, NOW)
    assert short.ttl == 1200


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-timestamp": "1e9"},
        {"webhook-timestamp": str(NOW) + ".5"},
        {"webhook-timestamp": "²"},
        {"webhook-timestamp": "9" * 500},
        {"webhook-id": "msg\n1"},
        {"webhook-id": "m" * 257},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,abc"},
        {"webhook-signature": "v1," + "é" * 44},
        {"webhook-signature": "v1," + "A" * 44},
        {"webhook-signature": "v1,a,b"},
    ],
)
def test_malformed_standard_webhooks_headers_are_400(change: dict[str, str]) -> None:
    headers = {**standard_headers(EVENT), **change}
    assert rejected(standard_source(), EVENT, headers).status == 400


def test_standard_webhooks_missing_header_is_401_and_a_non_utf8_body_is_400() -> None:
    headers = standard_headers(EVENT)
    for name in headers:
        error = rejected(standard_source(), EVENT, {k: v for k, v in headers.items() if k != name})
        assert (error.status, str(error)) == (401, f"missing {name} header")
    assert rejected(standard_source(), b"\xff{}", headers).status == 400


# -- The body, the key, the configuration ---------------------------------------------------


def test_a_verified_body_that_is_not_json_is_400_invalid() -> None:
    error = rejected(generic_source(), b"not json", {"X-Signature": hub_signature(b"not json")})
    assert (error.status, error.code, str(error)) == (400, "invalid", "webhook body is not JSON")


def test_an_empty_signed_body_is_a_null_event() -> None:
    verified = generic_source().verify(b"", {"X-Signature": hub_signature(b"")}, NOW)
    assert verified.event is None
    assert verified.dedup_key == "sha256:" + hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("event_id", ["e" * 129, "evt\x00nul", "evt\nline"])
def test_long_or_unprintable_event_ids_are_hashed_to_fit_the_idempotency_key(
    event_id: str,
) -> None:
    body = json.dumps({"id": event_id}).encode()
    verified = stripe_source().verify(body, {"Stripe-Signature": stripe_header(body)}, NOW)
    assert verified.dedup_key == "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def test_event_id_field_is_configurable_and_ignored_unless_a_string_or_integer() -> None:
    body = json.dumps({"delivery": {"id": 1}, "uuid": "u-1", "flag": True}).encode()
    header = {"Stripe-Signature": stripe_header(body)}
    assert stripe_source(event_id_field="uuid").verify(body, header, NOW).dedup_key == "u-1"
    assert (
        stripe_source(event_id_field="flag")
        .verify(body, header, NOW)
        .dedup_key.startswith("sha256:")
    )


def test_source_keeps_its_positional_fields_and_adds_replay_window_last() -> None:
    source = WebhookSource("s", "secret", "job", "hmac-sha256", "uuid", 60.0, 3600.0)
    assert (source.name, source.secret, source.job_type, source.scheme) == (
        "s",
        "secret",
        "job",
        "hmac-sha256",
    )
    assert (source.event_id_field, source.tolerance, source.replay_window) == ("uuid", 60, 3600)
    assert "secret" not in repr(source)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "svix"}, "webhook scheme must be one of"),
        ({"scheme": "sha256"}, "webhook scheme must be one of"),
        ({"secret": ""}, "needs a secret"),
        ({"replay_window": 0}, "replay_window"),
        ({"replay_window": -1}, "replay_window"),
        ({"replay_window": math.nan}, "replay_window"),
        ({"replay_window": math.inf}, "replay_window"),
        ({"replay_window": True}, "replay_window"),
        ({"replay_window": "7d"}, "replay_window"),
        ({"replay_window": 366 * 86_400}, "replay_window"),
        ({"tolerance": 0}, "tolerance"),
        ({"tolerance": math.nan}, "tolerance"),
        ({"tolerance": 86_401}, "tolerance"),
        ({"name": "x" * 101}, "1-100 characters"),
    ],
)
def test_bad_source_settings_raise_invalid_queue_config(
    kwargs: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {"name": "s", "secret": "k", "job_type": "j", "scheme": "github"}
    with pytest.raises(InvalidQueueConfig, match=message):
        WebhookSource(**{**fields, **kwargs})


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!", "whsec_é"]
)
def test_standard_webhooks_secret_must_be_whsec_base64(secret: str) -> None:
    with pytest.raises(InvalidQueueConfig, match="'whsec_' followed by base64") as info:
        WebhookSource("svix", secret, "j", "standard-webhooks")
    assert "MfKQ9r8" not in str(info.value)  # the message never shows the secret


def test_header_helpers_build_what_the_recipes_say() -> None:
    assert stripe_signature_header(EVENT, STRIPE_SECRET, NOW) == stripe_header(EVENT)
    assert hmac_signature_header(EVENT, GITHUB_SECRET) == hub_signature(EVENT)


# -- Fuzz: whatever the headers, verify() answers with WebhookRejected or succeeds -------------

anything = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(codec="latin-1"), max_size=80),  # what Starlette hands us
    st.sampled_from(["1" + "0" * 400, "²", "٣", "1e400", "-0", " 1", "\xe9", "0x10", ""]),
)
digits = st.one_of(st.integers(NOW - 400, NOW + 400).map(str), anything)
hexes = st.one_of(st.text("0123456789abcdefABCDEF", min_size=62, max_size=66), anything)
b64 = st.one_of(st.text("ABCDEFabcdef0123456789+/=", min_size=42, max_size=46), anything)


def joined(sep: str, *items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(*items), max_size=5).map(sep.join)


HEADERS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "stripe": {
        "Stripe-Signature": joined(
            ",",
            digits.map("t={}".format),
            hexes.map("v1={}".format),
            hexes.map("v0={}".format),
            anything,
        )
    },
    "github": {"X-Hub-Signature-256": hexes.map("sha256={}".format) | anything},
    "hmac-sha256": {"x-signature": hexes.map("sha256={}".format) | anything},
    "standard-webhooks": {
        "webhook-id": anything,
        "webhook-timestamp": digits,
        "webhook-signature": joined(" ", b64.map("v1,{}".format), b64.map("v1a,{}".format)),
    },
}
SOURCES = {
    "stripe": stripe_source(),
    "github": github_source(),
    "hmac-sha256": generic_source(),
    "standard-webhooks": standard_source(),
}


@pytest.mark.parametrize("scheme", SOURCES)
@settings(max_examples=400)
@given(data=st.data(), body=st.binary(max_size=64), others=st.dictionaries(anything, anything))
def test_fuzzed_headers_only_ever_raise_webhook_rejected(
    scheme: str, data: st.DataObject, body: bytes, others: dict[str, str]
) -> None:
    headers = {**others, **data.draw(st.fixed_dictionaries({}, optional=HEADERS[scheme]))}
    try:
        SOURCES[scheme].verify(body, headers, now=NOW)
    except WebhookRejected as exc:
        assert exc.status in (400, 401)


@given(body=st.binary(max_size=256))
def test_fuzzed_bodies_with_valid_signatures_verify_or_are_400(body: bytes) -> None:
    for source, headers in [
        (stripe_source(), {"Stripe-Signature": stripe_header(body)}),
        (github_source(), {"X-Hub-Signature-256": hub_signature(body)}),
    ]:
        try:
            source.verify(body, headers, now=NOW)
        except WebhookRejected as exc:
            assert (exc.status, exc.code) == (400, "invalid")

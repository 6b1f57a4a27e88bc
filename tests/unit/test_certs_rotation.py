"""The self-managed certificate plan: create, renew, and rotate the CA without distrust."""

import datetime as dt
from dataclasses import replace

import pytest
from cryptography import x509

from kaptain_warden.certs.pki import build_ca, build_certificate
from kaptain_warden.certs.rotation import (
    BUNDLE_GENERATION,
    Timings,
    TlsMaterial,
    next_step,
    split_pem_certificates,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NAMES = ("warden.ns.svc", "warden")
TIMINGS = Timings(
    ca_validity=dt.timedelta(days=10),
    ca_renew_before=dt.timedelta(days=3),
    cert_validity=dt.timedelta(days=2),
    cert_renew_before=dt.timedelta(days=1),
    bundle_grace=dt.timedelta(minutes=1),
    replica_grace=dt.timedelta(minutes=5),
)


def plan(material, now, *, published=True, names=NAMES):
    return next_step(
        material, now=now, dns_names=names, timings=TIMINGS, bundle_published=published
    )


def settle(material, now, *, published=True):
    """Apply steps until the plan is satisfied; the reasons, in order."""
    reasons = []
    for _ in range(10):
        step = plan(material, now, published=published)
        if step is None:
            return material, reasons
        material, reasons = step.material, [*reasons, step.reason]
    raise AssertionError(f"no fixed point: {reasons}")


def issuer_of(pem):
    return x509.load_pem_x509_certificate(pem).issuer


def subject_of(pem):
    return x509.load_pem_x509_certificate(pem).subject


@pytest.fixture(scope="module")
def fresh():
    material, reasons = settle(TlsMaterial(), T0)
    assert reasons == ["created a CA"]
    return material


def test_an_empty_secret_gets_a_ca_and_a_serving_certificate_for_the_service(fresh):
    assert fresh.bundle == (fresh.ca.cert_pem,)
    assert issuer_of(fresh.serving.cert_pem) == subject_of(fresh.ca.cert_pem)
    sans = fresh.serving.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert sans == list(NAMES)
    assert fresh.generation == 1


def test_a_current_secret_needs_nothing(fresh):
    assert plan(fresh, T0 + dt.timedelta(hours=1)) is None


def test_round_trip_through_the_secret_keeps_everything(fresh):
    data, annotations = fresh.to_secret()
    assert annotations[BUNDLE_GENERATION] == "1"
    assert TlsMaterial.from_secret(data, annotations) == fresh


def test_garbage_in_the_secret_counts_as_absent():
    material = TlsMaterial.from_secret(
        {"ca-signing.crt": b"junk", "ca-signing.key": b"junk", "ca.crt": b"junk"},
        {BUNDLE_GENERATION: "x"},
    )
    assert material == TlsMaterial()


def test_serving_certificate_is_renewed_under_the_same_ca_without_touching_the_bundle(fresh):
    due = fresh.serving.not_after - TIMINGS.cert_renew_before
    step = plan(fresh, due)
    assert step.reason == "issued a new serving certificate"
    assert step.material.bundle == fresh.bundle
    assert step.material.generation == fresh.generation
    assert step.material.serving.cert_pem != fresh.serving.cert_pem
    # The key is kept: a handshake that reads the new certificate and the old key still works.
    assert step.material.serving.key_pem == fresh.serving.key_pem
    assert plan(step.material, due) is None  # the re-signed certificate matches its key


def test_new_service_names_get_a_new_serving_certificate(fresh):
    step = plan(fresh, T0, names=(*NAMES, "extra.example"))
    assert step.reason == "issued a new serving certificate"


def test_ca_rotation_trusts_first_then_serves_then_forgets(fresh):
    old_ca = fresh.ca
    start = old_ca.not_after - TIMINGS.ca_renew_before
    # Keep the serving certificate from needing renewal during the walk.
    material = plan(fresh, start - dt.timedelta(hours=1)).material
    assert plan(material, start - dt.timedelta(seconds=1)) is None

    # 1. A new CA joins the bundle; the serving certificate is still the old CA's.
    step = plan(material, start)
    assert "a new CA joined the bundle" in step.reason
    staged = step.material
    assert staged.bundle == (old_ca.cert_pem, staged.next_ca.cert_pem)
    assert staged.ca == old_ca and staged.serving == material.serving
    assert staged.generation == material.generation + 1

    # 2. Not served before the bundle is published and the grace has passed.
    assert plan(staged, start + dt.timedelta(hours=1), published=False) is None
    assert plan(staged, start + dt.timedelta(seconds=30)) is None
    step = plan(staged, start + TIMINGS.bundle_grace)
    assert step.reason == "the new CA now signs the serving certificate"
    promoted = step.material
    assert promoted.ca == staged.next_ca and promoted.next_ca is None
    assert issuer_of(promoted.serving.cert_pem) == subject_of(promoted.ca.cert_pem)
    assert promoted.serving.key_pem == material.serving.key_pem
    assert promoted.bundle == staged.bundle  # both still trusted

    # 3. The old CA stays trusted until every replica has had time to switch.
    served_at = start + TIMINGS.bundle_grace
    assert plan(promoted, served_at + TIMINGS.replica_grace - dt.timedelta(seconds=1)) is None
    step = plan(promoted, served_at + TIMINGS.replica_grace)
    assert step.reason == "the old CA left the bundle"
    assert step.material.bundle == (promoted.ca.cert_pem,)
    assert step.material.generation == promoted.generation + 1
    assert plan(step.material, served_at + TIMINGS.replica_grace) is None


def test_every_serving_certificate_during_a_rotation_chains_to_the_published_bundle(fresh):
    """Walk a rotation minute by minute: what is served is always trusted by the bundle."""
    material = fresh
    now = fresh.ca.not_after - TIMINGS.ca_renew_before - dt.timedelta(minutes=2)
    published_bundle = material.bundle
    for _ in range(30):
        step = plan(material, now, published=material.bundle == published_bundle)
        if step is not None:
            material = step.material
        trusted = {subject_of(pem) for pem in published_bundle}
        assert issuer_of(material.serving.cert_pem) in trusted
        published_bundle = material.bundle  # the manager publishes each new bundle
        now += dt.timedelta(minutes=1)
    assert material.bundle == (material.ca.cert_pem,)
    assert material.ca != fresh.ca


def test_an_expired_ca_is_replaced(fresh):
    step = plan(fresh, fresh.ca.not_after)
    assert step.reason == "created a CA"
    assert fresh.ca.cert_pem not in step.material.bundle


def test_a_missing_signing_ca_in_the_bundle_is_put_back(fresh):
    step = plan(replace(fresh, bundle=()), T0)
    assert step.material.bundle == (fresh.ca.cert_pem,)


def test_a_serving_certificate_from_another_ca_is_replaced(fresh):
    stranger = build_ca(common_name="other", now=T0, valid_for=dt.timedelta(days=5))
    foreign = build_certificate(
        ca=stranger, common_name=NAMES[0], dns_names=NAMES, now=T0, valid_for=dt.timedelta(days=2)
    )
    assert plan(replace(fresh, serving=foreign), T0).reason == "issued a new serving certificate"


def test_timings_that_contradict_each_other_are_refused():
    with pytest.raises(ValueError, match="cert_renew_before must be shorter than cert_validity"):
        Timings(cert_validity=dt.timedelta(days=30), cert_renew_before=dt.timedelta(days=30))
    Timings()  # the defaults agree with each other


def test_bundles_split_into_distinct_certificates(fresh):
    pem = fresh.ca.cert_pem
    assert split_pem_certificates(pem + b"garbage\n" + pem) == (pem,)

"""The router's per-tenant buckets, with a fake clock."""

from __future__ import annotations

from zlog.config import TenantLimits
from zlog.tenants.admission import Admission


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    a = Admission()
    lim = TenantLimits(records_per_s=100, burst_s=2.0)
    admitted = sum(10 for _ in range(40) if a.admit("t", lim, 10, 0, (), 0.0) is None)
    assert admitted == 200  # the burst: 2 s of rate
    r = a.admit("t", lim, 10, 0, (), 0.0)
    assert r is not None and r.code == "TENANT_RATE_LIMITED" and "records_per_s" in r.message
    assert r.retry_after_s == 1
    # one second later: 100 more, not 101
    assert sum(10 for _ in range(20) if a.admit("t", lim, 10, 0, (), 1.0) is None) == 100
    assert a.refused[("t", "TENANT_RATE_LIMITED")] == 20 + 1 + 10


def test_tenants_have_their_own_buckets_and_no_limit_means_none() -> None:
    a = Admission()
    lim = TenantLimits(records_per_s=10, burst_s=1.0)
    assert a.admit("a", lim, 10, 0, (), 0.0) is None
    assert a.admit("a", lim, 1, 0, (), 0.0) is not None
    assert a.admit("b", lim, 10, 0, (), 0.0) is None
    assert all(a.admit("c", TenantLimits(), 10**6, 10**9, (), 0.0) is None for _ in range(100))


def test_bytes_and_records_are_checked_together_and_a_refusal_takes_nothing() -> None:
    a = Admission()
    lim = TenantLimits(records_per_s=100, bytes_per_s=1000, burst_s=1.0)
    assert a.admit("t", lim, 10, 900, (), 0.0) is None
    r = a.admit("t", lim, 10, 200, (), 0.0)
    assert r is not None and "bytes_per_s" in r.message
    assert a.admit("t", lim, 90, 100, (), 0.0) is None  # the refused request took no records


def test_a_request_bigger_than_the_burst_waits_for_a_full_bucket_then_goes_into_debt() -> None:
    a = Admission()
    lim = TenantLimits(records_per_s=10, burst_s=1.0)
    assert a.admit("t", lim, 50, 0, (), 0.0) is None  # full bucket: admitted, now owes 40
    r = a.admit("t", lim, 1, 0, (), 1.0)
    assert r is not None and r.retry_after_s >= 3
    assert a.admit("t", lim, 50, 0, (), 5.0) is None


def test_services_beyond_the_limit_are_refused_known_ones_are_not() -> None:
    a = Admission()
    lim = TenantLimits(max_services=2)
    assert a.admit("t", lim, 1, 0, ("a", "b"), 0.0) is None
    r = a.admit("t", lim, 1, 0, ("c",), 0.0)
    assert r is not None and r.code == "TOO_MANY_SERVICES" and "max_services" in r.message
    assert a.admit("t", lim, 1, 0, ("b", "a"), 0.0) is None
    assert a.admit("u", lim, 1, 0, ("c",), 0.0) is None


def test_tracked_tenants_are_bounded() -> None:
    a = Admission(max_tenants=10)
    lim = TenantLimits(records_per_s=5)
    for i in range(100):
        a.admit(f"t{i}", lim, 1, 0, (), float(i))
    assert len(a.tenants) <= 10


def test_a_refund_gives_back_what_was_taken_never_beyond_capacity() -> None:
    a = Admission()
    lim = TenantLimits(records_per_s=100, bytes_per_s=1000, burst_s=1.0)
    assert a.admit("t", lim, 100, 1000, (), 0.0) is None
    assert a.admit("t", lim, 1, 1, (), 0.0) is not None
    a.refund("t", 100, 1000)  # the batch stored nothing after all
    assert a.admit("t", lim, 100, 1000, (), 0.0) is None
    a.refund("t", 10**6, 10**9)
    st = a.tenants["t"]
    assert st.records is not None and st.records.tokens == 100 and st.bytes is not None and st.bytes.tokens == 1000
    a.refund("unknown", 5, 5)  # a tenant forgotten meanwhile: nothing to give back to
    assert "unknown" not in a.tenants

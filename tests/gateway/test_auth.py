"""The auth middleware on a real gateway: every request gets a valid tenant, or a named refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cluster import Cluster, http


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("auth-none")), partitions=2, workers=1) as c:
        yield c


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "x" * 151, "a b", "é"])
def test_mode_none_refuses_an_invalid_scope_header(open_cluster: Cluster, value: str) -> None:
    status, _, body = http("GET", open_cluster.url + "/v1/services",
                           headers={"X-Scope-OrgID": value.encode("utf-8").decode("latin-1")})
    assert status == 400, body
    assert b'"INVALID_TENANT"' in body


def test_mode_none_takes_a_valid_scope_header_or_the_default(open_cluster: Cluster) -> None:
    assert http("GET", open_cluster.url + "/v1/services", headers={"X-Scope-OrgID": "acme"})[0] == 200
    assert http("GET", open_cluster.url + "/v1/services")[0] == 200

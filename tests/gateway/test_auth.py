"""The auth middleware on real gateways: every endpoint, with and without each credential.

One cluster runs in token mode; a second gateway process on the same router runs in basic
mode; a third module-level cluster runs with auth off (X-Scope-OrgID rules).
"""

from __future__ import annotations

import base64
import http.client as http_client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests._cluster import Cluster, free_port, free_ports, http, wait_until
from zlog.security import credentials

RECORD = json.dumps([{"service": "auth-svc", "message": "hello", "level": "INFO"}]).encode()
OTLP = json.dumps({"resourceLogs": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "auth-svc"}}]},
    "scopeLogs": [{"logRecords": [{"timeUnixNano": str(time.time_ns()), "body": {"stringValue": "hello otlp"}}]}]}]}).encode()
LOKI = json.dumps({"streams": [{"stream": {"service_name": "auth-svc"},
                                "values": [[str(time.time_ns()), "hello loki"]]}]}).encode()

# (method, path, body): every route of the gateway. Expected status per credential comes from
# the role the route needs (zlog/security/roles.py): write for POST /v1/logs, read for the GETs.
ENDPOINTS = [
    ("POST", "/v1/logs", RECORD),
    ("POST", "/loki/api/v1/push", LOKI),
    ("POST", "/otlp/v1/logs", OTLP),
    ("GET", "/loki/api/v1/labels", None),
    ("GET", "/loki/api/v1/query_range?query=" + quote('{service_name="auth-svc"}'), None),
    ("GET", "/v1/logs?limit=5", None),
    ("GET", "/v1/logs/export?limit=5", None),
    ("GET", "/v1/query?service=auth-svc&limit=5", None),
    ("GET", "/v1/services", None),
    ("GET", "/v1/partitions", None),
    ("GET", "/v1/partitions/0/records?offset=0", None),
    ("GET", "/v1/stats/volume?step=1m", None),
    ("GET", "/v1/stats/values?field=service", None),
    ("GET", "/", None),
    ("GET", "/ui/app.js", None),
    ("GET", "/v1/tail?service=auth-svc", None),
]
OPEN = [("GET", "/healthz"), ("GET", "/ready"), ("GET", "/metrics")]


@dataclass
class Creds:
    write: str
    read: str
    admin: str
    other: str  # a write token of another tenant
    revoked: str


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Creds]]:
    root = Path(tmp_path_factory.mktemp("auth-token"))
    path = root / "credentials.json"
    c = credentials.Credentials()
    c = credentials.add_tenant(c, "acme", 1)
    c = credentials.add_tenant(c, "globex", 1)
    c, write = credentials.create_token(c, "acme", "write", 1)
    c, read = credentials.create_token(c, "acme", "read", 1)
    c, admin = credentials.create_token(c, "acme", "admin", 1)
    c, other = credentials.create_token(c, "globex", "write", 1)
    c, revoked = credentials.create_token(c, "acme", "admin", 1)
    c = credentials.set_user(c, "alice", "acme", "read", "correct horse battery", 1)
    c = credentials.set_user(c, "bob", "acme", "write", "another long password", 1)
    credentials.save(path, c)
    extra = f'\n[auth]\nmode = "token"\ncredentials_file = "{path}"\n'
    with Cluster(root, partitions=2, workers=1, toml_extra=extra) as cluster:
        yield cluster, Creds(write, read, admin, other, revoked)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def call(cluster_url: str, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    h = {"Content-Type": "application/json", **headers} if body else headers
    if path.startswith("/v1/tail"):
        return stream_status(cluster_url, path, h)
    return http(method, cluster_url + path, body, h, timeout=10)


def stream_status(cluster_url: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """Status and headers of a streaming answer (SSE), and its body only when it is an error."""
    host, port = cluster_url.removeprefix("http://").split(":")
    conn = http_client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        data = resp.read() if resp.status >= 400 else b""
        return resp.status, dict(resp.headers), data
    finally:
        conn.close()


def expected(role: str | None, method: str, path: str) -> int:
    if path == "/" or path.startswith("/ui/"):  # static files load without a credential in token mode
        return 200
    if role is None:
        return 401
    needed = "write" if method == "POST" else "read"
    if role not in ("admin", needed):
        return 403
    return 204 if path == "/loki/api/v1/push" else 200


@pytest.mark.parametrize("who", ["none", "bad", "write", "read", "admin"])
def test_every_endpoint_with_each_token(token_cluster: tuple[Cluster, Creds], who: str) -> None:
    cluster, creds = token_cluster
    headers = {
        "none": {},
        "bad": bearer("zlog_AAAAAAAAAAAA_" + "x" * 43),
        "write": bearer(creds.write),
        "read": bearer(creds.read),
        "admin": bearer(creds.admin),
    }[who]
    role = None if who in ("none", "bad") else who
    for method, path, body in ENDPOINTS:
        status, resp_headers, data = call(cluster.url, method, path, body, headers)
        assert status == expected(role, method, path), (who, method, path, status, data[:300])
        assert "script-src 'self'" in resp_headers.get("Content-Security-Policy", ""), (path, resp_headers)
        assert resp_headers.get("X-Content-Type-Options") == "nosniff"
        if status in (401, 403):
            err = json.loads(data)
            assert err["error"] == ("UNAUTHORIZED" if status == 401 else "FORBIDDEN")
            for secret in (creds.write, creds.read, creds.admin):
                assert secret.encode() not in data and secret[-43:].encode() not in data
        if status == 401:
            assert resp_headers.get("WWW-Authenticate", "").startswith("Bearer")
    for method, path in OPEN:
        status, _, data = call(cluster.url, method, path, None, headers)
        assert status == 200, (who, path, data[:200])


def session_cookie(headers: dict[str, str]) -> str:
    """The zlog_token cookie a sign-in answer sets, after checking its attributes."""
    cookie = headers.get("Set-Cookie", "")
    name, _, rest = cookie.partition("=")
    value, _, attrs = rest.partition(";")
    assert name == "zlog_token" and value, cookie
    flags = {a.strip().split("=")[0].lower() for a in attrs.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= flags and "samesite=strict" in cookie.lower(), cookie
    return value


def test_a_browser_signs_in_once_and_its_cookie_only_reads(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, creds = token_cluster
    status, _, data = call(cluster.url, "POST", "/v1/session", None, bearer("zlog_AAAAAAAAAAAA_" + "x" * 43))
    assert status == 401 and b"zlog_AAAA" not in data
    status, headers, data = call(cluster.url, "POST", "/v1/session", None, bearer(creds.admin))
    assert status == 200 and json.loads(data) == {"mode": "token", "tenant": "acme", "role": "admin"}
    cookie = {"Cookie": f"zlog_token={session_cookie(headers)}"}
    assert session_cookie(headers) == creds.admin
    # Reads take the cookie, the event stream included; the session endpoint says who it is.
    for path in ("/v1/services", "/v1/logs?limit=5", "/v1/stats/volume?step=1m", "/v1/tail?service=auth-svc"):
        assert call(cluster.url, "GET", path, None, cookie)[0] == 200, path
    status, _, data = call(cluster.url, "GET", "/v1/session", None, cookie)
    assert status == 200 and json.loads(data)["session"] is True
    # Nothing else does, even for an admin token: not a write, not a POST query.
    for method, path, body in [("POST", "/v1/logs", RECORD), ("POST", "/loki/api/v1/push", LOKI),
                               ("POST", "/loki/api/v1/query_range", b"query=%7Bservice_name%3D%22a%22%7D")]:
        status, _, _ = call(cluster.url, method, path, body, cookie)
        assert status == 401, (method, path, status)
    # A header wins over the cookie: a bad header is refused whatever the cookie holds.
    assert call(cluster.url, "GET", "/v1/services", None, {**cookie, **bearer("zlog_AAAAAAAAAAAA_" + "y" * 43)})[0] == 401
    # A bad cookie is refused like a bad header; signing out clears it without a credential.
    assert call(cluster.url, "GET", "/v1/services", None, {"Cookie": "zlog_token=zlog_BBBBBBBBBBBB_zz"})[0] == 401
    status, headers, _ = call(cluster.url, "DELETE", "/v1/session", None, {})
    assert status == 200 and "zlog_token=;" in headers.get("Set-Cookie", "").replace('""', "")
    # Secure only over HTTPS: an untrusted peer's X-Forwarded-Proto is not believed...
    status, headers, _ = call(cluster.url, "POST", "/v1/session", None, {**bearer(creds.read), "X-Forwarded-Proto": "https"})
    assert status == 200 and "secure" not in headers["Set-Cookie"].lower()
    # ... a trusted proxy's is.
    proc, url, _ = _extra_gateway(cluster, {"ZLOG_GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"})
    try:
        wait_until(lambda: http("GET", url + "/healthz", timeout=2)[0] == 200, timeout=30, what="proxied gateway")
        status, headers, _ = call(url, "POST", "/v1/session", None, {**bearer(creds.read), "X-Forwarded-Proto": "https"})
        assert status == 200 and "; secure" in headers["Set-Cookie"].lower()
    finally:
        proc.terminate()
        proc.wait(15)
    # The viewer's page loads without a credential so that it can show the sign-in form.
    status, _, page = call(cluster.url, "GET", "/", None, {"Accept": "text/html"})
    assert status == 200 and b'id="signin"' in page


def test_a_basic_credential_is_refused_in_token_mode(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, _ = token_cluster
    status, _, _ = call(cluster.url, "GET", "/v1/services", None, basic("alice", "correct horse battery"))
    assert status == 401


def test_the_tenant_comes_from_the_token(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, creds = token_cluster
    # Naming its own tenant is fine; another is refused unless the credential is admin.
    assert call(cluster.url, "POST", "/v1/logs", RECORD, {**bearer(creds.write), "X-Scope-OrgID": "acme"})[0] == 200
    status, _, data = call(cluster.url, "POST", "/v1/logs", RECORD, {**bearer(creds.write), "X-Scope-OrgID": "globex"})
    assert status == 403 and b"FORBIDDEN" in data
    assert call(cluster.url, "GET", "/v1/services", None, {**bearer(creds.admin), "X-Scope-OrgID": "globex"})[0] == 200
    status, _, data = call(cluster.url, "GET", "/v1/services", None, {**bearer(creds.admin), "X-Scope-OrgID": "../x"})
    assert status == 400 and b"INVALID_TENANT" in data


def test_revocation_takes_effect_on_sighup_without_a_restart(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, creds = token_cluster
    assert call(cluster.url, "GET", "/v1/services", None, bearer(creds.revoked))[0] == 200  # now cached
    path = Path(cluster.root) / "credentials.json"
    c = credentials.revoke_token(credentials.load(path), creds.revoked)
    c, fresh = credentials.create_token(c, "acme", "read", 2)
    credentials.save(path, c)
    pid = cluster.procs["gateway-0"].pid
    assert call(cluster.url, "GET", "/v1/services", None, bearer(fresh))[0] == 401  # not loaded yet
    cluster.signal("gateway-0", signal.SIGHUP)
    wait_until(lambda: call(cluster.url, "GET", "/v1/services", None, bearer(creds.revoked))[0] == 401,
               timeout=10, what="the revoked token to be refused")
    # The negative answer for `fresh` was forgotten with the reload.
    assert call(cluster.url, "GET", "/v1/services", None, bearer(fresh))[0] == 200
    assert cluster.procs["gateway-0"].pid == pid and cluster.procs["gateway-0"].alive()
    # A damaged file on reload keeps the credentials in force.
    path.write_text("{not json")
    cluster.signal("gateway-0", signal.SIGHUP)
    wait_until(lambda: "credentials not reloaded" in cluster.logs("gateway-0"), timeout=10, what="the reload refusal")
    assert call(cluster.url, "GET", "/v1/services", None, bearer(fresh))[0] == 200
    credentials.save(path, c)


def _extra_gateway(cluster: Cluster, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = Path(cluster.root) / f"gateway-extra-{port}.stderr"
    full = dict(cluster.env, ZLOG_GATEWAY_PORT=str(port), ZLOG_GATEWAY_METRICS_PORT_BASE=str(free_ports(1)),
                ZLOG_GATEWAY_WAL="false", **env)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zlog", "gateway", "--index", "1"], env=full,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cluster.root)
    return proc, f"http://127.0.0.1:{port}", log


def test_basic_mode_users(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, creds = token_cluster
    proc, url, log = _extra_gateway(cluster, {"ZLOG_AUTH_MODE": "basic"})
    try:
        wait_until(lambda: http("GET", url + "/healthz", timeout=2)[0] == 200, timeout=30, what="basic gateway")
        status, headers, _ = call(url, "GET", "/v1/services", None, {})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
        assert call(url, "GET", "/v1/services", None, basic("alice", "correct horse battery"))[0] == 200
        assert call(url, "GET", "/v1/services", None, basic("alice", "wrong password here"))[0] == 401
        assert call(url, "GET", "/v1/services", None, basic("mallory", "correct horse battery"))[0] == 401
        assert call(url, "POST", "/v1/logs", RECORD, basic("alice", "correct horse battery"))[0] == 403
        assert call(url, "POST", "/v1/logs", RECORD, basic("bob", "another long password"))[0] == 200
        assert call(url, "GET", "/v1/services", None, bearer(creds.admin))[0] == 401  # wrong scheme for the mode
        # The browser sends basic credentials itself: no session to open, no cookie taken.
        status, headers, _ = call(url, "POST", "/v1/session", None, basic("alice", "correct horse battery"))
        assert status == 400 and "Set-Cookie" not in headers
        assert call(url, "GET", "/v1/services", None, {"Cookie": f"zlog_token={creds.admin}"})[0] == 401
        assert call(url, "GET", "/", None, {"Accept": "text/html"})[0] == 401  # the browser prompts
    finally:
        proc.terminate()
        proc.wait(15)
    assert "password" not in log.read_text().lower().replace("password)", "")


def test_auth_off_refuses_to_listen_beyond_loopback(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, _ = token_cluster
    proc, _, log = _extra_gateway(cluster, {"ZLOG_AUTH_MODE": "none", "ZLOG_GATEWAY_HOST": "0.0.0.0"})
    assert proc.wait(30) == 2
    text = log.read_text()
    assert "refuses to start" in text and "auth.allow_insecure" in text


@dataclass
class OpenGateway:
    url: str


@pytest.fixture(scope="module")
def open_cluster(token_cluster: tuple[Cluster, Creds]) -> Iterator[OpenGateway]:
    """A gateway with auth off, on the token cluster's router (one process, not a second cluster)."""
    cluster, _ = token_cluster
    proc, url, _ = _extra_gateway(cluster, {"ZLOG_AUTH_MODE": "none"})
    try:
        wait_until(lambda: http("GET", url + "/healthz", timeout=2)[0] == 200, timeout=30, what="open gateway")
        yield OpenGateway(url)
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "x" * 151, "a b", "é"])
def test_mode_none_refuses_an_invalid_scope_header(open_cluster: OpenGateway, value: str) -> None:
    status, _, body = http("GET", open_cluster.url + "/v1/services",
                           headers={"X-Scope-OrgID": value.encode("utf-8").decode("latin-1")})
    assert status == 400, body
    assert b'"INVALID_TENANT"' in body


def test_mode_none_takes_a_valid_scope_header_or_the_default(open_cluster: OpenGateway) -> None:
    assert http("GET", open_cluster.url + "/v1/services", headers={"X-Scope-OrgID": "acme"})[0] == 200
    assert http("GET", open_cluster.url + "/v1/services")[0] == 200
    assert os.environ.get("ZLOG_AUTH_MODE") is None


def test_the_query_cli_takes_its_token_from_the_environment(token_cluster: tuple[Cluster, Creds]) -> None:
    cluster, creds = token_cluster
    base = dict(cluster.env)
    base.pop("ZLOG_TOKEN", None)
    argv = [sys.executable, "-m", "zlog", "query", "--service", "auth-svc", "--limit", "3", "--url", cluster.url]
    refused = subprocess.run(argv, env=base, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "UNAUTHORIZED" in refused.stderr
    ok = subprocess.run(argv, env={**base, "ZLOG_TOKEN": creds.read}, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert creds.read not in ok.stdout + ok.stderr + refused.stderr

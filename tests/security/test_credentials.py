"""Credentials, hashes, roles and the verifier cache, without I/O."""

from __future__ import annotations

import base64

import pytest

from zlog.security import credentials, hashes, roles
from zlog.security.credentials import CredentialsError
from zlog.security.verifier import MAX_AUTH_HEADER, Presented, Verifier, parse_authorization


def _creds() -> tuple[credentials.Credentials, str]:
    c = credentials.add_tenant(credentials.Credentials(), "acme", 1)
    c, token = credentials.create_token(c, "acme", "write", 1)
    return c, token


def test_a_hash_verifies_only_its_secret_and_is_salted() -> None:
    h1, h2 = hashes.hash_secret("s3cret", 10), hashes.hash_secret("s3cret", 10)
    assert h1 != h2  # salted
    assert hashes.verify("s3cret", h1) and not hashes.verify("s3cret!", h1)
    for bad in ("", "scrypt$", "md5$1$1$1$a$b", "scrypt$99$8$1$AAAA$AAAA", "scrypt$x$8$1$a$b"):
        assert not hashes.verify("s3cret", bad)


def test_tokens_are_stored_hashed_and_round_trip_through_the_file_format() -> None:
    c, token = _creds()
    tid, secret = credentials.split_token(token) or ("", "")
    stored = credentials.to_json(c)
    assert secret not in str(stored) and stored["tokens"][tid]["hash"].startswith("scrypt$")
    assert credentials.parse(stored) == c


@pytest.mark.parametrize("mutate", [
    lambda d: d["tokens"].update({"short": d["tokens"].popitem()[1]}),
    lambda d: next(iter(d["tokens"].values())).update(role="root"),
    lambda d: next(iter(d["tokens"].values())).update(tenant="../etc"),
    lambda d: d["tenants"].update({"a/b": {}}),
    lambda d: d.update(version=2),
])
def test_a_malformed_file_is_refused_whole(mutate) -> None:  # type: ignore[no-untyped-def]
    c, _ = _creds()
    data = credentials.to_json(c)
    mutate(data)
    with pytest.raises(CredentialsError):
        credentials.parse(data)


def test_changes_check_tenants_roles_and_passwords() -> None:
    c, token = _creds()
    with pytest.raises(CredentialsError):
        credentials.create_token(c, "nobody", "read", 1)
    with pytest.raises(CredentialsError):
        credentials.set_user(c, "al ice", "acme", "read", "long enough password", 1)
    with pytest.raises(CredentialsError):
        credentials.set_user(c, "alice", "acme", "read", "short", 1)
    gone = credentials.remove_tenant(c, "acme")
    assert not gone.tokens and "acme" not in gone.tenants
    assert not credentials.revoke_token(c, token).tokens


def test_roles_table() -> None:
    assert roles.required_role("POST", "/v1/logs") == "write"
    assert roles.required_role("POST", "/loki/api/v1/push") == "write"
    assert roles.required_role("GET", "/v1/logs") == "read"
    assert roles.required_role("POST", "/loki/api/v1/query_range") == "read"
    assert roles.required_role("DELETE", "/v1/logs") == "admin"
    assert roles.required_role("POST", "/v1/something-new") == "admin"
    assert roles.required_role("PUT", "/logs-a/_bulk") == "write"
    assert roles.required_role("GET", "/_license") == "any" and roles.allows("write", "any")
    assert roles.required_role("PUT", "/_index_template/x") == "any"
    assert roles.required_role("PUT", "/v1/logs") == "admin"
    assert roles.required_role("GET", "/") == "any" and roles.required_role("GET", "/ui/app.js") == "any"
    assert roles.required_role("GET", "/_cluster/health") == "any"
    assert roles.allows("admin", "write") and not roles.allows("read", "write") and not roles.allows("write", "read")


def test_authorization_header_parsing() -> None:
    assert parse_authorization("Bearer abc") == Presented("bearer", "abc")
    assert parse_authorization("basic " + base64.b64encode(b"u:p:q").decode()) == Presented("basic", "u:p:q")
    for bad in (None, "", "Bearer", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b"\xff:x").decode(), "Digest x", "Bearer " + "a" * MAX_AUTH_HEADER):
        assert parse_authorization(bad) is None


def test_verifier_caches_and_forgets_on_reload() -> None:
    now = [0.0]
    c, token = _creds()
    v = Verifier(c, cache_s=10, clock=lambda: now[0])
    p = Presented("bearer", token)
    assert v.cached(p) is None and v.needs_hashing(p)
    principal = v.check(p)
    assert principal is not None and principal.tenant == "acme" and principal.role == "write"
    assert v.cached(p) == principal
    wrong = Presented("bearer", token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert v.check(wrong) is None and v.cached(wrong) is False
    # A check that began before a reload does not store its stale answer after it.
    gen = v.generation
    v.replace(credentials.revoke_token(c, token))
    assert v.cached(p) is None and v.check(p, gen) is None
    assert v.cached(p) is None
    now[0] = 100.0
    assert not v.needs_hashing(Presented("bearer", "zlog_AAAAAAAAAAAA_" + "x" * 43))
    assert not v.needs_hashing(Presented("bearer", "x" * 500))


def test_the_cli_manages_tenants_tokens_and_users(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from zlog.ops.cli import main

    def zlog(*args: str, stdin: str = "") -> tuple[int, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["--data-dir", str(tmp_path), *args])
        out = capsys.readouterr()
        return code, out.out

    assert zlog("token", "create", "--tenant", "acme", "--role", "read")[0] == 2  # no such tenant
    assert zlog("tenant", "add", "acme")[0] == 0
    assert zlog("tenant", "add", "../x")[0] == 2
    code, token = zlog("token", "create", "--tenant", "acme", "--role", "write", "--note", "ci")
    token = token.strip()
    assert code == 0 and credentials.split_token(token) is not None
    assert zlog("user", "add", "alice", "--tenant", "acme", "--role", "read", "--password-stdin",
                stdin="a long enough password\n")[0] == 0
    listed = zlog("token", "list")[1]
    tid = token.split("_")[1]
    assert tid in listed and token not in listed  # the secret is shown once, at creation
    path = tmp_path / "credentials.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert token not in text and "a long enough password" not in text
    assert "tokens=1\tusers=1" in zlog("tenant", "list")[1]
    assert zlog("token", "revoke", token)[0] == 0 and tid not in zlog("token", "list")[1]
    assert zlog("tenant", "remove", "acme")[0] == 0
    assert "alice" not in zlog("user", "list")[1]


def test_lockout_counts_failures_per_client_in_a_window() -> None:
    from zlog.security.lockout import Lockout

    lock = Lockout(max_failures=3, window_s=10, max_clients=2)
    for t in (0.0, 1.0, 2.0):
        assert lock.blocked("a", t) == 0
        lock.failed("a", t)
    assert lock.blocked("a", 3.0) == 7.0 and lock.blocked("b", 3.0) == 0
    assert lock.blocked("a", 10.0) == 0  # the window ended
    lock.failed("b", 11.0)
    lock.failed("c", 11.0)
    lock.failed("d", 11.0)  # bounded: the oldest client is forgotten
    assert len(lock._clients) == 2


def test_preflight_names_what_would_stop_a_process(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from zlog.config import Config
    from zlog.ops.cli import main
    from zlog.security import curve
    from zlog.security.preflight import refusals

    base = Config()
    base = dataclasses.replace(base, cluster=dataclasses.replace(base.cluster, data_dir=tmp_path))
    assert refusals(base) == []
    wide = dataclasses.replace(base, gateway=dataclasses.replace(base.gateway, host="0.0.0.0"),
                               router=dataclasses.replace(base.router, front=("tcp://0.0.0.0:5555",)))
    why = refusals(wide)
    assert len(why) == 2 and "auth.allow_insecure" in why[0] and "cluster.curve" in why[1]
    curved = dataclasses.replace(base, cluster=dataclasses.replace(base.cluster, curve=True))
    assert any("zlog keys generate" in w for w in refusals(curved))
    for name in ("server", "gateway", "worker"):
        curve.generate(tmp_path / "keys", name)
    assert refusals(curved) == []
    monkeypatch.setenv("ZLOG_GATEWAY_HOST", "0.0.0.0")
    assert main(["--data-dir", str(tmp_path / "other"), "up"]) == 2
    assert "zlog up: auth.mode is none" in capsys.readouterr().err

"""Login, token rotation and JWT refusals, against a real fake Kakao and both databases."""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import select

from server.app import create_app
from server.settings import Settings
from storage.models import RefreshToken, User
from tests.conftest import dev_login, make_settings
from tests.fakes.kakao import APP_ID, REST_API_KEY, FakeKakao, KakaoUser

REDIRECT = "https://app.example/kakao/callback"


@pytest.fixture
def kakao() -> Iterator[FakeKakao]:
    with FakeKakao() as fake:
        yield fake


def kakao_settings(tmp_path: Path, db_url: str, fake: FakeKakao, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kakao_auth_url": fake.url,
        "kakao_api_url": fake.url,
        "kakao_app_id": APP_ID,
        "kakao_rest_api_key": REST_API_KEY,
    }
    values.update(overrides)
    return make_settings(tmp_path, db_url, **values)


@pytest.fixture
def kclient(tmp_path: Path, db_url: str, kakao: FakeKakao) -> Iterator[TestClient]:
    with TestClient(create_app(kakao_settings(tmp_path, db_url, kakao))) as c:
        yield c


def db_call(client: TestClient, fn: Any) -> Any:
    """Run `await fn(session)` on the app's own loop and database."""

    async def go() -> Any:
        async with client.app.state.services.sessions() as session:  # type: ignore[attr-defined]
            return await fn(session)

    return client.portal.call(go)  # type: ignore[union-attr]


def count_users(client: TestClient) -> int:
    async def q(session: Any) -> int:
        return int((await session.execute(sa.select(sa.func.count()).select_from(User))).scalar_one())

    return int(db_call(client, q))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- Kakao, mobile flow -------------------------------------------------------------------------


def test_kakao_mobile_login_creates_the_user_once(kclient: TestClient, kakao: FakeKakao) -> None:
    """Two logins with Kakao tokens for the same Kakao user give the same user, created once."""
    person = KakaoUser(kakao_id=9_000_000_001, nickname="김영희")
    first = kclient.post("/v1/auth/kakao", json={"access_token": kakao.mint_token(person)})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["user"]["display_name"] == "김영희"
    assert body["user"]["profile_image_url"] == person.profile_image_url
    assert "kakao_id" not in body["user"]
    second = kclient.post("/v1/auth/kakao", json={"access_token": kakao.mint_token(person)})
    assert second.status_code == 200
    assert second.json()["user"]["id"] == body["user"]["id"]
    assert count_users(kclient) == 1
    me = kclient.get("/v1/users/me", headers=bearer(second.json()["access_token"]))
    assert me.json()["id"] == body["user"]["id"]
    assert "/v1/user/access_token_info" in kakao.paths() and "/v2/user/me" in kakao.paths()


def test_kakao_login_keeps_the_users_own_name(kclient: TestClient, kakao: FakeKakao) -> None:
    """A later Kakao login refreshes the picture but not a display name the user has changed."""
    person = KakaoUser(kakao_id=77, nickname="영희")
    tokens = kclient.post("/v1/auth/kakao", json={"access_token": kakao.mint_token(person)}).json()
    kclient.patch("/v1/users/me", headers=bearer(tokens["access_token"]), json={"display_name": "할머니"})
    person.nickname, person.profile_image_url = "영희2", "http://k.kakaocdn.net/dn/new.jpg"
    again = kclient.post("/v1/auth/kakao", json={"access_token": kakao.mint_token(person)}).json()
    assert again["user"]["display_name"] == "할머니"
    assert again["user"]["profile_image_url"] == "http://k.kakaocdn.net/dn/new.jpg"


def test_kakao_user_without_nickname_gets_an_empty_name(kclient: TestClient, kakao: FakeKakao) -> None:
    """A Kakao account that shared no nickname or picture still logs in."""
    person = KakaoUser(kakao_id=78, nickname=None, profile_image_url=None)
    r = kclient.post("/v1/auth/kakao", json={"access_token": kakao.mint_token(person)})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["display_name"] == ""
    assert r.json()["user"]["profile_image_url"] is None


def test_kakao_token_for_another_app_is_refused(kclient: TestClient, kakao: FakeKakao) -> None:
    """A valid Kakao token minted for some other app's id gets 401 and creates no user."""
    token = kakao.mint_token(KakaoUser(kakao_id=5), app_id=APP_ID + 1)
    r = kclient.post("/v1/auth/kakao", json={"access_token": token})
    assert r.status_code == 401
    assert "another app" in r.json()["detail"]
    assert "/v2/user/me" not in kakao.paths()
    assert count_users(kclient) == 0


def test_kakao_invalid_token_is_refused(kclient: TestClient) -> None:
    """A token Kakao does not know answers 401 with Kakao's reason."""
    r = kclient.post("/v1/auth/kakao", json={"access_token": "not-a-kakao-token"})
    assert r.status_code == 401
    assert "this access token does not exist" in r.json()["detail"]
    assert count_users(kclient) == 0


def test_kakao_login_body_must_pick_one_flow(kclient: TestClient) -> None:
    """Both flows at once, neither, or a code without its redirect_uri are 422."""
    for body in ({}, {"access_token": "a", "code": "c", "redirect_uri": REDIRECT}, {"code": "c"}):
        assert kclient.post("/v1/auth/kakao", json=body).status_code == 422, body


# --- Kakao, web flow ----------------------------------------------------------------------------


def test_kakao_web_code_flow(tmp_path: Path, db_url: str, kakao: FakeKakao) -> None:
    """A web authorization code is exchanged (with the client secret) and logs the user in."""
    kakao.client_secret = "s3cret"
    settings = kakao_settings(tmp_path, db_url, kakao, kakao_client_secret="s3cret")
    with TestClient(create_app(settings)) as client:
        code = kakao.mint_code(KakaoUser(kakao_id=42, nickname="철수"), REDIRECT)
        r = client.post("/v1/auth/kakao", json={"code": code, "redirect_uri": REDIRECT})
        assert r.status_code == 200, r.text
        assert r.json()["user"]["display_name"] == "철수"
    (form,) = [f for _, path, _, f in kakao.requests if path == "/oauth/token"]
    assert form["grant_type"] == ["authorization_code"]
    assert form["client_id"] == [REST_API_KEY]
    assert form["client_secret"] == ["s3cret"]
    assert form["redirect_uri"] == [REDIRECT]


def test_kakao_reused_code_is_refused(kclient: TestClient, kakao: FakeKakao) -> None:
    """A code used once already answers 401 naming Kakao's KOE320, and no second login happens."""
    code = kakao.mint_code(KakaoUser(kakao_id=43), REDIRECT)
    assert kclient.post("/v1/auth/kakao", json={"code": code, "redirect_uri": REDIRECT}).status_code == 200
    r = kclient.post("/v1/auth/kakao", json={"code": code, "redirect_uri": REDIRECT})
    assert r.status_code == 401
    assert "KOE320" in r.json()["detail"] and "already used" in r.json()["detail"]


def test_kakao_code_with_wrong_redirect_uri_is_refused(kclient: TestClient, kakao: FakeKakao) -> None:
    """A code presented with a different redirect_uri than it was issued for is refused."""
    code = kakao.mint_code(KakaoUser(kakao_id=44), REDIRECT)
    r = kclient.post("/v1/auth/kakao", json={"code": code, "redirect_uri": "https://evil.example/cb"})
    assert r.status_code == 401
    assert count_users(kclient) == 0


def test_kakao_wrong_client_credentials_are_our_fault(tmp_path: Path, db_url: str, kakao: FakeKakao) -> None:
    """Kakao refusing our REST key is a server misconfiguration: 502, not the user's 401."""
    settings = kakao_settings(tmp_path, db_url, kakao, kakao_rest_api_key="wrong-key")
    with TestClient(create_app(settings)) as client:
        code = kakao.mint_code(KakaoUser(kakao_id=45), REDIRECT)
        r = client.post("/v1/auth/kakao", json={"code": code, "redirect_uri": REDIRECT})
        assert r.status_code == 502
        assert "KOE101" in r.json()["detail"]


# --- Kakao unavailable --------------------------------------------------------------------------


def test_kakao_down_answers_503_and_creates_nothing(kclient: TestClient, kakao: FakeKakao) -> None:
    """With Kakao's port closed, login answers 503 with a clear message and stores no user."""
    token = kakao.mint_token(KakaoUser(kakao_id=46))
    kakao.stop()
    r = kclient.post("/v1/auth/kakao", json={"access_token": token})
    assert r.status_code == 503
    assert "Kakao is unreachable" in r.json()["detail"]
    assert count_users(kclient) == 0


def test_kakao_server_error_answers_502_and_creates_nothing(kclient: TestClient, kakao: FakeKakao) -> None:
    """Kakao answering 500 gives 502 for both flows, and no user row."""
    token = kakao.mint_token(KakaoUser(kakao_id=47))
    code = kakao.mint_code(KakaoUser(kakao_id=48), REDIRECT)
    kakao.fail_with = 500
    assert kclient.post("/v1/auth/kakao", json={"access_token": token}).status_code == 502
    assert kclient.post("/v1/auth/kakao", json={"code": code, "redirect_uri": REDIRECT}).status_code == 502
    assert count_users(kclient) == 0


def test_kakao_too_slow_answers_503(tmp_path: Path, db_url: str, kakao: FakeKakao) -> None:
    """Kakao answering after our timeout is treated as down: 503, no user."""
    kakao.delay_s = 1.0
    with TestClient(create_app(kakao_settings(tmp_path, db_url, kakao, kakao_timeout_s=0.2))) as client:
        r = client.post("/v1/auth/kakao", json={"access_token": kakao.mint_token(KakaoUser(kakao_id=49))})
        assert r.status_code == 503
        assert "in time" in r.json()["detail"]
        assert count_users(client) == 0


def test_kakao_not_configured_answers_503(client: TestClient) -> None:
    """Without SILVERTALK_KAKAO_APP_ID the endpoint says Kakao login is not configured."""
    r = client.post("/v1/auth/kakao", json={"access_token": "anything"})
    assert r.status_code == 503
    assert "SILVERTALK_KAKAO_APP_ID" in r.json()["detail"]


# --- dev login ----------------------------------------------------------------------------------


def test_dev_login_finds_or_creates_by_name(client: TestClient) -> None:
    """Dev login answers a token pair; the same name is the same user, another name another."""
    a = client.post("/v1/auth/dev-login", json={"name": "  kim "}).json()
    assert set(a) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert a["user"]["display_name"] == "kim"
    assert client.post("/v1/auth/dev-login", json={"name": "kim"}).json()["user"]["id"] == a["user"]["id"]
    assert client.post("/v1/auth/dev-login", json={"name": "lee"}).json()["user"]["id"] != a["user"]["id"]


def test_simultaneous_first_logins_create_one_user(client: TestClient) -> None:
    """Four first logins with one new name at once all get the same, single user."""
    ids: list[str] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        r = client.post("/v1/auth/dev-login", json={"name": "park"})
        ids.append(r.json()["user"]["id"] if r.status_code == 200 else str(r.status_code))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1, ids
    assert count_users(client) == 1


def test_dev_login_validates_the_name(client: TestClient) -> None:
    """Names must be 1-50 characters after trimming."""
    for name in ("", "   ", "x" * 51):
        assert client.post("/v1/auth/dev-login", json={"name": name}).status_code == 422
    assert client.post("/v1/auth/dev-login", json={"name": "김" * 50}).status_code == 200


def test_dev_login_is_404_when_disabled(tmp_path: Path, db_url: str) -> None:
    """With SILVERTALK_DEV_LOGIN=false the endpoint does not exist as far as clients can tell."""
    with TestClient(create_app(make_settings(tmp_path, db_url, dev_login=False))) as client:
        assert client.post("/v1/auth/dev-login", json={"name": "kim"}).status_code == 404


# --- refresh rotation and logout ----------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient) -> None:
    """A refresh gives a new working pair; replaying the spent token kills the whole family."""
    login = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()
    other_device = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()
    r = client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["refresh_token"] != login["refresh_token"]
    assert rotated["user"]["id"] == login["user"]["id"]
    assert client.get("/v1/users/me", headers=bearer(rotated["access_token"])).status_code == 200

    replay = client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    # The newest token of that family died with it; the other login's family is untouched.
    assert (
        client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401
    )
    assert (
        client.post("/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]}).status_code
        == 200
    )


def test_refresh_chain_keeps_working(client: TestClient) -> None:
    """Each rotated token can itself be rotated, many times over."""
    token = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()["refresh_token"]
    for _ in range(5):
        r = client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 200
        token = r.json()["refresh_token"]


def test_concurrent_refreshes_with_one_token_let_exactly_one_through(client: TestClient) -> None:
    """Two simultaneous refreshes of the same token: one wins, the other is a replay (401)."""
    token = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()["refresh_token"]
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        codes.append(client.post("/v1/auth/refresh", json={"refresh_token": token}).status_code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 401]


def test_expired_or_unknown_refresh_token_is_refused(client: TestClient) -> None:
    """A refresh token past its expiry, or one never issued, answers 401."""
    token = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()["refresh_token"]

    async def expire(session: Any) -> None:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(sa.update(RefreshToken).values(expires_at=past))
        await session.commit()

    db_call(client, expire)
    assert client.post("/v1/auth/refresh", json={"refresh_token": token}).status_code == 401
    assert client.post("/v1/auth/refresh", json={"refresh_token": "never-issued"}).status_code == 401
    assert client.post("/v1/auth/refresh", json={}).status_code == 422


def test_logout_revokes_the_refresh_token(client: TestClient) -> None:
    """After logout the refresh token (and its rotations) no longer work; unknown tokens are 204 too."""
    login = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()
    rotated = client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}).json()
    assert client.post("/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}).status_code == 204
    assert (
        client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401
    )
    assert client.post("/v1/auth/logout", json={"refresh_token": "nonsense"}).status_code == 204


def test_refresh_tokens_are_stored_hashed(client: TestClient) -> None:
    """The database holds only a SHA-256 of each refresh token, never the token."""
    token = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()["refresh_token"]

    async def hashes(session: Any) -> list[str]:
        return list((await session.execute(select(RefreshToken.token_hash))).scalars())

    stored = db_call(client, hashes)
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64


# --- access token refusals ----------------------------------------------------------------------


def _claims(settings: Settings, user_id: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_bad_access_tokens_get_401(client: TestClient, settings: Settings) -> None:
    """alg none, expired, wrong audience/issuer, forged, missing claims and garbage all answer 401."""
    login = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()
    uid, key = login["user"]["id"], settings.jwt_secret
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    with warnings.catch_warnings():  # our 44-byte test key is short for HS512; the point is the alg
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        hs512 = jwt.encode(_claims(settings, uid), key, algorithm="HS512")
    bad = {
        "alg none": jwt.encode(_claims(settings, uid), "", algorithm="none"),
        "expired": jwt.encode(_claims(settings, uid, exp=past), key, algorithm="HS256"),
        "wrong audience": jwt.encode(_claims(settings, uid, aud="someone-else"), key, algorithm="HS256"),
        "wrong issuer": jwt.encode(_claims(settings, uid, iss="evil"), key, algorithm="HS256"),
        "forged": jwt.encode(_claims(settings, uid), "not-our-secret-" + "y" * 32, algorithm="HS256"),
        "our key, other alg": hs512,
        "no exp": jwt.encode(_claims(settings, uid, exp=None), key, algorithm="HS256"),
        "no sub": jwt.encode(_claims(settings, uid, sub=None), key, algorithm="HS256"),
        "sub not a uuid": jwt.encode(_claims(settings, "kim"), key, algorithm="HS256"),
        "garbage": "not.a.jwt",
        "refresh token as access": login["refresh_token"],
    }
    good = jwt.encode(_claims(settings, uid), key, algorithm="HS256")
    assert client.get("/v1/users/me", headers=bearer(good)).status_code == 200
    for name, token in bad.items():
        r = client.get("/v1/users/me", headers=bearer(token))
        assert r.status_code == 401, name
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/users/me").status_code == 401
    assert client.get("/v1/users/me", headers={"Authorization": f"Basic {good}"}).status_code == 401


def test_token_of_a_deleted_user_gets_401(client: TestClient) -> None:
    """A still-valid access token stops working once its user is gone, and so does the refresh token."""
    login = client.post("/v1/auth/dev-login", json={"name": "kim"}).json()
    headers = dev_login(client, "kim")
    user_id = uuid.UUID(login["user"]["id"])

    async def delete(session: Any) -> None:
        await session.delete(await session.get(User, user_id))
        await session.commit()

    db_call(client, delete)
    assert client.get("/v1/users/me", headers=headers).status_code == 401
    assert client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}).status_code == 401

import pytest

from entitlements.scim import (
    ScimAuthError,
    ScimClient,
    ScimGroup,
    ScimProtocolError,
    ScimUnavailableError,
    ScimUser,
)


@pytest.fixture
def scim(scim_server):
    # The provider caps every page at 4 resources whatever the client asks for.
    return scim_server(max_results=4)


def test_users_are_read_across_pages_and_normalized(scim):
    for i in range(11):
        scim.add_user(f"user{i:02d}", email=f"User{i:02d}@Example.com", given="Given", family=f"Family{i}")
    scim.add_user("ghost@example.com", active=False, external_id="HR-77")

    users = list(ScimClient(base_url=scim.base_url, token=scim.token, page_size=3).iter_users())

    assert len(users) == 12
    assert len({u.id for u in users}) == 12
    assert ScimUser(
        id=scim.users["user03"],
        user_name="user03",
        email="user03@example.com",
        name="Given Family3",
        active=True,
        external_id="",
    ) in users
    ghost = next(u for u in users if u.user_name == "ghost@example.com")
    assert ghost.active is False
    assert ghost.email == "ghost@example.com"
    assert ghost.external_id == "HR-77"


def test_provider_capping_the_page_size_still_yields_everything(scim):
    for i in range(9):
        scim.add_user(f"capped{i}", email=f"capped{i}@example.com")

    users = list(ScimClient(base_url=scim.base_url, token=scim.token, page_size=100).iter_users())

    assert sorted(u.user_name for u in users) == [f"capped{i}" for i in range(9)]


def test_groups_give_display_name_and_member_ids(scim):
    for name in ("ann", "bob", "cid"):
        scim.add_user(name, email=f"{name}@example.com")
    for i in range(5):
        scim.add_group(f"Team {i}", ["ann"])
    scim.add_group("Admins", ["ann", "bob"])

    groups = list(ScimClient(base_url=scim.base_url, token=scim.token, page_size=2).iter_groups())

    assert len(groups) == 6
    admins = next(g for g in groups if g.display_name == "Admins")
    assert isinstance(admins, ScimGroup)
    assert set(admins.member_ids) == {scim.users["ann"], scim.users["bob"]}


def test_empty_directory_yields_nothing(scim):
    client = ScimClient(base_url=scim.base_url, token=scim.token)
    assert list(client.iter_users()) == []
    assert list(client.iter_groups()) == []


def test_bad_token_raises_auth_error_naming_the_service(scim):
    client = ScimClient(base_url=scim.base_url, token="wrong-token")

    with pytest.raises(ScimAuthError) as excinfo:
        list(client.iter_users())

    assert excinfo.value.status == 401
    assert "refused the bearer token" in str(excinfo.value)
    assert scim.base_url in str(excinfo.value)
    assert excinfo.value.retryable is False


def test_server_down_is_unavailable_and_retryable(closed_port):
    client = ScimClient(base_url=f"http://127.0.0.1:{closed_port}/v2", token="t", timeout=2)

    with pytest.raises(ScimUnavailableError) as excinfo:
        list(client.iter_users())

    assert "unreachable" in str(excinfo.value)
    assert excinfo.value.retryable is True


def test_server_error_is_unavailable(httpserver):
    httpserver.expect_request("/scim/v2/Users").respond_with_json(
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "503", "detail": "maintenance"},
        status=503,
    )
    client = ScimClient(base_url=httpserver.url_for("/scim/v2"), token="t")

    with pytest.raises(ScimUnavailableError) as excinfo:
        list(client.iter_users())

    assert excinfo.value.status == 503
    assert "maintenance" in str(excinfo.value)


def test_timeout_is_unavailable(httpserver):
    import time

    def slow(request):
        time.sleep(1.5)
        from werkzeug import Response

        return Response("{}", content_type="application/scim+json")

    httpserver.expect_request("/v2/Users").respond_with_handler(slow)
    client = ScimClient(base_url=httpserver.url_for("/v2"), token="t", timeout=0.3)

    with pytest.raises(ScimUnavailableError, match="timed out"):
        list(client.iter_users())


def test_html_answer_is_a_protocol_error(httpserver):
    httpserver.expect_request("/v2/Users").respond_with_data("<html>login</html>", content_type="text/html")
    client = ScimClient(base_url=httpserver.url_for("/v2"), token="t")

    with pytest.raises(ScimProtocolError, match="did not answer JSON"):
        list(client.iter_users())


def test_json_that_is_not_a_list_response_is_a_protocol_error(httpserver):
    httpserver.expect_request("/v2/Users").respond_with_json({"Resources": []})
    client = ScimClient(base_url=httpserver.url_for("/v2"), token="t")

    with pytest.raises(ScimProtocolError, match="ListResponse"):
        list(client.iter_users())


def test_wrong_base_url_is_a_protocol_error(scim):
    client = ScimClient(base_url=scim.base_url.removesuffix("/v2") + "/nope/v2", token=scim.token)

    with pytest.raises(ScimProtocolError) as excinfo:
        list(client.iter_users())

    assert excinfo.value.status == 404
    assert "check the base URL" in str(excinfo.value)

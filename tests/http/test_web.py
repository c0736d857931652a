"""The dashboard is served at / and reads everything through the GraphQL API."""

from __future__ import annotations

import re

import httpx2
import pytest

from graphconda.http.web import WEB_DIR
from tests.helpers.html import page_assets


async def test_dashboard_is_served(client: httpx2.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/app.js">' in page.text
    script = await client.get("/web/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await client.get("/web/style.css")).status_code == 200
    assert (await client.get("/web/../pyproject.toml")).status_code == 404


def dashboard_scripts() -> dict[str, str]:
    """The dashboard's own modules (app.js, lib/, pages/), not the vendored GraphiQL."""
    files = [WEB_DIR / "app.js", *sorted((WEB_DIR / "lib").glob("*.js")), *sorted((WEB_DIR / "pages").glob("*.js"))]
    return {str(f.relative_to(WEB_DIR)): f.read_text() for f in files}


def test_dashboard_talks_to_graphql_only() -> None:
    """GraphQL for all data; /auth only for the provider list and signing out."""
    scripts = dashboard_scripts()
    assert len(scripts) >= 10
    targets = {t for s in scripts.values() for t in re.findall(r"fetch\(([^,)]*)", s)}
    assert targets == {'"/graphql"', '"/auth/providers"', 'everywhere ? "/auth/logout?everywhere=1" : "/auth/logout"'}
    assert {t for s in scripts.values() for t in re.findall(r"\.open\(([^)]*)\)", s)} == {'"POST", "/graphql"'}
    for name, script in scripts.items():
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script, name  # data never becomes markup
        assert "outerHTML" not in script and "document.write" not in script, name


async def test_every_dashboard_document_is_valid(client: httpx2.AsyncClient) -> None:
    """Each operation any page sends validates against the schema the server serves (introspected)."""
    from graphql import build_client_schema, get_introspection_query, parse, validate

    introspection = (await client.post("/graphql", json={"query": get_introspection_query()})).json()["data"]
    schema = build_client_schema(introspection)
    documents = {(name, d) for name, script in dashboard_scripts().items()
                 for d in re.findall(r"\bgql`(.*?)`", script, flags=re.S)}
    assert len(documents) >= 25
    for name, document in documents:
        errors = validate(schema, parse(document))
        assert not errors, (name, document, errors)
    operations = [re.match(r"\s*(query|mutation|subscription)\s+(\w+)", d) for _, d in documents]
    assert all(operations), "every document is a named operation"
    kinds = {op.group(1) for op in operations if op}
    assert kinds == {"query", "mutation", "subscription"}


@pytest.mark.parametrize("path", ["/", "/web/app.js", "/web/style.css", "/web/missing.js", "/t/gc_wrong/"])
async def test_security_headers_on_dashboard_responses(client: httpx2.AsyncClient, path: str) -> None:
    """Errors included: whatever the browser renders from us runs under the policy."""
    response = await client.get(path)
    policy = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'"  # no inline script, no javascript: URLs, no eval
    assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy["default-src"] + policy["style-src"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_graphiql_page_is_ours_with_strict_script_policy(client: httpx2.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == "'none'"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    # Every script is a file of ours: none inline, none from another host.
    assert page.text.count("<script") == page.text.count("<script src=") == 4
    assets = page_assets(page.text)
    assert len(assets) == 6 and all(a.startswith("/web/") for a in assets), assets
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        kind = "javascript" if asset.endswith(".js") else "css"
        assert kind in response.headers["content-type"], asset
    for vendored in ("graphiql-3.8.3", "react-18.3.1", "react-dom-18.3.1"):
        assert (await client.get(f"/web/vendor/{vendored}/LICENSE")).status_code == 200
    # Queries over GET still work: the page is only for browsers that ask for HTML without a query.
    answer = await client.get("/graphql", params={"query": "{ serverInfo { version } }"},
                              headers={"Accept": "application/json"})
    assert answer.json()["data"]["serverInfo"]["version"]

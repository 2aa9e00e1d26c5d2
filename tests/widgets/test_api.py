"""widgets.api: service errors become messages; HTML is escaped; dashboard links."""

from __future__ import annotations

import urllib.error

import pytest

from latticehub.client import TrackingAPIError, TrackingClient
from widgets import api


@pytest.mark.parametrize(
    ("exc", "status", "words"),
    [
        (TrackingAPIError(401, "UNAUTHENTICATED", "Authentication required"), 401,
         "token was refused"),
        (TrackingAPIError(403, "PERMISSION_DENIED", "only the owner"), 403, "Not allowed"),
        (TrackingAPIError(404, "RESOURCE_DOES_NOT_EXIST", "Run x does not exist"), 404,
         "Not found"),
        (TrackingAPIError(409, "CONFLICT", "job j has already ended"), 409, "Not possible now"),
        (TrackingAPIError(429, "JOB_LIMIT_EXCEEDED", "group lqcd has 1 of 1 jobs"), 429,
         "Job limit reached: group lqcd has 1 of 1 jobs"),
        (TrackingAPIError(400, "INVALID_PARAMETER_VALUE", "config: bad L"), 400,
         "refused the request: config: bad L"),
        (TrackingAPIError(503, "EXECUTOR_UNAVAILABLE", "executor 'slurm' is not configured"),
         503, "cannot run this"),
        (TrackingAPIError(502, "HTTP_ERROR", "Bad Gateway"), 502, "failed (HTTP 502)"),
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), None,
         "Cannot reach the experiments service at http://h/s"),
        (TimeoutError("timed out"), None, "Cannot reach"),
        (ValueError("Expecting value"), None, "not JSON"),
        (RuntimeError("no token: set LATTICEHUB_TOKEN"), None, "No experiments service"),
    ],
)  # fmt: skip
def test_describe_maps_failures_to_messages(exc, status, words):
    error = api.describe(exc, "http://h/s")
    assert error.status == status and words in error.message
    assert error.transient == (status is None or status in (429, 502, 503))


def test_status_html_escapes():
    text = api.status_html("<img src=x onerror=alert(1)> & co", "error")
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt; &amp; co" in text
    assert api.status_html("") == ""


def test_dashboard_link_inside_a_single_user_server(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://172.17.0.1:8081/hub/api")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    monkeypatch.delenv("LATTICEHUB_TRACKING_URL", raising=False)
    client = TrackingClient(token="t")  # the URL as the default finds it
    assert client.url == "http://172.17.0.1:8081/services/experiments"
    assert api.dashboard_url(client, "abc") == "/services/experiments/runs/abc"
    other = TrackingClient("http://127.0.0.1:9/services/experiments", "t")
    assert api.dashboard_url(other, "abc") == "http://127.0.0.1:9/services/experiments/runs/abc"


def test_a_bad_answer_is_no_refusal_and_a_client_error_becomes_a_service_error():
    error = api.describe(TrackingAPIError(200, "BAD_ANSWER", "the answer to GET /x is not JSON"))
    assert error.status is None and error.transient and error.code == "BAD_ANSWER"
    assert error.message.startswith("The answer to GET /x is not JSON")
    client = TrackingClient("http://h/s", "t")
    with pytest.raises(api.ServiceError) as caught, api.service_errors(client):
        raise TrackingAPIError(404, "RESOURCE_DOES_NOT_EXIST", "Run x does not exist")
    assert caught.value.status == 404 and "Not found" in caught.value.message
    with pytest.raises(api.ServiceError) as caught, api.service_errors(client):
        raise ConnectionRefusedError(111, "Connection refused")
    assert "Cannot reach the experiments service at http://h/s" in caught.value.message


def test_dashboard_link_with_the_service_address_from_the_hub(monkeypatch):
    # jupyterhub_config.py gives user containers the service's own (internal) address
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://172.17.0.1:8081/hub/api")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    monkeypatch.setenv("LATTICEHUB_TRACKING_URL", "http://172.17.0.1:10101/services/experiments")
    client = TrackingClient(token="t")
    assert api.dashboard_url(client, "a/b") == "/services/experiments/runs/a%2Fb"
    other = TrackingClient("http://127.0.0.1:9/services/experiments", "t")
    assert api.dashboard_url(other, "abc") == "http://127.0.0.1:9/services/experiments/runs/abc"

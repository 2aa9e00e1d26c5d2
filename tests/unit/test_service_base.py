"""The services' shared base: address from the Hub's environment, port validation, bind retry."""

from __future__ import annotations

import socket

import pytest
from traitlets import TraitError

from hub_ext.common.service import WebServiceApp
from hub_ext.culling.app import CullerApp
from hub_ext.experiments.app import ExperimentsApp
from hub_ext.quotas.app import QuotasApp


@pytest.mark.parametrize(
    ("cls", "url", "ip", "port"),
    [
        (ExperimentsApp, "", "127.0.0.1", 10101),
        (QuotasApp, "", "127.0.0.1", 10102),
        (ExperimentsApp, "http://172.17.0.1:20001", "172.17.0.1", 20001),
        (QuotasApp, "http://127.0.0.1:20002/", "127.0.0.1", 20002),
        (QuotasApp, "http://10.0.0.5", "10.0.0.5", 10102),
    ],
)
def test_address_comes_from_the_hubs_environment(monkeypatch, cls, url, ip, port):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", url)
    app = cls()
    assert (app.ip, app.port) == (ip, port)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_bad_port_says_the_range(port):
    with pytest.raises(TraitError, match="1 to 65535"):
        WebServiceApp(port=port)


def test_every_service_exits_with_its_hub_by_default():
    assert all(cls().exit_with_hub for cls in (ExperimentsApp, QuotasApp, CullerApp))


def test_a_taken_port_fails_after_the_bind_timeout():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        app = WebServiceApp(ip="127.0.0.1", port=holder.getsockname()[1], bind_timeout=0)
        with pytest.raises(OSError):
            app.listen(object(), max_body_size=1024)
    finally:
        holder.close()

import ssl

import pytest
import trustme
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="session")
def itsm_ca():
    return trustme.CA()


@pytest.fixture(scope="session")
def itsm_ca_bundle(itsm_ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("itsm-ca") / "ca.pem"
    itsm_ca.cert_pem.write_to_path(str(path))
    return str(path)


def _start(ssl_context=None):
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=ssl_context, threaded=True)
    server.start()
    return server


@pytest.fixture(scope="session")
def _itsm_http_server():
    server = _start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="session")
def _itsm_https_server(itsm_ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    itsm_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = _start(context)
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def itsm_http_server(_itsm_http_server):
    _itsm_http_server.clear()
    yield _itsm_http_server
    _itsm_http_server.clear()


@pytest.fixture
def itsm_https_server(_itsm_https_server):
    _itsm_https_server.clear()
    yield _itsm_https_server
    _itsm_https_server.clear()

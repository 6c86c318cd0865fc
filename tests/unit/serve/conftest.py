import pytest
from fastapi.testclient import TestClient

from serve.app import create_api
from tests.unit.serve.fakes import make_services


@pytest.fixture
def client_and_services():
    """A TestClient of the full app over fake services (``client.app`` is the app)."""
    api = create_api()
    services = make_services()
    api.state.services = services
    with TestClient(api) as client:
        yield client, services

import pytest
from fastapi.testclient import TestClient

from serve.app import create_api
from serve.deps import protect
from tests.unit.serve.fakes import make_services


@pytest.fixture
def client_and_services():
    """A TestClient of what Serve serves over fake services (``client.app`` is the pipeline)."""
    api = create_api()
    services = make_services()
    api.state.services = services
    with TestClient(protect(api)) as client:
        yield client, services

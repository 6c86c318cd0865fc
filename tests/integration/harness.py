"""Start a real ``marketray serve`` for end-to-end tests (see :mod:`serve.local_service`).

    with start_service({"MARKETRAY_SYMBOLS": "AAPL,MSFT"}) as svc:
        httpx.get(f"{svc.base_url}/market/AAPL", headers=svc.auth("viewer"))
"""

from serve.local_service import SECRET, RunningService, free_port, start_service

__all__ = ["SECRET", "RunningService", "free_port", "start_service"]

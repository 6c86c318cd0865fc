"""Baseline for bench_rest: bare FastAPI under uvicorn serving one fixed payload."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

PAYLOAD = Path(sys.argv[1]).read_bytes()
app = FastAPI()


@app.get("/options/{symbol}")
async def options(symbol: str) -> Response:
    return Response(PAYLOAD, media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")

"""The dashboard (web/, docs/dashboard.md), served by the node itself:

- ``GET /`` redirects to ``/app/``; ``/app/`` serves the built page
  (``web/dist``, made by the install step: ``npm ci && npm run build``);
- ``GET /v1/dev/accounts`` — on the devnet preset only: the funded dev
  accounts with their keys (public, deterministic keys: they sign on the
  devnet only; any other preset answers 404).
"""
from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.api import ApiError, json_response

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
DEV_ACCOUNTS_LISTED = 16


class WebRoutes:
    def __init__(self, api) -> None:
        self.api = api

    def routes(self) -> list:
        app = StaticFiles(directory=WEB_DIST, html=True, check_dir=False)
        return [Route("/", self.root), Route("/app", self.root), Mount("/app", app=app, name="app"),
                Route("/v1/dev/accounts", self.get_dev_accounts)]

    async def root(self, request: Request) -> Response:
        if not (WEB_DIST / "index.html").is_file():
            raise ApiError("not_found", f"the dashboard is not built ({WEB_DIST} is missing): run `make install` "
                                        "or `npm ci && npm run build` in web/")
        return RedirectResponse("/app/", status_code=307)

    async def get_dev_accounts(self, request: Request) -> Response:
        node = self.api.node
        if node.ctx.preset.name != "devnet":
            raise ApiError("not_found", "dev accounts exist on the devnet preset only")
        await self.api.settled()
        accounts = node.chain.state.accounts
        return json_response([{"address": "0x" + address.hex(), "key": "0x" + key.hex()}
                              for key, address in get_dev_accounts(DEV_ACCOUNTS_LISTED) if address in accounts])


def routes(api) -> list:
    return WebRoutes(api).routes()

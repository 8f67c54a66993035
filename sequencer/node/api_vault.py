"""``GET /v1/vault[?address=0x..]``: the backstop vault (docs/engine.md
"Backstop vault"): its free collateral, equity and share price at the head,
its positions, its limits, and with ``address`` that holder's shares, the end
of their lock-up and what they would redeem for now."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sequencer.node.api import json_response, parse_address_param
from sequencer.node.views import describe_vault


class VaultRoutes:
    def __init__(self, api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        return [Route("/v1/vault", self.get_vault)]

    async def get_vault(self, request: Request) -> Response:
        raw = request.query_params.get("address")
        address = None if raw is None else parse_address_param(raw)
        await self.api.settled()
        node = self.api.node
        return json_response(describe_vault(node.chain.state, node.ctx, self.api.market_table(), address))


def routes(api) -> list:
    return VaultRoutes(api).routes()

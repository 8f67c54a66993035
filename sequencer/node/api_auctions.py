"""``GET /v1/auctions[?market=N]``: the liquidation auctions running at the
head (policy book+auction, docs/engine.md "Liquidation and
auto-deleveraging"): per auction its owner, market, side, the lots left, its
start and end prices and times, and the price a keeper's AuctionBid gets now."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sequencer.core import wire
from sequencer.core.rules.auction import compute_auction_price
from sequencer.node.api import ApiError, json_response


def describe_auctions(state, markets: dict, timestamp_ms: int, market: int | None = None) -> list[dict]:
    """The running auctions, owner order, with the current price at ``timestamp_ms``."""
    out = []
    for (owner, market_id), auction in sorted(state.auctions.items()):
        params = markets.get(market_id)
        if params is None or (market is not None and market_id != market):
            continue
        out.append({"owner": wire.hex0x(owner), "market": market_id,
                    "side": "long" if auction.end_price <= auction.start_price else "short",
                    "size": auction.size, "startPrice": auction.start_price, "endPrice": auction.end_price,
                    "startMs": auction.start_ms, "endMs": auction.end_ms,
                    "price": compute_auction_price(auction, timestamp_ms, params),
                    "over": timestamp_ms >= auction.end_ms})
    return out


class AuctionRoutes:
    def __init__(self, api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        return [Route("/v1/auctions", self.get_auctions)]

    async def get_auctions(self, request: Request) -> Response:
        raw = request.query_params.get("market")
        if raw is not None and not raw.isdigit():
            raise ApiError("invalid_field", f"market must be a market id, got {raw!r}")
        await self.api.settled()
        state = self.api.node.chain.state
        return json_response(describe_auctions(state, self.api.market_table(), state.globals.timestamp_ms,
                                               None if raw is None else int(raw)))


def routes(api) -> list:
    return AuctionRoutes(api).routes()

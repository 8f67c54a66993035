"""Trading commands of `isoroll` (loaded by sequencer.cli):

    isoroll markets                                  the market table with units
    isoroll book BTC-USD [--depth 10]                the order book
    isoroll order place BTC-USD buy 0.1 60000 --leverage 10 [--tif ioc|post-only] [--reduce-only]
    isoroll order place BTC-USD sell 0.1 54000 --trigger-price 55000 --sl   a stop-loss (or --tp) on the mark
    isoroll order triggers [ADDRESS]                 pending stop-loss / take-profit orders
    isoroll order cancel NONCE                       an order or a pending trigger
    isoroll modify NONCE [--price 59000] [--size 0.2]   cancel-replace in one signed tx
    isoroll schedule-cancel --in 60s | --at 2026-12-02T08:00:00Z | --clear   the dead-man's switch
    isoroll order cancel-all [--market BTC-USD]      signs one CancelOrder per open order
    isoroll fills [ADDRESS] [--raw | --json]         recent fills
    isoroll insurance [--limit N] [--before CURSOR]  the insurance fund and its changes
    isoroll margin BTC-USD 100                       move 100 USDC into (negative: out of) a position
    isoroll vault status [ADDRESS] | deposit 1000 | withdraw SHARES|all   the backstop vault
    isoroll oracle [--market BTC-USD] [--csv FILE]   the devnet oracle feeder

Prices and sizes are decimals in the market's units (USDC per whole base unit,
base units such as BTC), converted with GET /v1/markets; --raw takes the
integers of the API (quote units, base lots) as they are.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from decimal import Decimal, InvalidOperation

from sequencer.cli import (UNIT, with_client, add_client_flags, load_key, parse_collateral,
                           print_json)


def find_market(markets: list[dict], name: str) -> dict:
    for m in markets:
        if str(m["id"]) == str(name) or m["symbol"].upper() == str(name).upper():
            return m
    raise SystemExit(f"error: no market {name!r}; the markets are "
                     + ", ".join(f"{m['id']} {m['symbol']}" for m in markets))


def to_units(text: str, scale: int, step: int, what: str, raw: bool) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SystemExit(f"error: {what} {text!r} is not a number") from None
    units = value if raw else value * scale
    if units != units.to_integral_value() or units <= 0:
        raise SystemExit(f"error: {what} {text!r} is not a positive multiple of {Decimal(step) / scale:f}")
    units = int(units)
    if units % step:
        raise SystemExit(f"error: {what} {text!r} must be a multiple of {Decimal(step) / scale:f}"
                         f" ({step} units)")
    return units


def format_price(units: int) -> str:
    return f"{Decimal(units) / UNIT:f}"


def format_size(lots: int, market: dict) -> str:
    return f"{Decimal(lots) / 10 ** market['baseDecimals']:f}"


# --- commands ----------------------------------------------------------------------

def cmd_markets(args) -> int:
    async def run(client):
        markets = await client.markets()
        if args.json:
            print_json(markets)
            return 0
        print(f"{'id':>3} {'symbol':<9} {'oracle':>14} {'tick':>10} {'step':>12} {'IMF':>6} {'MMF':>6} "
              f"{'maxLev':>6} {'maker':>6} {'taker':>6} {'funding':>9}")
        for m in markets:
            print(f"{m['id']:>3} {m['symbol']:<9} {format_price(m['oraclePrice']):>14} "
                  f"{format_price(m['tickSize']):>10} {format_size(m['stepSize'], m):>12} "
                  f"{m['initialMarginPpm'] / 1e4:>5.2f}% {m['maintenanceMarginPpm'] / 1e4:>5.2f}% "
                  f"{m['maxLeverage']:>5}x {m['makerFeePpm'] / 100:>4.1f}bp {m['takerFeePpm'] / 100:>4.1f}bp "
                  f"{m['fundingIntervalMs'] // 1000:>7}s")
        print("prices in USDC per whole base unit; sizes in base units (the API uses integers: "
              "quote units of 1e-6 USDC and base lots; see --json)")
        return 0
    return asyncio.run(with_client(args, run))


def cmd_book(args) -> int:
    async def run(client):
        market = find_market(await client.markets(), args.market)
        book = await client.book(market["id"], args.depth)
        if args.json:
            print_json(book)
            return 0
        print(f"{market['symbol']}  oracle {format_price(book['oraclePrice'])}  block {book['blockNumber']}")
        print(f"{'price':>14} {'size':>14} {'orders':>6}")
        for price, size, count in reversed(book["asks"]):
            print(f"{format_price(price):>14} {format_size(size, market):>14} {count:>6}  ask")
        print("-" * 38)
        for price, size, count in book["bids"]:
            print(f"{format_price(price):>14} {format_size(size, market):>14} {count:>6}  bid")
        return 0
    return asyncio.run(with_client(args, run))


def cmd_order_place(args) -> int:
    if (args.tp or args.sl) and args.trigger_price is None:
        raise SystemExit("error: --tp and --sl need --trigger-price")
    if args.trigger_price is not None:
        return cmd_trigger_place(args)

    async def run(client):
        market = find_market(await client.markets(), args.market)
        price = to_units(args.price, UNIT, market["tickSize"], "price", args.raw)
        size = to_units(args.size, 10 ** market["baseDecimals"], market["stepSize"], "size", args.raw)
        receipt = await client.place_order(market["id"], args.side == "buy", price, size, leverage=args.leverage,
                                           time_in_force=args.tif, reduce_only=args.reduce_only, nonce=args.nonce,
                                           expiry=client.default_expiry(args.expiry_s))
        if args.json:
            print_json(receipt)
        else:
            print_order_receipt(receipt, market, client.address.hex(), args.raw)
        return 0 if receipt["status"] == "ok" else 1
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_trigger_place(args) -> int:
    """``order place ... --trigger-price P --sl|--tp``: a PlaceTrigger, reduce-only unless --open."""
    if args.tp == args.sl:
        raise SystemExit("error: a trigger order is either --tp (take-profit) or --sl (stop-loss)")
    if args.tif is not None:
        raise SystemExit("error: a trigger order becomes immediate-or-cancel when it fires; --tif does not apply")

    async def run(client):
        market = find_market(await client.markets(), args.market)
        price = to_units(args.price, UNIT, market["tickSize"], "price", args.raw)
        trigger = to_units(args.trigger_price, UNIT, market["tickSize"], "trigger price", args.raw)
        size = to_units(args.size, 10 ** market["baseDecimals"], market["stepSize"], "size", args.raw)
        record = await client.signed_trigger(market["id"], args.side == "buy", trigger, price, size,
                                             tpsl="tp" if args.tp else "sl", leverage=args.leverage,
                                             reduce_only=not args.open, nonce=args.nonce,
                                             expiry=client.default_expiry(args.expiry_s))
        receipt = await client.submit(record)
        if args.json:
            print_json(receipt)
        elif receipt["status"] != "ok":
            print(f"refused: {receipt.get('error')}")
        else:
            kind = "take-profit" if args.tp else "stop-loss"
            shown = (lambda units: f"{units}") if args.raw else (lambda units: f"{format_price(units)} USDC")
            print(f"{kind} {record.nonce} pending: {args.side} {args.size} when the mark "
                  f"reaches {shown(trigger)}, limit {shown(price)} (block {receipt['block']}, tx {receipt['hash']})")
        return 0 if receipt["status"] == "ok" else 1
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_order_triggers(args) -> int:
    async def run(client):
        markets = {m["id"]: m for m in await client.markets()}
        account = await client.account(args.address)
        if args.json:
            print_json({"triggers": account["triggers"], "scheduledCancel": account["scheduledCancel"]})
            return 0
        for t in account["triggers"]:
            market = markets[t["market"]]
            size = t["size"] if args.raw else f"{format_size(t['size'], market)} {market['symbol'].split('-')[0]}"
            price = (lambda u: str(u)) if args.raw else (lambda u: f"{format_price(u)} USDC")
            print(f"{t['nonce']:>14} {market['symbol']:<8} {t['kind']:<11} {'buy' if t['isBuy'] else 'sell'} {size}"
                  f" when mark {t['firesWhenMark']} {price(t['triggerPrice'])}, limit {price(t['price'])}"
                  f"{'' if t['reduceOnly'] else ' (may open)'}")
        if not account["triggers"]:
            print("no pending triggers")
        print_schedule(account["scheduledCancel"])
        return 0
    return asyncio.run(with_client(args, run))


def print_schedule(schedule: dict) -> None:
    at = schedule["cancelAtMs"]
    when = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at / 1000)) + f" ({at} ms)") if at else "not set"
    print(f"dead-man's switch: {when}; {schedule['runsLeftToday']} runs left today")


def cmd_modify(args) -> int:
    if args.price is None and args.size is None:
        raise SystemExit("error: give --price, --size or both")

    async def run(client):
        orders = {o["nonce"]: o for o in await client.open_orders()}
        order = orders.get(args.order_nonce)
        if order is None:
            raise SystemExit(f"error: no open order {args.order_nonce} (isoroll account lists them)")
        market = find_market(await client.markets(), str(order["market"]))
        price = order["price"] if args.price is None else to_units(args.price, UNIT, market["tickSize"], "price",
                                                                  args.raw)
        size = order["remaining"] if args.size is None else to_units(
            args.size, 10 ** market["baseDecimals"], market["stepSize"], "size", args.raw)
        receipt = await client.modify_order(args.order_nonce, price, size, nonce=args.nonce)
        if args.json:
            print_json(receipt)
        else:
            print_order_receipt(receipt, market, client.address.hex(), args.raw)
        return 0 if receipt["status"] == "ok" else 1
    return asyncio.run(with_client(args, run, needs_key=True))


def parse_duration_ms(text: str) -> int:
    """60, 60s, 5m, 2h, 1d -> milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix):
            number, scale = text[:-len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1000
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise SystemExit(f"error: {text!r} is not a duration (e.g. 30s, 5m, 2h)") from None
    if value <= 0:
        raise SystemExit(f"error: the duration {text!r} must be positive")
    return int(value * scale)


def parse_time_ms(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 time (UTC if it names no zone)."""
    from datetime import datetime, timezone
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"error: {text!r} is not a time (ms since the epoch or ISO 8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def cmd_schedule_cancel(args) -> int:
    if (args.at is not None) + (args.in_ is not None) + args.clear != 1:
        raise SystemExit("error: give exactly one of --at, --in and --clear")

    async def run(client):
        if args.clear:
            cancel_at = 0
        elif args.at is not None:
            cancel_at = parse_time_ms(args.at)
        else:
            cancel_at = int(time.time() * 1000) + parse_duration_ms(args.in_)
        receipt = await client.schedule_cancel(cancel_at)
        if args.json:
            print_json(receipt)
        elif receipt["status"] != "ok":
            print(f"refused: {receipt.get('error')}")
        else:
            print_schedule((await client.account())["scheduledCancel"])
        return 0 if receipt["status"] == "ok" else 1
    return asyncio.run(with_client(args, run, needs_key=True))


def print_order_receipt(receipt: dict, market: dict, address: str, raw: bool) -> None:
    """A PlaceOrder's receipt: its status, what filled and each fill, in human units."""
    if receipt["status"] != "ok":
        print(f"refused: {receipt.get('error')}")
        return
    order = receipt.get("order") or {}
    base = market["symbol"].split("-")[0]
    size = (lambda lots: f"{lots} lots") if raw else (lambda lots: f"{format_size(lots, market)} {base}")
    print(f"order {order.get('nonce')} {order.get('status')}: filled {size(order.get('filled', 0))} of "
          f"{size(order.get('size', 0))} (block {receipt['block']}, tx {receipt['hash']})")
    for fill in receipt.get("fills", []):
        print("fill " + describe_fill(fill, market, "0x" + address, raw).strip())


def cmd_order_cancel(args) -> int:
    async def run(client):
        receipt = await client.cancel_order(args.order_nonce)
        print_json(receipt)
        return 0 if receipt["status"] == "ok" else 1
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_order_cancel_all(args) -> int:
    async def run(client):
        market = None
        if args.market:
            market = find_market(await client.markets(), args.market)["id"]
        receipts = await client.cancel_all(market)
        print_json({"cancelled": sum(1 for r in receipts if r["status"] == "ok"), "receipts": receipts})
        return 0 if all(r["status"] == "ok" for r in receipts) else 1
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_fills(args) -> int:
    async def run(client):
        address = args.address
        if address is None:
            from sequencer.core.signing import address_of
            from sequencer.sdk import parse_key
            address = "0x" + address_of(parse_key(load_key(args))).hex()
        fills = await client.fills(address, args.limit)
        if args.json:
            print_json(fills)
            return 0
        markets = {m["id"]: m for m in await client.markets()} if fills else {}
        print(f"{'block':>8} {'market':<9} {'side':<4} {'role':<5} {'size':>14} {'price':>14} {'notional':>14} "
              f"{'fee':>12}")
        for fill in fills:
            print(describe_fill(fill, markets[fill["market"]], address, args.raw))
        if not fills:
            print("no fills")
        print("raw: size in base lots, money in quote units (1e-6 USDC)" if args.raw else
              "size in base units, price, notional and fee in USDC (--raw: the API's integers, --json: its JSON)")
        return 0
    return asyncio.run(with_client(args, run))


def describe_fill(fill: dict, market: dict, address: str, raw: bool) -> str:
    """One fill from ``address``'s side: its side, role, size, price, notional and fee."""
    maker = fill["maker"].lower() == address.lower()
    side = fill["takerSide"] if not maker else ("sell" if fill["takerSide"] == "buy" else "buy")
    fee = fill["makerFee"] if maker else fill["takerFee"]
    size = str(fill["size"]) if raw else f"{format_size(fill['size'], market)} {market['symbol'].split('-')[0]}"
    money = str if raw else format_price
    return (f"{fill['block']:>8} {market['symbol']:<9} {side:<4} {'maker' if maker else 'taker':<5} {size:>14} "
            f"{money(fill['price']):>14} {money(fill['notional']):>14} {money(fee):>12}")


def cmd_insurance(args) -> int:
    async def run(client):
        page = await client.insurance_history(args.limit, args.before)
        if args.json:
            print_json(page)
            return 0
        money = str if args.raw else format_price
        unit = "units" if args.raw else "USDC"
        print(f"insurance fund  {format_price(page['balance'])} USDC ({page['balance']} units)")
        if page["historyFromBlock"]:
            print(f"(history from block {page['historyFromBlock']}: the node is rebuilding what came before)")
        print(f"{'block':>8} {'time (UTC)':<19} {'kind':<13} {'amount (' + unit + ')':>20} "
              f"{'balance (' + unit + ')':>20}")
        for change in page["items"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(change["timestampMs"] / 1000))
            print(f"{change['block']:>8} {when:<19} {change['kind']:<13} {money(change['amount']):>20} "
                  f"{money(change['balance']):>20}")
        if not page["items"]:
            print("no changes")
        if page["next"]:
            print(f"older changes: isoroll insurance --before {page['next']}")
        return 0
    return asyncio.run(with_client(args, run))


def cmd_margin(args) -> int:
    text = args.amount
    negative = text.startswith("-")
    amount = parse_collateral(text.lstrip("-"), args.raw)

    async def run(client):
        market = find_market(await client.markets(), args.market)
        print_json(await client.adjust_margin(market["id"], -amount if negative else amount))
        return 0
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_oracle(args) -> int:
    from sequencer.oracle import CsvReplay, Feeder, RandomWalk, iter_oracle_keys, select_markets
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def run(client):
        status = await client.status()
        markets = select_markets(await client.markets(), args.market)
        if args.csv:
            source = CsvReplay(args.csv, markets, raw=args.raw, loop=args.loop)
        else:
            start = {}
            if args.start_price:
                if len(markets) != 1:
                    raise SystemExit("error: --start-price needs exactly one --market")
                start[markets[0].id] = to_units(args.start_price, UNIT, 1, "start price", args.raw)
            source = RandomWalk(markets, volatility_ppm=args.volatility_ppm, seed=args.seed, start=start)
        keys = list(iter_oracle_keys(args.oracle_keys, args.signers))
        if len(keys) < args.signers:
            raise SystemExit(f"error: {args.signers} signers asked for, {len(keys)} keys given")
        feeder = Feeder(client, source, keys=keys, interval_s=args.interval)
        symbols = {m.id: m.symbol for m in markets}
        print(f"feeding {', '.join(m.symbol for m in markets)} to {args.url} (chain {status['chainId']}) "
              f"every {args.interval}s with {len(keys)} signatures", file=sys.stderr)

        def show(update):
            if update.receipt is not None:
                liq = update.receipt.get("liquidations") or []
                extra = f"  liquidated {len(liq)}" if liq else ""
                print(f"{symbols[update.market]} {format_price(update.price)} block {update.receipt['block']}{extra}",
                      flush=True)
            else:
                print(f"{symbols[update.market]} {format_price(update.price)} refused: {update.error}", flush=True)
        try:
            updates = await feeder.run(max_steps=args.steps, duration_s=args.duration, on_update=show)
        except KeyboardInterrupt:
            updates = feeder.updates
        return 0 if any(u.receipt for u in updates) or not updates else 1
    try:
        return asyncio.run(with_client(args, run))
    except KeyboardInterrupt:
        return 0


def cmd_auction_list(args) -> int:
    async def run(client):
        auctions = await client.auctions()
        if args.json:
            print_json(auctions)
            return 0
        markets = {m["id"]: m for m in await client.markets()}
        if not auctions:
            print("no liquidation auction is running")
        for a in auctions:
            market = markets[a["market"]]
            state = "over (the ladder takes what is left)" if a["over"] else \
                f"ends {time.strftime('%H:%M:%S', time.gmtime(a['endMs'] / 1000))} UTC"
            print(f"{a['owner']} {market['symbol']} {a['side']} {format_size(a['size'], market)} left  price "
                  f"{format_price(a['price'])} (from {format_price(a['startPrice'])} to "
                  f"{format_price(a['endPrice'])})  {state}")
        return 0
    return asyncio.run(with_client(args, run))


def cmd_auction_bid(args) -> int:
    async def run(client):
        market = find_market(await client.markets(), args.market)
        price = to_units(args.price, UNIT, market["tickSize"], "price", args.raw)
        size = to_units(args.size, 10 ** market["baseDecimals"], market["stepSize"], "size", args.raw)
        receipt = await client.auction_bid(args.owner, market["id"], size, price, leverage=args.leverage)
        print_json(receipt)
        return 0 if receipt["status"] == "ok" else 1
    return asyncio.run(with_client(args, run, needs_key=True))


# --- parser ----------------------------------------------------------------------------

def cmd_vault_status(args) -> int:
    async def run(client):
        view = await client.vault(args.address)
        if args.json:
            print_json(view)
            return 0
        equity = "unknown (a stale mark)" if view["equity"] is None else f"{format_price(view['equity'])} USDC"
        print(f"vault {view['address']}  equity {equity}  free {format_price(view['collateral'])} USDC  "
              f"shares {view['totalShares']}")
        if view["sharePricePpm"] is not None:
            print(f"share price {Decimal(view['sharePricePpm']) / 10**6:f} units per share  lock-up "
                  f"{view['lockupMs'] / 1000:g} s  max leverage {view['maxLeverage']}x")
        for p in view["positions"]:
            print(f"  market {p['market']}: size {p['size']}  margin {format_price(p['margin'])}  "
                  f"uPnL {format_price(p['unrealizedPnl'])}  equity {format_price(p['equity'])}")
        holder = view.get("holder")
        if holder:
            value = "unknown" if holder["value"] is None else f"{format_price(holder['value'])} USDC"
            unlock = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(holder["unlockMs"] / 1000))
            print(f"{holder['address']}: {holder['shares']} shares worth {value}, locked until {unlock} UTC")
        return 0
    try:
        with_key = args.address is None and bool(load_key(args))   # the holder: the --key's address
    except SystemExit:
        with_key = False
    return asyncio.run(with_client(args, run, needs_key=with_key))


def cmd_vault_deposit(args) -> int:
    amount = parse_collateral(args.amount, args.raw)

    async def run(client):
        print_json(await client.vault_deposit(amount, min_shares=args.min_shares))
        return 0
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_vault_withdraw(args) -> int:
    async def run(client):
        shares = args.shares
        if shares == "all":
            shares = (await client.vault())["holder"]["shares"]
        elif not shares.isdigit():
            raise SystemExit(f"error: shares {shares!r} must be a whole number or 'all'")
        min_amount = parse_collateral(args.min_amount, args.raw) if args.min_amount else 0
        print_json(await client.vault_withdraw(int(shares), min_amount=min_amount))
        return 0
    return asyncio.run(with_client(args, run, needs_key=True))


def register(sub) -> None:
    p = sub.add_parser("markets", help="the market table: units, oracle prices, margin fractions, fees")
    add_client_flags(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON (integer units)")
    p.set_defaults(func=cmd_markets)

    p = sub.add_parser("book", help="a market's order book")
    add_client_flags(p)
    p.add_argument("market", help="id or symbol, e.g. BTC-USD")
    p.add_argument("--depth", type=int, default=10, help="price levels per side")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_book)

    order = sub.add_parser("order", help="place and cancel orders").add_subparsers(
        dest="order", required=True, metavar="ACTION")
    p = order.add_parser("place", help="sign and submit a limit order",
                         description="Place a limit order; prints the receipt with the order's status and fills.")
    add_client_flags(p, key=True)
    p.add_argument("market", help="id or symbol, e.g. BTC-USD")
    p.add_argument("side", choices=("buy", "sell"))
    p.add_argument("size", help="base units, e.g. 0.1 (BTC); with --raw base lots")
    p.add_argument("price", help="limit price in USDC per whole base unit; with --raw quote units")
    p.add_argument("--leverage", type=int, default=1, help="isolated leverage of this order (1..maxLeverage)")
    p.add_argument("--tif", choices=("gtc", "ioc", "post-only"),
                   help="good-till-cancel (the default), immediate-or-cancel or post-only")
    p.add_argument("--reduce-only", action="store_true",
                   help="may only reduce the position (immediate-or-cancel unless --tif says otherwise)")
    p.add_argument("--expiry-s", type=float, default=3600,
                   help="expires after this many seconds (at most the preset's limit: one day on the devnet)")
    p.add_argument("--nonce", type=int, help="the order's id (default: the current time in ms)")
    p.add_argument("--raw", action="store_true", help="price and size are the API's integers (so is the output)")
    p.add_argument("--json", action="store_true", help="print the receipt's JSON (integer units)")
    p.add_argument("--trigger-price", help="make this a trigger order: it waits (reserving nothing) until the "
                                           "mark reaches this price, then becomes an immediate-or-cancel order at "
                                           "the limit price (a sell's limit at or below it, a buy's at or above)")
    p.add_argument("--tp", action="store_true", help="with --trigger-price: a take-profit (a sell fires when the "
                                                     "mark rises to it, a buy when it falls)")
    p.add_argument("--sl", action="store_true", help="with --trigger-price: a stop-loss (a sell fires when the mark "
                                                     "falls to it, a buy when it rises)")
    p.add_argument("--open", action="store_true", help="with --trigger-price: the fired order may open or increase "
                                                       "a position (by default a trigger is reduce-only)")
    p.set_defaults(func=cmd_order_place)

    p = order.add_parser("triggers", help="pending stop-loss / take-profit orders and the dead-man's switch")
    add_client_flags(p, key=True)
    p.add_argument("address", nargs="?", help="default: the key's account")
    p.add_argument("--raw", action="store_true", help="the API's integers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_order_triggers)

    p = sub.add_parser("modify", help="cancel a resting order and place its replacement in one signed tx",
                       description="ModifyOrder: both or neither. The replacement keeps the market, side, leverage "
                                   "and time in force, takes the new price and size (the full size; default: the "
                                   "remaining size and the same price) and goes to the back of its price level.")
    add_client_flags(p, key=True)
    p.add_argument("order_nonce", type=int)
    p.add_argument("--price", help="new limit price in USDC per whole base unit (with --raw quote units)")
    p.add_argument("--size", help="new size in base units (with --raw base lots)")
    p.add_argument("--nonce", type=int, help="the replacement's id (default: the current time in ms)")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_modify)

    p = sub.add_parser("schedule-cancel", help="the dead-man's switch: cancel every order and trigger at a time",
                       description="ScheduleCancel (Hyperliquid's scheduleCancel): at the given time the sequencer "
                                   "cancels all the account's orders and triggers. Send it again to push the time "
                                   "on; at least 5 s ahead; at most 10 runs per UTC day; --clear removes it.")
    add_client_flags(p, key=True)
    p.add_argument("--at", help="when: ms since the epoch or an ISO 8601 time (UTC unless it says)")
    p.add_argument("--in", dest="in_", help="when, from now: 30s, 5m, 2h")
    p.add_argument("--clear", action="store_true", help="remove the scheduled cancel")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schedule_cancel)

    p = order.add_parser("cancel", help="cancel one order by its nonce")
    add_client_flags(p, key=True)
    p.add_argument("order_nonce", type=int)
    p.set_defaults(func=cmd_order_cancel)

    p = order.add_parser("cancel-all", help="cancel every open order (signs one CancelOrder each)",
                         description="Reads the open orders (GET /v1/accounts/{address}/orders) and sends one "
                                     "signed CancelOrder per order in a POST /v1/txs batch: the node holds no keys.")
    add_client_flags(p, key=True)
    p.add_argument("--market", help="only this market (id or symbol)")
    p.set_defaults(func=cmd_order_cancel_all)

    p = sub.add_parser("fills", help="an account's recent fills, newest first")
    add_client_flags(p, key=True)
    p.add_argument("address", nargs="?", help="0x.. (default: the address of --key)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--raw", action="store_true", help="sizes in base lots, money in integer quote units")
    p.add_argument("--json", action="store_true", help="print the API's JSON (integer units)")
    p.set_defaults(func=cmd_fills)

    p = sub.add_parser("insurance", help="the insurance fund's balance and its changes, newest first",
                       description="GET /v1/insurance/history: each change of the fund with its kind (fee_share: "
                                   "its share of trading fees; liquidation: liquidation fees minus bad debt paid; "
                                   "funding_dust: funding remainders swept in) and the balance after it.")
    add_client_flags(p)
    p.add_argument("--limit", type=int, default=20, help="changes per page")
    p.add_argument("--before", help="the cursor a previous page printed (older changes)")
    p.add_argument("--raw", action="store_true", help="amounts in integer quote units (1e-6 USDC)")
    p.add_argument("--json", action="store_true", help="print the API's JSON (integer units)")
    p.set_defaults(func=cmd_insurance)

    p = sub.add_parser("margin", help="move collateral into (or, negative, out of) an isolated position")
    add_client_flags(p, key=True)
    p.add_argument("market")
    p.add_argument("amount", help="USDC, e.g. 100 or -50; with --raw in units")
    p.add_argument("--raw", action="store_true")
    p.set_defaults(func=cmd_margin)

    vault = sub.add_parser("vault", help="the backstop vault: deposit, withdraw, status").add_subparsers(
        dest="vault_command", required=True)
    p = vault.add_parser("status", help="the vault's equity, shares and positions, and an address's shares")
    add_client_flags(p, key=True)
    p.add_argument("address", nargs="?", help="0x.. (default: the address of --key)")
    p.add_argument("--json", action="store_true", help="print the API's JSON (integer units)")
    p.set_defaults(func=cmd_vault_status)
    p = vault.add_parser("deposit", help="move free collateral into the vault for shares (locked for the lock-up)")
    add_client_flags(p, key=True)
    p.add_argument("amount", help="USDC, e.g. 1000; with --raw in units")
    p.add_argument("--min-shares", type=int, default=0, help="refuse if fewer shares would be minted")
    p.add_argument("--raw", action="store_true")
    p.set_defaults(func=cmd_vault_deposit)
    p = vault.add_parser("withdraw", help="redeem shares for free collateral after the lock-up")
    add_client_flags(p, key=True)
    p.add_argument("shares", help="a whole number of shares, or 'all'")
    p.add_argument("--min-amount", help="USDC: refuse if the shares would pay less")
    p.add_argument("--raw", action="store_true")
    p.set_defaults(func=cmd_vault_withdraw)

    auction = sub.add_parser("auction", help="liquidation auctions (policy book+auction): list, bid").add_subparsers(
        dest="auction_command", required=True)
    p = auction.add_parser("list", help="the running liquidation auctions and each one's price now")
    add_client_flags(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON (integer units)")
    p.set_defaults(func=cmd_auction_list)
    p = auction.add_parser("bid", help="take lots of a liquidation auction at its current price (a keeper)",
                           description="Sign an AuctionBid: the lots are bought (a long's auction) or sold "
                                       "(a short's) at the auction's price now, if no worse than PRICE; your side "
                                       "is an ordinary fill at --leverage, paid from your free collateral.")
    add_client_flags(p, key=True)
    p.add_argument("owner", help="0x.. the liquidated account (isoroll auction list)")
    p.add_argument("market", help="id or symbol, e.g. BTC-USD")
    p.add_argument("size", help="base units, e.g. 0.1 (BTC); with --raw base lots")
    p.add_argument("price", help="your limit in USDC per whole base unit; with --raw quote units")
    p.add_argument("--leverage", type=int, default=1, help="isolated leverage of your side (1..maxLeverage)")
    p.add_argument("--raw", action="store_true", help="price and size are the API's integers")
    p.set_defaults(func=cmd_auction_bid)

    p = sub.add_parser("oracle", help="run the devnet oracle feeder (random walk or CSV replay)",
                       description="Sign OraclePrice records with k of the n oracle keys (default: the public "
                                   "devnet keys) and post them to POST /v1/oracle every --interval seconds.")
    add_client_flags(p)
    p.add_argument("--market", action="append", help="id or symbol; repeat for several (default: all)")
    p.add_argument("--csv", help="replay this CSV (header: market, price[, price_b...]) instead of a random walk")
    p.add_argument("--loop", action="store_true", help="start the CSV over at its end")
    p.add_argument("--raw", action="store_true", help="CSV / start prices are integer quote units")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    p.add_argument("--steps", type=int, help="stop after this many steps")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--start-price", help="random walk start (default: the current oracle price)")
    p.add_argument("--volatility-ppm", type=int, default=1_000, help="std. dev. of one step, ppm")
    p.add_argument("--seed", type=int, help="random walk seed (reproducible series)")
    p.add_argument("--signers", type=int, default=2, help="how many signers co-sign (k)")
    p.add_argument("--oracle-keys", help="comma-separated private keys (default: the devnet oracle keys)")
    p.set_defaults(func=cmd_oracle)

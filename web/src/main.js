// The isoroll dashboard: one page over the node's HTTP and WebSocket API (docs/api.md).
// Signing is EIP-712 through viem: an injected EIP-1193 wallet (eth_signTypedData_v4)
// or, on the devnet only, a dev account's key. L1 calls (claim, escape, refund, freeze)
// are {to, data} from the node, sent from the same wallet to the L1 RPC.
import { createChart, CandlestickSeries, LineSeries } from "lightweight-charts";
import { createWalletClient, custom, defineChain, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const $ = (id) => document.getElementById(id);
const api = async (path, init) => {
  const res = await fetch(path, init);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : res.statusText);
  return body;
};
const esc = (v) => String(v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const rows = (head, list, row) =>
  `<tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>` +
  (list.length ? list.map(row).join("") : `<tr><td colspan="${head.length}" class="muted">none</td></tr>`);

// --- units (docs/api.md "Units") -------------------------------------------------------------
const USDC = 1_000_000;
const usd = (units, digits = 2) => (Number(units) / USDC).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const base = (lots, m) => (Number(lots) / 10 ** m.baseDecimals).toLocaleString("en-US", { maximumFractionDigits: m.baseDecimals });
const signed = (units) => `<span class="${units > 0 ? "pos" : units < 0 ? "neg" : ""}">${usd(units)}</span>`;
const toUnits = (text, decimals) => {
  const [whole, frac = ""] = String(text).trim().split(".");
  if (!/^\d+$/.test(whole || "0") || !/^\d*$/.test(frac) || frac.length > decimals) throw new Error(`not a number with at most ${decimals} decimals: ${text}`);
  return BigInt(whole || "0") * 10n ** BigInt(decimals) + BigInt(frac.padEnd(decimals, "0") || "0");
};
const duration = (s) => {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
};
const short = (a) => `${a.slice(0, 6)}…${a.slice(-4)}`;

// --- EIP-712 (API.md) ------------------------------------------------------------------------
const TYPES = {
  Transfer: [["account", "address"], ["to", "address"], ["amount", "uint256"], ["nonce", "uint64"], ["expiry", "uint64"]],
  Withdraw: [["account", "address"], ["amount", "uint256"], ["nonce", "uint64"], ["expiry", "uint64"]],
  AdjustMargin: [["account", "address"], ["market", "uint32"], ["amount", "int256"], ["nonce", "uint64"], ["expiry", "uint64"]],
  PlaceOrder: [["account", "address"], ["market", "uint32"], ["isBuy", "bool"], ["price", "uint256"], ["size", "uint256"],
    ["leverage", "uint32"], ["timeInForce", "uint8"], ["reduceOnly", "bool"], ["nonce", "uint64"], ["expiry", "uint64"]],
  CancelOrder: [["account", "address"], ["orderNonce", "uint64"], ["nonce", "uint64"], ["expiry", "uint64"]],
  PlaceTrigger: [["account", "address"], ["market", "uint32"], ["isBuy", "bool"], ["triggerPrice", "uint256"],
    ["price", "uint256"], ["size", "uint256"], ["leverage", "uint32"], ["tpsl", "uint8"], ["reduceOnly", "bool"],
    ["nonce", "uint64"], ["expiry", "uint64"]],
  ModifyOrder: [["account", "address"], ["orderNonce", "uint64"], ["price", "uint256"], ["size", "uint256"],
    ["nonce", "uint64"], ["expiry", "uint64"]],
  ScheduleCancel: [["account", "address"], ["cancelAt", "uint64"], ["nonce", "uint64"], ["expiry", "uint64"]],
};
const TAKE_PROFIT = 1, STOP_LOSS = 2;
const TRIGGER_SLIPPAGE_PPM = 50_000n; // a fired trigger is immediate-or-cancel with its limit 5% past the trigger
let lastNonce = 0;
const nextNonce = () => (lastNonce = Math.max(Date.now(), lastNonce + 1));

const S = { status: null, markets: [], market: null, book: null, trades: [], signer: null, account: null,
  l1: null, l1At: 0, withdrawals: [], withdrawalsAt: 0, interval: "1m", chart: null };

// --- signers: a dev key (devnet) or an injected wallet -----------------------------------------
function devSigner(key) {
  const account = privateKeyToAccount(key);
  return {
    address: account.address.toLowerCase(), kind: "dev key",
    signTypedData: (typed) => account.signTypedData(typed),
    l1Client: (chain) => createWalletClient({ account, chain, transport: http(chain.rpcUrls.default.http[0]) }),
  };
}

async function walletSigner(provider) {
  const client = createWalletClient({ transport: custom(provider) });
  const [address] = await client.requestAddresses();
  return {
    address: address.toLowerCase(), kind: "wallet",
    signTypedData: (typed) => client.signTypedData({ account: address, ...typed }),
    l1Client: (chain) => createWalletClient({ account: address, chain, transport: custom(provider) }),
  };
}

async function sendTx(primaryType, fields) {
  if (!S.signer) throw new Error("pick a dev account or connect a wallet first");
  const message = { account: S.signer.address, ...fields, nonce: BigInt(nextNonce()), expiry: BigInt(Date.now() + 600_000) };
  const d = S.status.eip712Domain;
  const domain = { name: d.name, version: d.version, chainId: d.chainId, verifyingContract: d.verifyingContract };
  const types = { [primaryType]: TYPES[primaryType].map(([name, type]) => ({ name, type })) };
  const signature = await S.signer.signTypedData({ domain, types, primaryType, message });
  const json = Object.fromEntries(Object.entries(message).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));
  const receipt = await api("/v1/tx", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: primaryType, message: json, signature }) });
  if (receipt.status !== "ok") throw new Error(receipt.error);
  return { ...receipt, nonce: message.nonce };
}

// A reduce-only stop-loss / take-profit closing `size` of a position (isBuy: the side that closes it).
// Its limit is 5% past the trigger on the tick grid, so the order it becomes fills like a market order.
async function sendTrigger(market, isBuy, tpsl, triggerPrice, size) {
  const tick = BigInt(market.tickSize);
  const slip = (triggerPrice * TRIGGER_SLIPPAGE_PPM) / 1_000_000n;
  const limit = isBuy ? ceilDiv(triggerPrice + slip, tick) * tick : ((triggerPrice - slip) / tick) * tick;
  if (triggerPrice % tick !== 0n) throw new Error(`the trigger price must be a multiple of ${usd(tick)} USDC`);
  return sendTx("PlaceTrigger", { market: market.id, isBuy, triggerPrice, price: limit > 0n ? limit : tick, size,
    leverage: 1n, tpsl, reduceOnly: true });
}

async function sendL1(call, what) {
  const l1 = S.l1;
  const chain = defineChain({ id: l1.chainId, name: "L1", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [l1.rpcUrl] } } });
  const hash = await S.signer.l1Client(chain).sendTransaction({ to: call.to, data: call.data });
  toast(`${what}: L1 tx ${short(hash)} sent`);
  S.l1At = S.withdrawalsAt = 0;
}

function toast(text, error = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = `show${error ? " error" : ""}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ""), error ? 8000 : 4000);
}
const guarded = (fn) => async (...args) => {
  try { await fn(...args); } catch (e) { toast(e.shortMessage || e.message, true); }
};

// --- market: chart, funding, book, trades ----------------------------------------------------
function setupChart() {
  const chart = createChart($("chart"), { autoSize: true,
    layout: { background: { color: "#151c2a" }, textColor: "#9aa7bf" },
    grid: { vertLines: { color: "#1d263a" }, horzLines: { color: "#1d263a" } },
    timeScale: { timeVisible: true, secondsVisible: true } });
  S.candles = chart.addSeries(CandlestickSeries, { upColor: "#2ebd85", downColor: "#f0616d", wickUpColor: "#2ebd85",
    wickDownColor: "#f0616d", borderVisible: false });
  S.oracle = chart.addSeries(LineSeries, { color: "#5aa2ff", lineWidth: 2 });
  S.mark = chart.addSeries(LineSeries, { color: "#f5a623", lineWidth: 2 });
  S.marks = new Map(); // market id -> Map(oracle second -> committed mark), from GET /v1/markets since the page opened
  S.chart = chart;
}

async function loadChart() {
  const m = S.market;
  const [c, p] = await Promise.all([api(`/v1/markets/${m.id}/candles?interval=${S.interval}`), api(`/v1/markets/${m.id}/prices`)]);
  const seen = new Map();
  for (const [t, price] of p.prices) seen.set(Math.floor(t / 1000), price / USDC);
  S.oracle.setData([...seen].map(([time, value]) => ({ time, value })));
  if (!S.marks.has(m.id)) S.marks.set(m.id, new Map());
  const marks = S.marks.get(m.id);
  if (m.markPrice) marks.set(Math.floor(m.oracleTimeMs / 1000), m.markPrice / USDC); // the mark moves with each applied oracle price
  S.mark.setData([...marks].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value })));
  S.candles.setData(c.candles.map(([t, o, h, l, cl]) => ({ time: t / 1000, open: o / USDC, high: h / USDC, low: l / USDC, close: cl / USDC })));
  if (S.fitted !== `${m.id}:${S.interval}`) { S.chart.timeScale().fitContent(); S.fitted = `${m.id}:${S.interval}`; }
}

async function loadMarket() {
  const m = S.market;
  const [markets, book, trades, funding] = await Promise.all([api("/v1/markets"), api(`/v1/markets/${m.id}/book?depth=12`),
    api(`/v1/markets/${m.id}/trades?limit=30`), api(`/v1/markets/${m.id}/funding?limit=1`)]);
  S.markets = markets;
  S.market = markets.find((x) => x.id === m.id);
  S.book = book; S.trades = trades; S.funding = funding; S.fundingAt = Date.now();
  renderMarket();
  renderPreview();
  await loadChart();
}

function renderMarket() {
  const m = S.market;
  $("market-title").innerHTML = `${esc(m.symbol)} <span class="muted">mark ${usd(m.markPrice)} · oracle ${usd(m.oraclePrice)}</span>`;
  renderFunding();
  const asks = S.book.asks.slice().reverse(), bids = S.book.bids;
  $("book").innerHTML = "<tr><th>price</th><th>size</th><th>orders</th></tr>" +
    asks.map(([p, s, n]) => `<tr class="ask"><td>${usd(p)}</td><td>${base(s, m)}</td><td>${n}</td></tr>`).join("") +
    `<tr class="spread"><td colspan="3">${asks.length && bids.length ? `spread ${usd(S.book.asks[0][0] - bids[0][0])} · ` : ""}oracle ${usd(m.oraclePrice)}</td></tr>` +
    bids.map(([p, s, n]) => `<tr class="bid"><td>${usd(p)}</td><td>${base(s, m)}</td><td>${n}</td></tr>`).join("");
  $("trades").innerHTML = rows(["price", "size", "time"], S.trades.slice(0, 15), (t) =>
    `<tr class="${t.takerSide === "buy" ? "bid" : "ask"}"><td>${usd(t.price)}</td><td>${base(t.size, m)}</td>` +
    `<td>${new Date(t.timestampMs).toLocaleTimeString()}</td></tr>`);
}

function renderFunding() {
  const f = S.funding, m = S.market;
  if (!f) return;
  const next = (f.nextFundingMs - Date.now()) / 1000;
  $("funding").innerHTML = `<b>funding rate</b><span>${f.lastRatePpm == null ? "none yet" : `${(f.lastRatePpm / 1e4).toFixed(4)}% per ${duration(f.intervalMs / 1000)}`}</span>` +
    `<b>next funding</b><span id="next-funding">in ${duration(next)}</span>` +
    `<b>open interest</b><span>${base(m.openInterest, m)} ${esc(m.symbol.split("-")[0])}</span>` +
    `<b>margin</b><span>initial ${m.initialMarginPpm / 1e4}% · maintenance ${m.maintenanceMarginPpm / 1e4}% · max ${m.maxLeverage}x</span>`;
}

// --- order entry with a risk preview -----------------------------------------------------------
function orderInputs() {
  const m = S.market;
  return { isBuy: document.querySelector("input[name=side]:checked").value === "buy",
    price: toUnits($("price").value, 6), size: toUnits($("size").value, m.baseDecimals),
    leverage: BigInt($("leverage").value || "1"), tif: $("reduce-only").checked ? 1 : Number($("tif").value), reduceOnly: $("reduce-only").checked,
    move: Number($("move").value || "0"),
    tp: $("tp").value.trim() ? toUnits($("tp").value, 6) : null, sl: $("sl").value.trim() ? toUnits($("sl").value, 6) : null };
}

// Margin maths of docs/engine.md on BigInt: notional = size*price/S, margin = notional/leverage
// (rounded up), liquidation where equity = |size|*P*MMF/S, i.e. P = (cost - margin)*S / (size - |size|*MMF).
const ceilDiv = (a, b) => (a + b - 1n) / b;
const abs = (x) => (x < 0n ? -x : x);
function liquidationPrice(size, cost, margin, mmfPpm, scale) {
  if (size === 0n) return null;
  const den = size * 1_000_000n - abs(size) * mmfPpm;
  const p = ((cost - margin) * scale * 1_000_000n) / den;
  return p > 0n ? p : null;
}

function computePreview(o) {
  const m = S.market, scale = 10n ** BigInt(m.baseDecimals), mmf = BigInt(m.maintenanceMarginPpm);
  const notional = (o.size * o.price) / scale;
  const margin = ceilDiv(notional, o.leverage);
  const bestAsk = S.book.asks[0]?.[0], bestBid = S.book.bids[0]?.[0];
  const crosses = o.isBuy ? bestAsk != null && o.price >= BigInt(bestAsk) : bestBid != null && o.price <= BigInt(bestBid);
  const fee = ceilDiv(notional * BigInt(crosses ? m.takerFeePpm : m.makerFeePpm), 1_000_000n);
  const p0 = S.account?.positions.find((p) => p.market === m.id);
  const size0 = BigInt(p0?.size ?? 0), margin0 = BigInt(p0?.margin ?? 0), owed0 = BigInt(p0?.fundingOwed ?? 0);
  const cost0 = (size0 * BigInt(p0?.entryPrice ?? 0)) / scale;
  const delta = o.isBuy ? o.size : -o.size;
  const size1 = size0 + delta;
  let cost1, margin1;
  if (size0 === 0n || (size0 > 0n) === (delta > 0n)) {
    cost1 = cost0 + (delta * o.price) / scale; margin1 = margin0 + margin;
  } else { // reducing (or flipping): the closed part leaves at the fill price, its margin with it
    const kept = abs(size1) <= abs(size0) ? size1 : 0n;
    cost1 = size0 === 0n ? 0n : (cost0 * kept) / size0; margin1 = size0 === 0n ? 0n : (margin0 * abs(kept)) / abs(size0);
    if (abs(size1) > abs(size0)) { const extra = size1; cost1 = (extra * o.price) / scale; margin1 = ceilDiv((abs(extra) * o.price) / scale, o.leverage); }
  }
  const liq = liquidationPrice(size1, cost1 + owed0, margin1, mmf, scale);
  const mark = BigInt(m.markPrice || 0);
  const moved = (mark * BigInt(Math.round((100 + o.move) * 1e4))) / 1_000_000n;
  const equity = margin1 - owed0 + (size1 * moved) / scale - cost1;
  const maintenance = (abs(size1) * moved * mmf) / (scale * 1_000_000n);
  return { notional, margin, fee, crosses, size1, liq, moved, pnl: (size1 * moved) / scale - cost1, equity,
    liquidated: size1 !== 0n && equity < maintenance };
}

function renderPreview() {
  let o;
  try { o = orderInputs(); } catch { $("preview").innerHTML = `<b>preview</b><span class="muted">enter price and size</span>`; return; }
  if (!S.market || o.price <= 0n || o.size <= 0n || o.leverage <= 0n) return;
  const p = computePreview(o), m = S.market;
  $("preview").innerHTML =
    `<b>notional</b><span>${usd(p.notional)} USDC</span>` +
    `<b>margin required</b><span id="pv-margin">${usd(p.margin)} USDC</span>` +
    `<b>fee</b><span id="pv-fee">${usd(p.fee, 4)} USDC (${p.crosses ? "taker" : "maker"})</span>` +
    `<b>position after</b><span>${base(p.size1, m)}</span>` +
    `<b>liq. price after</b><span id="pv-liq">${p.liq == null ? "none" : usd(p.liq)}</span>` +
    `<b>if mark ${o.move >= 0 ? "+" : ""}${o.move}% (${usd(p.moved)})</b>` +
    `<span id="pv-move">PnL ${signed(p.pnl)}, equity ${usd(p.equity)}${p.liquidated ? ' <span class="neg">liquidated</span>' : ""}</span>`;
}

const placeOrder = guarded(async (ev) => {
  ev.preventDefault();
  const o = orderInputs();
  const r = await sendTx("PlaceOrder", { market: S.market.id, isBuy: o.isBuy, price: o.price, size: o.size,
    leverage: o.leverage, timeInForce: o.tif, reduceOnly: o.reduceOnly });
  // TP/SL ride with the order: reduce-only triggers on the other side for its size; they wait (reserving
  // nothing) for the mark and fill nothing while there is no position to reduce.
  const attached = [];
  if (o.tp != null) { await sendTrigger(S.market, !o.isBuy, TAKE_PROFIT, o.tp, o.size); attached.push("take-profit"); }
  if (o.sl != null) { await sendTrigger(S.market, !o.isBuy, STOP_LOSS, o.sl, o.size); attached.push("stop-loss"); }
  toast(`order ${r.order?.status ?? "placed"} in block ${r.block}${r.fills?.length ? `, ${r.fills.length} fill(s)` : ""}` +
    (attached.length ? ` with ${attached.join(" and ")}` : ""));
  refresh();
});

// --- account -----------------------------------------------------------------------------------
function health(p) {
  if (p.size === 0 || p.equity <= 0) return 0;
  return Math.max(0, Math.min(1, 1 - p.maintenanceMargin / p.equity));
}

async function loadAccount() {
  if (!S.signer) return;
  const a = S.signer.address;
  try { S.account = await api(`/v1/accounts/${a}`); } catch { S.account = { address: a, collateral: 0, positions: [], openOrders: [], withdrawals: [] }; }
  S.fills = await api(`/v1/accounts/${a}/fills?limit=20`);
  renderAccount();
  renderPreview();
}

function renderAccount() {
  const acc = S.account, byId = Object.fromEntries(S.markets.map((m) => [m.id, m]));
  $("address").textContent = `${acc.address} (${S.signer.kind})`;
  const used = acc.positions.reduce((s, p) => s + p.margin, 0);
  $("collateral").innerHTML = `<b>free collateral</b><span id="free">${usd(acc.collateral)} USDC</span>` +
    `<b>in positions</b><span>${usd(used)} USDC</span>`;
  $("positions").innerHTML = rows(["market", "size", "entry", "mark", "margin", "health", "liq. price", "unrealised PnL", "funding owed", "margin ±", "TP / SL"],
    acc.positions, (p) => {
      const m = byId[p.market], h = health(p), color = h > 0.5 ? "var(--green)" : h > 0.2 ? "var(--amber)" : "var(--red)";
      return `<tr data-market="${p.market}"><td>${esc(m.symbol)}</td><td class="${p.size > 0 ? "pos" : "neg"}">${base(p.size, m)}</td>` +
        `<td>${usd(p.entryPrice)}</td><td>${usd(p.markPrice)}</td><td>${usd(p.margin)}</td>` +
        `<td title="1 - maintenance/equity"><span class="bar"><i style="width:${(h * 100).toFixed(0)}%;background:${color}"></i></span> ${(h * 100).toFixed(0)}%</td>` +
        `<td class="liq">${p.liquidationPrice ? usd(p.liquidationPrice) : "none"}</td><td>${signed(p.unrealizedPnl)}</td><td>${usd(p.fundingOwed, 4)}</td>` +
        `<td><input class="margin-amount" placeholder="USDC"><button class="add-margin">+</button><button class="remove-margin">−</button></td>` +
        `<td><input class="tp-price" placeholder="TP"><input class="sl-price" placeholder="SL"><button class="set-tpsl">set</button></td></tr>`;
    });
  $("orders").innerHTML = rows(["market", "side", "price", "remaining", "reserved", "modify (price, size)", ""], acc.openOrders, (o) =>
    `<tr data-nonce="${o.nonce}"><td>${esc(byId[o.market].symbol)}</td><td class="${o.isBuy ? "pos" : "neg"}">${o.isBuy ? "buy" : "sell"}</td><td>${usd(o.price)}</td>` +
    `<td>${base(o.remaining, byId[o.market])}</td><td>${usd(o.reserved)}</td>` +
    `<td><input class="modify-price" placeholder="price"><input class="modify-size" placeholder="size"><button class="modify">modify</button></td>` +
    `<td><button class="cancel" data-nonce="${o.nonce}">cancel</button></td></tr>`);
  $("triggers").innerHTML = rows(["market", "kind", "side", "when mark", "limit", "size", ""], acc.triggers ?? [], (t) =>
    `<tr data-nonce="${t.nonce}"><td>${esc(byId[t.market].symbol)}</td><td>${esc(t.kind)}</td><td class="${t.isBuy ? "pos" : "neg"}">${t.isBuy ? "buy" : "sell"}</td>` +
    `<td>${t.firesWhenMark === ">=" ? "≥" : "≤"} ${usd(t.triggerPrice)}</td><td>${usd(t.price)}</td><td>${base(t.size, byId[t.market])}</td>` +
    `<td><button class="cancel" data-nonce="${t.nonce}">cancel</button></td></tr>`);
  renderSchedule();
  $("fills").innerHTML = rows(["market", "side", "price", "size", "fee", "block"], S.fills.slice(0, 10), (f) => {
    const taker = f.taker === acc.address, side = taker ? f.takerSide : f.takerSide === "buy" ? "sell" : "buy";
    return `<tr><td>${esc(byId[f.market].symbol)}</td><td class="${side === "buy" ? "pos" : "neg"}">${side} (${taker ? "taker" : "maker"})</td>` +
      `<td>${usd(f.price)}</td><td>${base(f.size, byId[f.market])}</td><td>${usd(taker ? f.takerFee : f.makerFee, 4)}</td><td>${f.block}</td></tr>`;
  });
}

const onAccountClick = guarded(async (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.classList.contains("cancel")) {
    await sendTx("CancelOrder", { orderNonce: BigInt(b.dataset.nonce) });
    toast("order cancelled");
  } else if (b.classList.contains("modify")) {
    const tr = b.closest("tr"), o = S.account.openOrders.find((x) => String(x.nonce) === tr.dataset.nonce);
    const m = S.markets.find((x) => x.id === o.market);
    const price = tr.querySelector(".modify-price").value.trim(), size = tr.querySelector(".modify-size").value.trim();
    const r = await sendTx("ModifyOrder", { orderNonce: BigInt(o.nonce), price: price ? toUnits(price, 6) : BigInt(o.price),
      size: size ? toUnits(size, m.baseDecimals) : BigInt(o.remaining) });
    toast(`order replaced: ${r.order?.status ?? "placed"} in block ${r.block}`);
  } else if (b.classList.contains("set-tpsl")) {
    const tr = b.closest("tr"), p = S.account.positions.find((x) => String(x.market) === tr.dataset.market);
    const m = S.markets.find((x) => x.id === p.market), size = BigInt(Math.abs(p.size)), closeBuy = p.size < 0;
    const tp = tr.querySelector(".tp-price").value.trim(), sl = tr.querySelector(".sl-price").value.trim();
    if (!tp && !sl) throw new Error("enter a take-profit or a stop-loss price");
    if (tp) await sendTrigger(m, closeBuy, TAKE_PROFIT, toUnits(tp, 6), size);
    if (sl) await sendTrigger(m, closeBuy, STOP_LOSS, toUnits(sl, 6), size);
    toast(`${[tp && "take-profit", sl && "stop-loss"].filter(Boolean).join(" and ")} set`);
  } else if (b.id === "dms-arm") {
    const seconds = Number($("dms-seconds").value);
    if (!(seconds >= 5)) throw new Error("the switch must be at least 5 s ahead");
    await sendTx("ScheduleCancel", { cancelAt: BigInt(Date.now() + Math.round(seconds * 1000)) });
    toast(`every order and trigger is cancelled in ${duration(seconds)} unless you re-arm or clear the switch`);
  } else if (b.id === "dms-clear") {
    await sendTx("ScheduleCancel", { cancelAt: 0n });
    toast("dead-man's switch cleared");
  } else if (b.classList.contains("add-margin") || b.classList.contains("remove-margin")) {
    const tr = b.closest("tr"), amount = toUnits(tr.querySelector(".margin-amount").value, 6);
    await sendTx("AdjustMargin", { market: Number(tr.dataset.market), amount: b.classList.contains("add-margin") ? amount : -amount });
    toast("margin adjusted");
  } else return;
  refresh();
});

// The dead-man's switch (ScheduleCancel): when it cancels everything, counted down each second.
function renderSchedule() {
  const sc = S.account?.scheduledCancel;
  if (!sc) { $("dms-state").textContent = ""; return; }
  const left = sc.cancelAtMs ? (sc.cancelAtMs - Date.now()) / 1000 : null;
  $("dms-state").innerHTML = sc.cancelAtMs
    ? `armed: cancels all in <span class="warn">${duration(left)}</span> (${new Date(sc.cancelAtMs).toLocaleTimeString()}); ${sc.runsLeftToday} runs left today`
    : `off; ${sc.runsLeftToday} runs left today`;
}

// --- withdrawals (L2 -> L1) ------------------------------------------------------------------
const WITHDRAWAL_STATE = { waiting_for_checkpoint: "waiting for a checkpoint", in_challenge_period: "in challenge period",
  ready: "ready to claim", claimed: "claimed" };

async function loadWithdrawals() {
  if (!S.signer || !S.account) return;
  if (S.l1 === false) {
    S.withdrawals = S.account.withdrawals.map((w) => ({ ...w, state: "waiting_for_checkpoint" }));
  } else {
    try { S.withdrawals = (await api(`/v1/l1/accounts/${S.signer.address}`)).withdrawals; } catch { return; }
  }
  S.withdrawalsAt = Date.now();
  renderWithdrawals();
}

function renderWithdrawals() {
  const passed = (Date.now() - S.withdrawalsAt) / 1000;
  $("withdrawals").innerHTML = rows(["#", "amount", "L2 block", "state", ""], S.withdrawals.slice().reverse(), (w) => {
    const left = w.state === "in_challenge_period" ? ` <span class="countdown warn">${duration(w.challengeTimeLeft - passed)} left</span>` : "";
    return `<tr data-index="${w.index}"><td>${w.index}</td><td>${usd(w.amount)}</td><td>${w.block}</td>` +
      `<td class="state">${WITHDRAWAL_STATE[w.state] ?? w.state}${w.output != null ? ` (output ${w.output})` : ""}${left}</td>` +
      `<td>${w.claim ? `<button class="claim" data-index="${w.index}">claim on L1</button>` : ""}</td></tr>`;
  });
}

const withdraw = guarded(async (ev) => {
  ev.preventDefault();
  const r = await sendTx("Withdraw", { amount: toUnits($("withdraw-amount").value, 6) });
  toast(`withdrawal in block ${r.block}; claimable on L1 once a checkpoint holding it is final`);
  S.withdrawalsAt = 0;
  refresh();
});

const onWithdrawalClick = guarded(async (ev) => {
  const b = ev.target.closest("button.claim");
  if (b) await sendL1(S.withdrawals.find((w) => String(w.index) === b.dataset.index).claim, "claim");
});

// --- L1 ----------------------------------------------------------------------------------------
async function loadL1() {
  try { S.l1 = await api("/v1/l1"); } catch (e) { S.l1 = /not_found/.test(e.message) ? false : S.l1; }
  S.l1At = Date.now();
  renderL1();
}

function renderL1() {
  const l1 = S.l1;
  if (!l1) { $("l1-status").innerHTML = `<b>L1</b><span class="muted">this node has no L1 connection</span>`; return; }
  const passed = (Date.now() - S.l1At) / 1000;
  $("l1-status").innerHTML = `<b>bridge</b><span class="mono">${l1.bridge} <span class="badge ${l1.frozen ? "frozen" : ""}" id="frozen">${l1.frozen ? "FROZEN" : "live"}</span></span>` +
    `<b>clocks</b><span>challenge period ${duration(l1.challengePeriod)} · forced grace ${duration(l1.forcedGrace)}</span>` +
    `<b>outputs</b><span>${l1.outputCount} (last final ${l1.lastFinalOutput})</span>` +
    `<b>inbox</b><span>${l1.inboxCount} entries, ${l1.openForcedRequests} open forced requests</span>`;
  $("outputs").innerHTML = rows(["#", "L2 block", "inbox", "proposed (L1 time)", "state"], l1.outputs.slice().reverse(), (o) =>
    `<tr><td>${o.index}</td><td>${o.l2Block}</td><td>${o.inboxCount}</td><td>${new Date(o.proposedAt * 1000).toLocaleTimeString()}</td>` +
    `<td>${o.final ? '<span class="pos">final</span>' : l1.frozen ? "pending (frozen)" : `in challenge, <span class="warn">${duration(o.challengeTimeLeft - passed)} left</span>`}</td></tr>`);
  $("forced").innerHTML = rows(["inbox #", "account", "amount", "state", ""], l1.forcedRequests, (f) =>
    `<tr><td>${f.inboxIndex}</td><td class="mono">${short(f.account)}</td><td>${usd(f.amount)}</td>` +
    `<td>${f.served ? "served" : f.covered ? "covered by a pending output" : f.graceLeft - passed > 0 ? `grace <span class="warn">${duration(f.graceLeft - passed)} left</span>` : "grace over"}</td>` +
    `<td>${f.freeze ? `<button class="l1call" data-call="freeze:${f.inboxIndex}">freeze the bridge</button>` : ""}</td></tr>`);
  $("inbox").innerHTML = rows(["#", "kind", "account", "amount", "L1 block"], l1.inbox.slice().reverse(), (e) =>
    `<tr><td>${e.inboxIndex}</td><td>${e.kind}</td><td class="mono">${short(e.account)}</td><td>${usd(e.amount)}</td><td>${e.l1Block}</td></tr>`);
  $("escape").innerHTML = !l1.frozen ? "" :
    `<h3>Escape hatch: the bridge froze at output ${l1.frozenOutput}; each account registers what that state owes it, ` +
    `then claims its share of the pool (${usd(l1.escapePool)} USDC for ${usd(l1.totalRegistered)} registered)</h3>` +
    `<div class="kv"><b>registration window</b><span id="escape-window">${l1.escapeDeadline - l1.now - passed > 0
      ? `open, <span class="warn">${duration(l1.escapeDeadline - l1.now - passed)} left</span>` : "closed: claims are open"}</span></div>` +
    `<table id="escapes" class="num">${rows(["account", "escape amount", "registered", "state", ""], l1.escapes, (e) =>
      `<tr data-account="${e.account}"><td class="mono">${e.account}</td><td>${usd(e.amount)}</td>` +
      `<td>${e.registered ? usd(e.owed) : "no"}</td><td class="state">${e.paid ? "escaped" : e.registered ? `registered, due ${usd(e.due)}` : "not registered"}</td>` +
      `<td>${e.action ? `<button class="l1call" data-call="escape:${e.account}">${e.registered ? "claim escape" : "register escape"}</button>` : ""}</td></tr>`)}</table>` +
    `<h3>Refundable deposits (after the frozen inbox count ${l1.frozenInboxCount})</h3>` +
    `<table id="refunds" class="num">${rows(["inbox #", "account", "amount", ""], l1.refunds, (r) =>
      `<tr><td>${r.inboxIndex}</td><td class="mono">${r.account}</td><td>${usd(r.amount)}</td>` +
      `<td><button class="l1call" data-call="refund:${r.inboxIndex}">refund</button></td></tr>`)}</table>`;
}

const onL1Click = guarded(async (ev) => {
  const b = ev.target.closest("button.l1call");
  if (!b) return;
  const [kind, key] = b.dataset.call.split(":"), l1 = S.l1;
  const call = kind === "escape" ? l1.escapes.find((e) => e.account === key).action
    : kind === "refund" ? l1.refunds.find((r) => String(r.inboxIndex) === key).refund
      : l1.forcedRequests.find((f) => String(f.inboxIndex) === key).freeze;
  await sendL1(call, kind);
  setTimeout(loadL1, 1500);
});

// --- live updates ------------------------------------------------------------------------------
let pending = null;
function refresh() {
  clearTimeout(pending);
  pending = setTimeout(guarded(async () => {
    S.status = await api("/v1/status");
    showChain();
    await Promise.all([loadMarket(), loadAccount()]);
    if (Date.now() - S.withdrawalsAt > 3000) await loadWithdrawals();
  }), 250);
}

function showChain() {
  $("chain").textContent = `chain ${S.status.chainId} · block ${S.status.blockNumber}`;
}

function connectStream() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
  ws.onopen = () => $("live").classList.add("on");
  ws.onmessage = (msg) => { if (JSON.parse(msg.data).type === "block") refresh(); };
  ws.onclose = () => { $("live").classList.remove("on"); setTimeout(connectStream, 2000); };
}

function tick() {
  renderFunding();
  if (S.account) renderSchedule();
  if (S.withdrawals.length) renderWithdrawals();
  if (S.l1) renderL1();
  if (Date.now() - S.l1At > 3000) loadL1();
  if (S.signer && Date.now() - S.withdrawalsAt > 3000) loadWithdrawals();
}

async function useSigner(signer) {
  S.signer = signer;
  S.withdrawals = []; S.withdrawalsAt = 0;
  await loadAccount();
  await loadWithdrawals();
}

async function main() {
  S.status = await api("/v1/status");
  showChain();
  S.markets = await api("/v1/markets");
  $("market").innerHTML = S.markets.map((m) => `<option value="${m.id}">${esc(m.symbol)}</option>`).join("");
  S.market = S.markets[0];
  setupChart();
  const dev = await api("/v1/dev/accounts").catch(() => []);
  $("account").innerHTML = `<option value="">${dev.length ? "pick a dev account" : "no dev accounts (connect a wallet)"}</option>` +
    dev.map((a) => `<option value="${a.key}">${short(a.address)} (dev)</option>`).join("");
  $("account").onchange = guarded(async (e) => { if (e.target.value) await useSigner(devSigner(e.target.value)); });
  if (window.ethereum) {
    $("connect").hidden = false;
    $("connect").onclick = guarded(async () => { await useSigner(await walletSigner(window.ethereum)); $("account").value = ""; });
  }
  $("market").onchange = guarded(async (e) => { S.market = S.markets.find((m) => m.id === Number(e.target.value)); await loadMarket(); });
  $("intervals").onclick = guarded(async (e) => {
    const b = e.target.closest("button"); if (!b) return;
    S.interval = b.dataset.i;
    for (const x of $("intervals").children) x.classList.toggle("on", x === b);
    await loadChart();
  });
  $("order-form").oninput = () => renderPreview();
  $("order-form").onsubmit = placeOrder;
  $("account-panel").onclick = onAccountClick;
  $("withdraw-form").onsubmit = withdraw;
  $("withdrawals").onclick = onWithdrawalClick;
  $("l1-panel").onclick = onL1Click;
  $("price").value = usd(S.market.oraclePrice || 0).replace(/,/g, "");
  $("size").value = "0.1";
  await loadMarket();
  await loadL1();
  connectStream();
  setInterval(tick, 1000);
  document.body.dataset.ready = "1";
}

main().catch((e) => toast(e.message, true));

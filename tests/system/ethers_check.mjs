// A non-Python client of the market: reads one interval's orders, fills and settlements from the
// chain with ethers.js, using only deployments/<chain id>.json (addresses and ABIs), and checks
// them against what the coordinator reported (report.json of `gridswarm demo`).
//
//   node tests/system/ethers_check.mjs RPC_URL DEPLOYMENT_JSON REPORT_JSON [INTERVAL]
//
// Prints one JSON object {ok, interval, checks, failures, summary} and exits 1 if a check fails.
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const [rpcUrl, deploymentPath, reportPath, intervalArg] = process.argv.slice(2);
if (!rpcUrl || !deploymentPath || !reportPath) {
  console.error("usage: ethers_check.mjs RPC_URL DEPLOYMENT_JSON REPORT_JSON [INTERVAL]");
  process.exit(2);
}
const deployment = JSON.parse(readFileSync(deploymentPath, "utf8"));
const report = JSON.parse(readFileSync(reportPath, "utf8"));

const provider = new ethers.JsonRpcProvider(rpcUrl, undefined, { staticNetwork: true });
const market = new ethers.Contract(deployment.market, deployment.abis.EnergyMarket, provider);
const token = new ethers.Contract(deployment.token, deployment.abis.GridToken, provider);
const coder = ethers.AbiCoder.defaultAbiCoder();

const checks = [];
const failures = [];
function check(name, ok, detail = {}) {
  checks.push(name);
  if (!ok) failures.push({ name, ...detail });
}
const big = (x) => BigInt(x);
const lower = (a) => a.toLowerCase();

// The order id layout (IEnergyMarket): interval << 192 | isBid << 191 | owner << 31 | nonce.
function decodeOrderId(id) {
  return {
    interval: id >> 192n,
    bid: ((id >> 191n) & 1n) === 1n,
    owner: ethers.getAddress(ethers.toBeHex((id >> 31n) & ((1n << 160n) - 1n), 20)),
    nonce: id & ((1n << 31n) - 1n),
  };
}

const row = intervalArg
  ? report.intervals.find((r) => String(r.id) === String(intervalArg))
  : report.intervals.find((r) => r.status === "settled");
if (!row) {
  console.log(JSON.stringify({ ok: false, failures: [{ name: "the report has no settled interval" }] }));
  process.exit(1);
}
const k = big(row.id);
const from = deployment.block || 0;

check("chain id matches the deployment", big((await provider.getNetwork()).chainId) === big(deployment.chain_id));
check("report names the deployed market", lower(report.contracts.EnergyMarket) === lower(deployment.market));

// ---- orders
const posted = await market.queryFilter(market.filters.OrderPosted(k), from);
const orders = new Map();
for (const ev of posted) {
  const a = ev.args;
  orders.set(a.orderId, { owner: a.owner, side: Number(a.side), qty: a.qty, price: a.price, locked: a.locked });
  const id = decodeOrderId(a.orderId);
  check(`order ${a.orderId} id encodes its interval, side and owner`,
    id.interval === k && id.bid === (Number(a.side) === 0) && id.owner === a.owner);
  const lock = Number(a.side) === 0 ? a.qty * a.price : null;
  if (lock !== null) check(`bid ${a.orderId} escrows qty x limit`, a.locked === lock);
}
const cancelled = await market.queryFilter(market.filters.OrderCancelled(k), from);
check("orders posted = orders reported", posted.length - cancelled.length === row.orders,
  { chain: posted.length - cancelled.length, report: row.orders });

// ---- fills
const commits = await market.queryFilter(market.filters.FillsCommitted(k), from);
const fills = [];
for (const ev of commits) for (const f of ev.args.fills) fills.push({ id: f.orderId, qty: f.qty, price: f.price });
check("one fill per live order", fills.length === row.fills, { chain: fills.length, report: row.fills });
check("traded fills = trades reported", fills.filter((f) => f.qty > 0n).length === row.traded_fills);
check("fills come in ascending order id", fills.every((f, i) => i === 0 || f.id > fills[i - 1].id));
check("commit transactions = those reported",
  JSON.stringify(commits.map((e) => lower(e.transactionHash))) === JSON.stringify(row.commit_txs.map(lower)));
let bought = 0n, sold = 0n, buyValue = 0n, sellValue = 0n;
for (const f of fills) {
  const o = orders.get(f.id);
  check(`fill ${f.id} names an order of this interval`, o !== undefined);
  if (!o) continue;
  check(`fill ${f.id} within its order`, f.qty <= o.qty);
  if (f.qty > 0n) check(`fill ${f.id} within its limit price`, o.side === 0 ? f.price <= o.price : f.price >= o.price);
  if (o.side === 0) { bought += f.qty; buyValue += f.qty * f.price; } else { sold += f.qty; sellValue += f.qty * f.price; }
}
const [clearedEv] = await market.queryFilter(market.filters.IntervalCleared(k), from);
check("the interval was cleared once", clearedEv !== undefined);
check("bought = sold = cleared volume reported", bought === sold && bought === big(row.cleared_volume_wh),
  { bought: String(bought), sold: String(sold), report: row.cleared_volume_wh });
check("IntervalCleared totals = the fills'", clearedEv.args.boughtWh === bought && clearedEv.args.buyValue === buyValue
  && clearedEv.args.sellValue === sellValue);
// The fill hash chain settlement must reproduce, per commit chunk c: start at bytes32(c + 1),
// then keccak(abi.encode(prev, id, qty, price, lock)) per fill; IntervalCleared carries the last.
let h = ethers.ZeroHash;
commits.forEach((ev, c) => {
  h = ethers.toBeHex(c + 1, 32);
  for (const f of ev.args.fills) {
    h = ethers.keccak256(coder.encode(["bytes32", "uint256", "uint256", "uint256", "uint256"],
      [h, f.orderId, f.qty, f.price, orders.get(f.orderId).locked]));
  }
});
check("fill hash chain recomputed off chain = IntervalCleared.fillsHash", h === clearedEv.args.fillsHash);

// ---- settlement
const [settledEv] = await market.queryFilter(market.filters.IntervalSettled(k), from);
check("the interval was settled once", settledEv !== undefined);
check("settle transaction = the one reported", lower(settledEv.transactionHash) === lower(row.settle_tx));
check("delivered and shortfall = reported", settledEv.args.deliveredWh === big(row.delivered_wh)
  && settledEv.args.shortfallWh === big(row.shortfall_wh));
// one FillsSettled per commit chunk (settled last chunk first)
const settledChunks = await market.queryFilter(market.filters.FillsSettled(k), from);
const settledFill = new Map();
let settledTwice = false;
for (const ev of settledChunks) {
  ev.args.orderIds.forEach((id, i) => {
    if (settledFill.has(id)) settledTwice = true;
    settledFill.set(id, { d: ev.args.deliveredWh[i], amount: ev.args.amounts[i], penalty: ev.args.penalties[i] });
  });
}
check("every fill settled once", !settledTwice && settledFill.size === fills.length
  && fills.every((f) => settledFill.has(f.id)));
const readingsEv = await market.queryFilter(market.filters.MeterReadingsAccepted(k), from);
const exported = new Map(), imported = new Map();
for (const ev of readingsEv) ev.args.participants.forEach((p, i) => {
  exported.set(p, ev.args.exportedWh[i]);
  imported.set(p, ev.args.importedWh[i]);
});

// Trades are financial: each side is settled on its own signed reading (a seller's delivered
// export, a buyer's used import, each capped at its fills); deviations are imbalance.
const delta = new Map(); // token base units each owner gained (+) or paid (-) in this interval
let delivered = 0n;
fills.forEach((f) => {
  const o = orders.get(f.id);
  const { d, amount, penalty } = settledFill.get(f.id) ?? { d: 0n, amount: 0n, penalty: 0n };
  const change = o.side === 1 ? amount - penalty : penalty - amount;
  delta.set(o.owner, (delta.get(o.owner) ?? 0n) + change);
  check(`settled energy of ${f.id} within its fill`, d <= f.qty);
  check(`fill ${f.id} traded at its committed price`, amount === f.qty * f.price);
  if (o.side === 1) {
    delivered += d;
    check(`seller of ${f.id} delivered no more than it signed`, d <= (exported.get(o.owner) ?? 0n));
  } else {
    check(`buyer of ${f.id} used no more than it signed`, d <= (imported.get(o.owner) ?? f.qty));
    check(`buyer of ${f.id} paid at most its escrow`, amount - penalty <= o.locked);
  }
});
check("sellers' delivered energy = IntervalSettled.deliveredWh", delivered === settledEv.args.deliveredWh);

// ---- money: each participant's change = its settlements; the fee recipient gets the surplus
// (the report's before/after balances span all its intervals, so this needs a one-interval run)
const single = report.intervals.length === 1;
for (const p of single ? report.participants : []) {
  const expected = delta.get(ethers.getAddress(p.address)) ?? 0n;
  check(`${p.site} total changed by its settlements`, big(p.total_after) - big(p.total_before) === expected,
    { report: String(big(p.total_after) - big(p.total_before)), chain: String(expected) });
  const [free, locked] = await market.accountOf(p.address);
  const wallet = await token.balanceOf(p.address);
  check(`${p.site} balances read by ethers = reported`, free === big(p.balance_after.market_free)
    && locked === big(p.balance_after.market_locked) && wallet === big(p.balance_after.wallet));
}
if (single) {
  const fee = report.fee_recipient;
  const feeGain = big(fee.balance_after.market_free) - big(fee.balance_before.market_free);
  // the balancing party: congestion rent and grid fees, plus imbalance charges, less refunds
  const [imb] = await market.queryFilter(market.filters.ImbalanceSettled(k), from);
  const expectedGain = settledEv.args.surplus + imb.args.charges - imb.args.refunds;
  check("fee recipient gained rent + imbalance charges - refunds", feeGain === expectedGain,
    { report: String(feeGain), chain: String(expectedGain) });
}

const summary = {
  orders: posted.length, fills: fills.length, volume_wh: String(bought), delivered_wh: String(delivered),
  readings: readingsEv.reduce((n, e) => n + e.args.participants.length, 0), surplus: String(settledEv.args.surplus),
};
console.log(JSON.stringify({ ok: failures.length === 0, interval: String(k), checks: checks.length, failures, summary }));
process.exit(failures.length === 0 ? 0 : 1);

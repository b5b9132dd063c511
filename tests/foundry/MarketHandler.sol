// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm, VM_ADDRESS} from "./Vm.sol";
import {EnergyMarket} from "../../contracts/EnergyMarket.sol";
import {GridToken} from "../../contracts/GridToken.sol";
import {IEnergyMarket} from "../../contracts/interfaces/IEnergyMarket.sol";
import {SettlementMath} from "../../contracts/libraries/SettlementMath.sol";

/// @dev Plays a hostile operator, hostile participants and a hostile admin against the market
/// (one market without links): participants deposit, withdraw, post, cancel and recover; the
/// operator commits ANY price and ANY fills the ABI takes (sometimes the engine's valid answer,
/// sometimes a perturbed one), settles with any subset of readings, each true, false (signed
/// by its owner) or forged (signed by someone else); the admin schedules and applies any
/// parameters; time passes. Whatever the contract accepts is checked against the rules: every
/// fill at the interval's one price and within its limit, in-the-money orders in full, each
/// owner's settlement computed from its own fills and its own reading only, the fee recipient
/// receiving exactly rent + charges - refunds (rent is 0 in one market).
contract MarketHandler {
    Vm internal constant vm = Vm(VM_ADDRESS);
    uint256 internal constant N = 4;

    EnergyMarket public immutable market;
    GridToken public immutable token;
    address public immutable admin;
    address public immutable operator;
    address public fee;

    uint256[N] internal _keys;
    address[N] internal _actors;

    struct Posted {
        uint256 id;
        address owner;
        bool bid;
        uint32 qty;
        uint24 limit;
        uint256 lock;
    }

    uint64 public nextInterval = 1_000;
    uint64 public openK;
    bool public hasOpen;
    mapping(uint64 => Posted[]) internal _book;
    uint64[] internal _cleared;
    mapping(uint64 => IEnergyMarket.SettlementFill[]) internal _committed;
    mapping(uint64 => uint256) internal _price;
    uint256 public ghostLocked;
    bool public violated;
    string public violation;

    uint256 public commitsAccepted;
    uint256 public commitsRefused;
    uint256 public settlesAccepted;
    uint256 public settlesRefused;

    constructor() {
        admin = address(0xA11CE);
        operator = address(0x0BE2A7);
        fee = address(0xFEE);
        token = new GridToken(address(this));
        IEnergyMarket.Params memory p = IEnergyMarket.Params(20, 15, 5, 3600, 3600, fee, operator);
        market = new EnergyMarket(token, admin, p, new IEnergyMarket.Link[](0), 600);
        for (uint256 i; i < N; ++i) {
            uint256 pk = 0xB0B0 + i;
            address a = vm.addr(pk);
            _keys[i] = pk;
            _actors[i] = a;
            vm.prank(admin);
            market.registerParticipant(a, bytes32(pk), uint16(i % 2));
            token.mint(a, 1e15);
            vm.prank(a);
            token.approve(address(market), type(uint256).max);
        }
        token.mint(fee, 1e12);
        vm.prank(fee);
        token.approve(address(market), type(uint256).max);
        vm.prank(fee);
        market.deposit(1e9); // the balancing party's reserve for buyers' refunds
    }

    function actors() external view returns (address[N] memory) {
        return _actors;
    }

    function _fail(string memory why) internal {
        if (!violated) {
            violated = true;
            violation = why;
        }
    }

    function _free(address a) internal view returns (uint256 f) {
        (f,,,,,) = market.accountOf(a);
    }

    // ------------------------------------------------------------------ participants

    function deposit(uint256 who, uint256 amount) external {
        address a = _actors[who % N];
        amount = 1 + amount % 1e9;
        vm.prank(a);
        market.deposit(amount);
    }

    function withdraw(uint256 who, uint256 amount) external {
        address a = _actors[who % N];
        uint256 f = _free(a);
        if (f == 0) return;
        vm.prank(a);
        market.withdraw(1 + amount % f);
    }

    function post(uint256 who, bool bid, uint32 qty, uint24 limit) external {
        if (!hasOpen) _open();
        address a = _actors[who % N];
        qty = 1 + qty % 50;
        limit = 1 + limit % 200;
        vm.prank(a);
        try market.postOrder(openK, bid ? IEnergyMarket.Side.Bid : IEnergyMarket.Side.Offer, qty, limit) returns (
            uint256 id
        ) {
            (,, uint32 q, uint24 l, uint64 lock,) = market.orderOf(id);
            _book[openK].push(Posted(id, a, bid, q, l, lock));
            ghostLocked += lock;
        } catch {}
    }

    function cancel(uint256 index) external {
        Posted[] storage book = _book[openK];
        if (!hasOpen || book.length == 0) return;
        uint256 i = index % book.length;
        Posted memory o = book[i];
        vm.prank(o.owner);
        market.cancelOrder(o.id);
        ghostLocked -= o.lock;
        book[i] = book[book.length - 1];
        book.pop();
    }

    function warp(uint32 seconds_) external {
        vm.warp(block.timestamp + seconds_ % 8000);
    }

    // ------------------------------------------------------------------ hostile admin

    function scheduleParams(uint24 rate, uint24 imbBuy, uint24 imbSell, uint8 who, bool op) external {
        address recipient = who % 3 == 0 ? address(market) : who % 3 == 1 ? address(0xFEE2) : fee;
        address nextOperator = op ? admin : operator; // the admin trying to make itself operator
        IEnergyMarket.Params memory p =
            IEnergyMarket.Params(rate % 100, imbBuy % 100, imbSell % 100, 3600, 3600, recipient, nextOperator);
        vm.prank(admin);
        try market.scheduleParameters(p) {
            if (recipient == address(market) || nextOperator == admin) _fail("invalid parameters scheduled");
        } catch {}
    }

    function applyParams() external {
        (IEnergyMarket.Params memory before,) = market.parameters();
        try market.applyScheduled() {
            (IEnergyMarket.Params memory p,) = market.parameters();
            if (p.feeRecipient != before.feeRecipient) {
                // Fund the new balancing party too (the handler plays it honestly).
                fee = p.feeRecipient;
                token.mint(fee, 1e12);
                vm.prank(fee);
                token.approve(address(market), type(uint256).max);
                vm.prank(fee);
                market.deposit(1e9);
            }
        } catch {}
    }

    // ------------------------------------------------------------------ hostile operator

    function _open() internal {
        openK = nextInterval++;
        vm.prank(operator);
        market.openInterval(openK);
        hasOpen = true;
    }

    /// Closes the open interval and commits price `price` with fills: the valid answer for that
    /// price when `perturb` is 0, else that answer with one fill changed by `perturb`.
    function clear(uint24 price, uint256 perturb, uint256 marginalSeed) external {
        if (!hasOpen) return;
        uint64 k = openK;
        hasOpen = false;
        vm.prank(operator);
        try market.closeInterval(k) {} catch { return; }
        Posted[] memory book = _book[k];
        // Half the time a posted limit (so marginal orders can balance the book), else any price.
        uint256 p = book.length > 0 && price % 2 == 0 ? book[(price / 2) % book.length].limit : uint256(price) % 220;
        vm.prank(operator);
        IEnergyMarket.ZonePrice[] memory zp = new IEnergyMarket.ZonePrice[](1);
        zp[0] = IEnergyMarket.ZonePrice(0, uint24(p));
        market.commitPrices(k, zp, new uint64[](0));
        IEnergyMarket.Fill[] memory fills = _fills(book, p, marginalSeed);
        if (perturb != 0 && fills.length > 0) {
            uint256 j = perturb % fills.length;
            if (perturb % 2 == 0) fills[j].qty = (fills[j].qty + 1 + perturb % 5) % 60;
            else fills[j].price = (p + 1 + perturb % 7) % 230;
        }
        vm.prank(operator);
        try market.commitFills(k, fills, true) {
            ++commitsAccepted;
            _checkAccepted(book, fills, p);
            for (uint256 i; i < fills.length; ++i) {
                uint256 lock;
                for (uint256 b; b < book.length; ++b) {
                    if (book[b].id == fills[i].orderId) lock = book[b].lock;
                }
                _committed[k].push(IEnergyMarket.SettlementFill(fills[i].orderId, fills[i].qty, fills[i].price, lock));
            }
            _price[k] = p;
            _cleared.push(k);
        } catch {
            ++commitsRefused;
        }
    }

    /// One fill per order in ascending id at price p: in the money in full, out of it none, the
    /// marginal ones (limit == p) as much as balances the two sides.
    function _fills(Posted[] memory book, uint256 p, uint256 seed) internal pure returns (IEnergyMarket.Fill[] memory f) {
        uint256 n = book.length;
        f = new IEnergyMarket.Fill[](n);
        // sort ids (insertion sort; n is small)
        uint256[] memory idx = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            idx[i] = i;
            for (uint256 j = i; j > 0 && book[idx[j - 1]].id > book[idx[j]].id; --j) {
                (idx[j - 1], idx[j]) = (idx[j], idx[j - 1]);
            }
        }
        int256 net; // sold - bought from orders in the money
        for (uint256 i; i < n; ++i) {
            Posted memory o = book[idx[i]];
            bool inMoney = o.bid ? o.limit > p : o.limit < p;
            uint256 q = inMoney ? o.qty : 0;
            f[i] = IEnergyMarket.Fill(o.id, q, p);
            net += o.bid ? -int256(q) : int256(q);
        }
        // marginal orders on the short side take up the difference, in a seed-chosen order
        for (uint256 r; r < n && net != 0; ++r) {
            uint256 i = (r + seed) % n;
            Posted memory o = book[idx[i]];
            if (o.limit != p) continue;
            if (o.bid && net > 0) {
                uint256 q = uint256(net) < o.qty ? uint256(net) : o.qty;
                f[i].qty = q;
                net -= int256(q);
            } else if (!o.bid && net < 0) {
                uint256 q = uint256(-net) < o.qty ? uint256(-net) : o.qty;
                f[i].qty = q;
                net += int256(q);
            }
        }
    }

    /// What the contract accepted must obey the clearing rule.
    function _checkAccepted(Posted[] memory book, IEnergyMarket.Fill[] memory fills, uint256 p) internal {
        int256 net;
        for (uint256 i; i < fills.length; ++i) {
            Posted memory o;
            for (uint256 b; b < book.length; ++b) {
                if (book[b].id == fills[i].orderId) o = book[b];
            }
            if (fills[i].price != p) _fail("a fill not at the interval's price was accepted");
            uint256 q = fills[i].qty;
            if (q > o.qty) _fail("a fill above its order was accepted");
            if (q > 0 && (o.bid ? p > o.limit : p < o.limit)) _fail("a fill beyond its limit was accepted");
            if ((o.bid ? o.limit > p : o.limit < p) && q != o.qty) _fail("an in-the-money order was starved");
            net += o.bid ? -int256(q) : int256(q);
        }
        if (net != 0) _fail("bought != sold was accepted");
    }

    /// Settles the oldest cleared interval with readings: per owner (bitwise in `mask`) none,
    /// a reading of `values` (signed by the owner, true or not), or one signed by another key.
    /// With `late`, time first passes `settleBy` (then missing readings count as the worst case;
    /// before it the operator needs every traded owner's reading).
    function settle(uint256 mask, uint256 values, bool forge_, bool late) external {
        if (_cleared.length == 0) return;
        uint64 k = _cleared[0];
        if (late) vm.warp(uint256(market.intervalOf(k).settleBy) + 1);
        IEnergyMarket.SettlementFill[] memory fills = _committed[k];
        (IEnergyMarket.SignedReading[] memory rs, uint256[N] memory exp, uint256[N] memory imp, bool[N] memory has) =
            _readings(k, mask, values, forge_);
        uint256[N] memory before;
        for (uint256 i; i < N; ++i) {
            before[i] = _free(_actors[i]);
        }
        uint256 feeBefore = _free(fee);
        vm.prank(operator);
        try market.settle(k, 0, fills, rs) {
            ++settlesAccepted;
            if (forge_ && rs.length > 0) _fail("a forged reading was accepted");
            _checkSettled(k, fills, exp, imp, has, before, feeBefore);
            _cleared[0] = _cleared[_cleared.length - 1];
            _cleared.pop();
            // settling twice is impossible
            vm.prank(operator);
            try market.settle(k, 0, fills, rs) {
                _fail("an interval settled twice");
            } catch {}
        } catch {
            ++settlesRefused;
        }
    }

    function _readings(uint64 k, uint256 mask, uint256 values, bool forge_)
        internal
        view
        returns (IEnergyMarket.SignedReading[] memory rs, uint256[N] memory exp, uint256[N] memory imp, bool[N] memory has)
    {
        // ascending addresses
        uint256[N] memory order;
        for (uint256 i; i < N; ++i) {
            order[i] = i;
            for (uint256 s2 = i; s2 > 0 && _actors[order[s2 - 1]] > _actors[order[s2]]; --s2) {
                (order[s2 - 1], order[s2]) = (order[s2], order[s2 - 1]);
            }
        }
        uint256 m;
        for (uint256 i; i < N; ++i) {
            if (mask >> i & 1 == 1) ++m;
        }
        rs = new IEnergyMarket.SignedReading[](m);
        uint256 j;
        for (uint256 r; r < N; ++r) {
            uint256 i = order[r];
            if (mask >> i & 1 == 0) continue;
            exp[i] = (values >> (16 * i)) % 80;
            imp[i] = (values >> (16 * i + 8)) % 80;
            has[i] = true;
            IEnergyMarket.MeterReading memory reading =
                IEnergyMarket.MeterReading(_actors[i], k, uint64(exp[i]), uint64(imp[i]));
            uint256 signer = forge_ && j == 0 ? _keys[(i + 1) % N] : _keys[i];
            (uint8 v, bytes32 rr, bytes32 s) = vm.sign(signer, market.meterReadingDigest(reading));
            bytes32 vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
            rs[j++] = IEnergyMarket.SignedReading(reading, rr, vs);
        }
    }

    /// Each owner's free balance moved by exactly the rule applied to its own fills and its own
    /// reading; the fee recipient by exactly charges - refunds (no rent in one market).
    function _checkSettled(
        uint64 k,
        IEnergyMarket.SettlementFill[] memory fills,
        uint256[N] memory exp,
        uint256[N] memory imp,
        bool[N] memory has,
        uint256[N] memory before,
        uint256 feeBefore
    ) internal {
        EnergyMarket.Interval memory iv = market.intervalOf(k);
        int256[N] memory expected;
        int256 feeDelta;
        for (uint256 f; f < fills.length; ++f) {
            IEnergyMarket.SettlementFill memory x = fills[f];
            uint256 i = _actorIndex(address(uint160(x.orderId >> 31)));
            bool isBid = x.orderId & (1 << 191) != 0;
            if (x.qty > 0 && !has[i] && block.timestamp <= iv.settleBy) {
                _fail("the operator settled a traded fill without its owner's reading before settleBy");
            }
            uint256 credit;
            if (isBid) {
                uint256 used = x.qty;
                if (has[i]) (used, imp[i]) = SettlementMath.allot(x.qty, imp[i]);
                (, uint256 refund, uint256 c) = SettlementMath.bid(x.lock, x.qty, x.price, used, iv.imbalanceSell);
                credit = c;
                feeDelta += int256(x.qty * x.price) - int256(refund);
            } else {
                uint256 d;
                if (has[i]) (d, exp[i]) = SettlementMath.allot(x.qty, exp[i]);
                (, uint256 charge, uint256 c) = SettlementMath.offer(x.lock, x.qty, x.price, d, iv.imbalanceBuy);
                credit = c;
                feeDelta += int256(charge) - int256(x.qty * x.price);
            }
            expected[i] += int256(credit);
            ghostLocked -= x.lock;
        }
        for (uint256 i; i < N; ++i) {
            if (_actors[i] == fee) continue;
            if (int256(_free(_actors[i])) - int256(before[i]) != expected[i]) {
                _fail("a balance moved other than by its own fills and reading");
            }
        }
        if (int256(_free(fee)) - int256(feeBefore) != feeDelta) _fail("fee recipient income != rent + charges - refunds");
    }

    function _actorIndex(address a) internal view returns (uint256) {
        for (uint256 i; i < N; ++i) {
            if (_actors[i] == a) return i;
        }
        return type(uint256).max;
    }

    /// Owners recover the locks of a lapsed interval that never cleared.
    function recoverLapsed() external {
        if (!hasOpen) return;
        EnergyMarket.Interval memory iv = market.intervalOf(openK);
        if (block.timestamp <= iv.clearBy) return;
        Posted[] storage book = _book[openK];
        for (uint256 i; i < book.length; ++i) {
            uint256[] memory ids = new uint256[](1);
            ids[0] = book[i].id;
            vm.prank(book[i].owner);
            market.recover(ids);
            ghostLocked -= book[i].lock;
        }
        delete _book[openK];
        hasOpen = false;
    }
}

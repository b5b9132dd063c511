// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm, VM_ADDRESS} from "./Vm.sol";
import {EnergyMarket} from "../../contracts/EnergyMarket.sol";
import {GridToken} from "../../contracts/GridToken.sol";
import {IEnergyMarket} from "../../contracts/interfaces/IEnergyMarket.sol";

/// @dev Drives random but valid sequences through the market (solady's WETH handler pattern):
/// four participants deposit, withdraw, post, cancel and recover; the operator opens, closes,
/// commits (in one or two chunks) and settles with readings the sellers sign; time passes, the
/// pauser pauses. Ghost variables record what the contract accepted, and every action checks
/// that nobody else's withdrawable balance went down.
contract MarketHandler {
    Vm internal constant vm = Vm(VM_ADDRESS);
    uint256 internal constant N = 4;
    uint256 internal constant MAX_IN_FLIGHT = 6;

    EnergyMarket public immutable market;
    GridToken public immutable token;
    address public immutable admin;
    address public immutable operator;
    address public immutable fee;

    uint256[N] internal _keys;
    address[N] internal _actors;

    struct Posted {
        uint256 id;
        address owner;
        bool bid;
        uint32 qty;
        uint24 price;
        uint256 lock;
    }

    uint64 public nextInterval = 1_000;
    uint64 public openK;
    bool public hasOpen;
    mapping(uint64 => Posted[]) internal _book; // live orders of each interval
    uint64[] internal _cleared; // cleared, not yet settled (oldest first)
    uint64[] internal _lapsedOrOpen; // intervals whose orders may need recovering
    mapping(uint64 => IEnergyMarket.SettlementFill[]) internal _committed;

    // ---- ghosts: what the contract accepted
    uint256[] public committedIds;
    uint64[] public clearedIntervals;
    mapping(uint256 => uint256) public ghostOrderQty;
    mapping(uint256 => uint256) public ghostFill;
    mapping(uint64 => uint256) public ghostBought;
    mapping(uint64 => uint256) public ghostSold;
    mapping(uint256 => uint256) public settledCount;
    uint256[] public settledIds;
    uint256 public ghostLocked;
    bool public violated;
    string public violation;

    // ---- call statistics (printed by the invariant test's afterInvariant hook)
    uint256 public posts;
    uint256 public commits;
    uint256 public settles;
    uint256 public recovers;
    uint256 public cancels;

    constructor() {
        admin = address(0xA11CE);
        operator = address(0x0BE2A7);
        fee = address(0xFEE);
        token = new GridToken(address(this));
        market = new EnergyMarket(token, admin, operator, 20, 3600, 3600);
        vm.prank(admin);
        market.setParameters(20, 3600, 3600, fee);
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
            vm.prank(a);
            market.deposit(1e9);
        }
    }

    // ================================================================ views for invariants

    function actors() external view returns (address[N] memory) {
        return _actors;
    }

    function committedCount() external view returns (uint256) {
        return committedIds.length;
    }

    function clearedCount() external view returns (uint256) {
        return clearedIntervals.length;
    }

    function settledIdCount() external view returns (uint256) {
        return settledIds.length;
    }

    // ================================================================ participants' actions

    function deposit(uint256 who, uint256 amount) external {
        address a = _actors[who % N];
        amount = _bound(amount, 1, 1e9);
        uint256[N + 1] memory before = _frees();
        vm.prank(a);
        market.deposit(amount);
        _checkFrees(before, a, address(0));
    }

    function withdraw(uint256 who, uint256 amount) external {
        address a = _actors[who % N];
        (uint256 free,,,,,) = market.accountOf(a);
        if (free == 0) return;
        amount = _bound(amount, 1, free);
        uint256[N + 1] memory before = _frees();
        vm.prank(a);
        try market.withdraw(amount) {}
        catch {
            return _fail("a free balance could not be withdrawn");
        }
        _checkFrees(before, a, address(0));
    }

    /// @dev Posts one to four orders (so books have some depth), sides and terms from the seeds.
    function post(uint256 who, bool bid, uint256 qty, uint256 price) external {
        uint256 n = 1 + (who >> 64) % 4;
        for (uint256 i; i < n; ++i) {
            _post(who % N + i, i == 0 ? bid : (price >> (8 + i)) & 1 == 0, qty >> (16 * i), price >> (16 * i));
        }
    }

    function _post(uint256 who, bool bid, uint256 qty, uint256 price) internal {
        if (!hasOpen) return;
        address a = _actors[who % N];
        qty = _bound(qty, 1, 1_000);
        price = _bound(price, 1, 200);
        uint256[N + 1] memory before = _frees();
        vm.prank(a);
        try market.postOrder(openK, bid ? IEnergyMarket.Side.Bid : IEnergyMarket.Side.Offer, uint32(qty), uint24(price))
        returns (uint256 id) {
            (,,,, uint64 lock,) = market.orderOf(id);
            _book[openK].push(Posted(id, a, bid, uint32(qty), uint24(price), lock));
            ghostOrderQty[id] = qty;
            ghostLocked += lock;
            ++posts;
        } catch {}
        _checkFrees(before, a, address(0));
    }

    function cancel(uint256 seed) external {
        if (!hasOpen) return;
        Posted[] storage orders = _book[openK];
        if (orders.length == 0) return;
        uint256 i = seed % orders.length;
        Posted memory o = orders[i];
        uint256[N + 1] memory before = _frees();
        vm.prank(o.owner);
        try market.cancelOrder(o.id) {}
        catch {
            return _fail("a live order could not be cancelled while open");
        }
        ghostLocked -= o.lock;
        _remove(orders, i);
        ++cancels;
        _checkFrees(before, o.owner, address(0));
    }

    function recover(uint256 seed) external {
        for (uint256 t; t < _lapsedOrOpen.length; ++t) {
            uint64 k = _lapsedOrOpen[(seed % _lapsedOrOpen.length + t) % _lapsedOrOpen.length];
            if (!market.lapsed(k)) continue;
            Posted[] storage orders = _book[k];
            if (orders.length == 0) continue;
            uint256 i = seed % orders.length;
            Posted memory o = orders[i];
            uint256[N + 1] memory before = _frees();
            uint256[] memory ids = new uint256[](1);
            ids[0] = o.id;
            vm.prank(o.owner);
            try market.recover(ids) {}
            catch {
                return _fail("an order of a lapsed interval could not be recovered");
            }
            ghostLocked -= o.lock;
            _remove(orders, i);
            ++recovers;
            _checkFrees(before, o.owner, address(0));
            return;
        }
    }

    // ================================================================ operator and pauser

    function open() external {
        if (hasOpen || _cleared.length >= MAX_IN_FLIGHT) return;
        uint64 k = nextInterval++;
        vm.prank(operator);
        market.openInterval(k);
        openK = k;
        hasOpen = true;
        _lapsedOrOpen.push(k);
    }

    function closeAndCommit(uint256 seed) external {
        if (!hasOpen) return;
        hasOpen = false;
        uint64 k = openK;
        if (market.lapsed(k)) return; // left for recover()
        uint256[N + 1] memory before = _frees();
        vm.prank(operator);
        market.closeInterval(k);

        Posted[] memory orders = _sorted(_book[k]);
        (IEnergyMarket.Fill[] memory fills, uint256[] memory locks) = _match(orders, seed);
        _tryInvalid(k, fills, orders, seed);
        uint256 split = fills.length > 1 ? 1 + seed % (fills.length - 1) : fills.length;
        IEnergyMarket.Fill[] memory first = new IEnergyMarket.Fill[](split);
        IEnergyMarket.Fill[] memory rest = new IEnergyMarket.Fill[](fills.length - split);
        for (uint256 i; i < fills.length; ++i) {
            if (i < split) first[i] = fills[i];
            else rest[i - split] = fills[i];
        }
        vm.prank(operator);
        try market.commitFills(k, first, rest.length == 0) {}
        catch {
            return _fail("a valid commit reverted");
        }
        if (rest.length > 0) {
            vm.prank(operator);
            try market.commitFills(k, rest, true) {}
            catch {
                return _fail("a valid last commit reverted");
            }
        }
        for (uint256 i; i < fills.length; ++i) {
            uint256 id = fills[i].orderId;
            committedIds.push(id);
            ghostFill[id] = fills[i].qty;
            if (orders[i].bid) ghostBought[k] += fills[i].qty;
            else ghostSold[k] += fills[i].qty;
            _committed[k].push(IEnergyMarket.SettlementFill(id, fills[i].qty, fills[i].price, locks[i]));
        }
        _cleared.push(k);
        clearedIntervals.push(k);
        ++commits;
        _checkFrees(before, address(0), address(0));
    }

    function settle(uint256 seed) external {
        if (_cleared.length == 0) return;
        uint64 k = _cleared[0];
        _popCleared();
        if (market.lapsed(k)) return; // its orders are recovered instead
        IEnergyMarket.SettlementFill[] memory fills = _committed[k];
        (IEnergyMarket.SignedReading[] memory readings, address[] memory signers) = _readings(k, fills, seed);
        uint256[N + 1] memory before = _frees();
        vm.recordLogs();
        vm.prank(operator);
        try market.settle(k, fills, readings) {}
        catch {
            return _fail("a valid settlement reverted");
        }
        _countSettled(vm.getRecordedLogs());
        for (uint256 i; i < fills.length; ++i) {
            ghostLocked -= fills[i].lock;
        }
        delete _book[k];
        ++settles;
        _checkFreesAfterSettle(before, signers);
        vm.prank(operator);
        try market.settle(k, fills, readings) {
            _fail("an interval settled twice");
        } catch {}
    }

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + _bound(secs, 1, 5_400));
    }

    function pause(bool paused) external {
        vm.prank(admin);
        market.setPaused(paused);
    }

    // ================================================================ helpers

    /// @dev A uniform-price match: bids at or above P and offers at or below it trade a random
    /// share of the smaller side at P; every other order gets a zero fill.
    function _match(Posted[] memory orders, uint256 seed)
        internal
        pure
        returns (IEnergyMarket.Fill[] memory fills, uint256[] memory locks)
    {
        uint256 n = orders.length;
        fills = new IEnergyMarket.Fill[](n);
        locks = new uint256[](n);
        uint256 p = 1 + (seed >> 8) % 200;
        uint256 supply;
        uint256 demand;
        for (uint256 i; i < n; ++i) {
            if (orders[i].bid && orders[i].price >= p) demand += orders[i].qty;
            if (!orders[i].bid && orders[i].price <= p) supply += orders[i].qty;
        }
        uint256 volume = (supply < demand ? supply : demand) * ((seed >> 16) % 101) / 100;
        uint256 buyLeft = volume;
        uint256 sellLeft = volume;
        for (uint256 i; i < n; ++i) {
            Posted memory o = orders[i];
            uint256 q;
            if (o.bid && o.price >= p) {
                q = o.qty < buyLeft ? o.qty : buyLeft;
                buyLeft -= q;
            } else if (!o.bid && o.price <= p) {
                q = o.qty < sellLeft ? o.qty : sellLeft;
                sellLeft -= q;
            }
            fills[i] = IEnergyMarket.Fill(o.id, q, q > 0 ? p : 0);
            locks[i] = o.lock;
        }
    }

    /// @dev Commits that break a rule must revert; one that does not is a violation.
    function _tryInvalid(uint64 k, IEnergyMarket.Fill[] memory fills, Posted[] memory orders, uint256 seed) internal {
        if (fills.length == 0) return;
        uint256 i = seed % fills.length;
        IEnergyMarket.Fill[] memory bad = new IEnergyMarket.Fill[](fills.length);
        for (uint256 j; j < fills.length; ++j) {
            bad[j] = IEnergyMarket.Fill(fills[j].orderId, fills[j].qty, fills[j].price); // a copy, not an alias
        }
        uint256 kind = (seed >> 24) % 3;
        if (kind == 0) bad[i].qty = orders[i].qty + 1; // exceeds its order
        else if (kind == 1) bad[i] = bad[fills.length - 1 - i]; // repeated or out of order
        if (kind == 1 && i == fills.length - 1 - i) return;
        else bad[i].qty = fills[i].qty + 1; // bought != sold (or above the order)
        if (kind == 1 && fills.length == 1) return;
        if (kind == 2 && fills[i].price == 0) bad[i].price = orders[i].price;
        vm.prank(operator);
        try market.commitFills(k, bad, true) {
            _fail("an invalid commit was accepted");
        } catch {}
    }

    function _readings(uint64 k, IEnergyMarket.SettlementFill[] memory fills, uint256 seed)
        internal
        view
        returns (IEnergyMarket.SignedReading[] memory readings, address[] memory signers)
    {
        // Sellers with a traded offer; each signs (or not) an export around what it sold.
        uint256[N] memory sold;
        uint256 count;
        for (uint256 i; i < fills.length; ++i) {
            if (fills[i].orderId & (1 << 191) != 0 || fills[i].qty == 0) continue;
            address owner = address(uint160(fills[i].orderId >> 31));
            for (uint256 a; a < N; ++a) {
                if (_actors[a] == owner) sold[a] += fills[i].qty;
            }
        }
        bool[N] memory signs;
        for (uint256 a; a < N; ++a) {
            signs[a] = sold[a] > 0 && (seed >> (32 + a)) & 3 != 0;
            if (signs[a]) ++count;
        }
        readings = new IEnergyMarket.SignedReading[](count);
        signers = new address[](count);
        uint256 j;
        // ascending addresses: repeatedly take the smallest not yet taken
        bool[N] memory taken;
        for (uint256 c; c < count; ++c) {
            uint256 best = N;
            for (uint256 a; a < N; ++a) {
                if (!signs[a] || taken[a]) continue;
                if (best == N || _actors[a] < _actors[best]) best = a;
            }
            taken[best] = true;
            uint256 exported = (sold[best] * ((seed >> (40 + best * 8)) % 160)) / 100;
            IEnergyMarket.MeterReading memory r = IEnergyMarket.MeterReading(_actors[best], k, uint64(exported), 7);
            (uint8 v, bytes32 rr, bytes32 s) = vm.sign(_keys[best], market.meterReadingDigest(r));
            readings[j] = IEnergyMarket.SignedReading(r, rr, bytes32(uint256(s) | (uint256(v - 27) << 255)));
            signers[j] = _actors[best];
            ++j;
        }
    }

    function _countSettled(Vm.Log[] memory logs) internal {
        bytes32 topic = IEnergyMarket.FillsSettled.selector;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(market) || logs[i].topics[0] != topic) continue;
            (uint256[] memory ids,,,) = abi.decode(logs[i].data, (uint256[], uint256[], uint256[], uint256[]));
            for (uint256 j; j < ids.length; ++j) {
                settledCount[ids[j]] += 1;
                settledIds.push(ids[j]);
            }
        }
    }

    function _frees() internal view returns (uint256[N + 1] memory f) {
        for (uint256 i; i < N; ++i) {
            (f[i],,,,,) = market.accountOf(_actors[i]);
        }
        (f[N],,,,,) = market.accountOf(fee);
    }

    /// @dev Nobody's withdrawable balance went down except `actor`'s own.
    function _checkFrees(uint256[N + 1] memory before, address actor, address) internal {
        uint256[N + 1] memory afterwards = _frees();
        for (uint256 i; i < N; ++i) {
            if (_actors[i] != actor && afterwards[i] < before[i]) _fail("a balance went down without its owner");
        }
        if (afterwards[N] < before[N]) _fail("the fee recipient's balance went down");
    }

    /// @dev After a settlement only those who signed a reading in it may have less to withdraw.
    function _checkFreesAfterSettle(uint256[N + 1] memory before, address[] memory signers) internal {
        uint256[N + 1] memory afterwards = _frees();
        for (uint256 i; i < N; ++i) {
            bool signed;
            for (uint256 j; j < signers.length; ++j) {
                if (signers[j] == _actors[i]) signed = true;
            }
            if (!signed && afterwards[i] < before[i]) _fail("a settlement took from someone who signed nothing");
        }
        if (afterwards[N] < before[N]) _fail("the fee recipient's balance went down");
    }

    function _sorted(Posted[] storage orders) internal view returns (Posted[] memory out) {
        out = new Posted[](orders.length);
        for (uint256 i; i < orders.length; ++i) {
            Posted memory o = orders[i];
            uint256 j = i;
            while (j > 0 && out[j - 1].id > o.id) {
                out[j] = out[j - 1];
                --j;
            }
            out[j] = o;
        }
    }

    function _remove(Posted[] storage orders, uint256 i) internal {
        orders[i] = orders[orders.length - 1];
        orders.pop();
    }

    function _popCleared() internal {
        for (uint256 i = 1; i < _cleared.length; ++i) {
            _cleared[i - 1] = _cleared[i];
        }
        _cleared.pop();
    }

    function _fail(string memory reason) internal {
        violated = true;
        violation = reason;
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IEnergyMarket} from "../interfaces/IEnergyMarket.sol";
import {OrderWord} from "./OrderWord.sol";

/// @title MarketClearing — the zone and link checks of {EnergyMarket}'s clearing rule (an
/// external library, run by DELEGATECALL in the market's storage so the market stays under the
/// 24,576-byte contract size limit)
/// @notice A zone word packs: bit 255 present, bits 0-23 price, 24-39 index, 40-103 expected
/// net (sold - bought = outflow - inflow, int64), 104-167 committed net (int64), 168-231 the
/// interval it belongs to. Zone words are keyed by clearing slot (interval % 16) and reused.
library MarketClearing {
    uint256 private constant _Z_PRESENT = 1 << 255;
    uint256 private constant _COPPER_ZONE = type(uint16).max;
    uint256 private constant _S_ORDERS = 0x20;
    uint256 private constant _S_ZONES = 0x40;
    uint256 private constant _S_COPPER = 0x60;
    uint256 private constant _S_ZONE = 0x80;
    uint256 private constant _S_ZONE_WORD = 0xa0;
    uint256 private constant _S_DELTAS = 0xc0;
    uint256 private constant _T_BOUGHT_WH = 0x20;
    uint256 private constant _T_SOLD_WH = 0x40;
    uint256 private constant _T_BUY_VALUE = 0x60;
    uint256 private constant _T_SELL_VALUE = 0x80;
    uint256 private constant _T_H = 0xa0;

    /// @notice A commit's running totals, carried from chunk to chunk in the market's clearing
    /// slot: the last order id, bought and sold Wh and value, and the chunk's fill hash chain.
    struct Tally {
        uint256 lastId;
        uint256 boughtWh;
        uint256 soldWh;
        uint256 buyValue;
        uint256 sellValue;
        bytes32 h;
    }

    /// @dev The commit loop's inputs and zone cache (one word per field in memory; the loop
    /// reads it, and the tally, from assembly at the offsets named above).
    struct Scan {
        uint256 interval;
        uint256 orders; // storage slot of the orders mapping
        uint256 zones; // storage slot of the interval's zone words, zoneWord[interval % 16]
        bool copper;
        uint256 zone; // the zone whose word is cached
        uint256 zoneWord;
        int256[] deltas; // per zone index: sold - bought in this chunk
    }

    /// @notice Same as IEnergyMarket's.
    event FillsCommitted(uint64 indexed interval, IEnergyMarket.Fill[] fills);

    /// @notice A fresh zone word of `interval`: `price`, position `index`, nets zero.
    function word(uint64 interval, uint256 price, uint256 index) internal pure returns (uint256) {
        return _Z_PRESENT | price | (index << 24) | (uint256(interval) << 168);
    }

    /// @notice Whether `w` is a zone word committed for `interval`.
    function valid(uint256 w, uint64 interval) internal pure returns (bool) {
        return w & _Z_PRESENT != 0 && uint64(w >> 168) == interval;
    }

    /// @dev Stores the zone prices, checks every link, and returns the rent.
    function commitZones(
        mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord,
        mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt,
        IEnergyMarket.Link[] storage links,
        uint64 interval,
        IEnergyMarket.ZonePrice[] calldata prices,
        uint64[] calldata flows
    )
        external
        returns (uint256 rent)
    {
        uint256 k = prices.length;
        int256[] memory expected = new int256[](k);
        mapping(uint16 => uint256) storage zw = zoneWord[interval % 16];
        for (uint256 i; i < k; ++i) {
            uint16 z = prices[i].zone;
            if (i > 0 && z <= prices[i - 1].zone) revert IEnergyMarket.MarketZonesNotAscending(i, z);
            zw[z] = word(interval, prices[i].price, i);
            zoneAt[interval % 16][i] = z;
        }
        for (uint256 l; l < flows.length; ++l) {
            IEnergyMarket.Link memory link = links[l];
            uint256 a = zw[link.fromZone];
            uint256 b = zw[link.toZone];
            if (!valid(a, interval)) revert IEnergyMarket.MarketZonePriceMissing(0, link.fromZone);
            if (!valid(b, interval)) revert IEnergyMarket.MarketZonePriceMissing(0, link.toZone);
            uint256 f = flows[l];
            if (f > link.limitWh) revert IEnergyMarket.MarketFlowAboveLimit(l, f, link.limitWh);
            int256 diff = int256(uint256(uint24(b))) - int256(uint256(uint24(a)));
            int256 fee = int256(uint256(link.fee));
            if ((f > 0 && diff < fee) || (f < link.limitWh && diff > fee)) {
                revert IEnergyMarket.MarketLinkPriceRule(l, f, diff, link.fee);
            }
            if (f > 0) {
                // diff >= fee >= 0 here; f < 2^64 and diff < 2^24.
                rent += f * uint256(diff);
                expected[uint16(a >> 24)] += int256(f);
                expected[uint16(b >> 24)] -= int256(f);
            }
        }
        for (uint256 i; i < k; ++i) {
            int256 e = expected[i];
            if (e != 0) {
                uint16 z = prices[i].zone;
                if (e > type(int64).max || e < type(int64).min) revert IEnergyMarket.MarketTotalsOverflow(interval);
                zw[z] |= uint256(uint64(int64(e))) << 40;
            }
        }
        if (rent > type(uint128).max) revert IEnergyMarket.MarketTotalsOverflow(interval);
    }

    /// @notice Checks a chunk of fills against their orders and their zones' prices, folds them
    /// into `t` (returned) and the zones' committed nets, and logs them (FillsCommitted).
    /// `fills` is the ABI encoding of the chunk's `Fill[]` elements (0x60 bytes each: order id,
    /// qty, price) as they are in the market's calldata. Each fill must be of a live order of
    /// `interval` (ids ascending, above `t.lastId`), at its zone's committed price, at most the
    /// order's quantity, and follow the price rule: an order in the money is filled in full,
    /// one out of the money not at all, one at the margin by any part.
    function commitChunk(
        mapping(address => OrderWord[16]) storage orders,
        mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord,
        mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt,
        uint64 interval,
        bytes calldata fills,
        uint256 zoneCount,
        bool copper,
        Tally memory t
    ) external returns (Tally memory) {
        // Filled in below.
        // slither-disable-next-line uninitialized-local
        Scan memory s;
        mapping(uint16 => uint256) storage zw = zoneWord[interval % 16];
        (s.interval, s.copper, s.zone, s.zoneWord) = (interval, copper, _COPPER_ZONE, zw[uint16(_COPPER_ZONE)]);
        s.deltas = new int256[](zoneCount);
        assembly ("memory-safe") {
            mstore(add(s, _S_ORDERS), orders.slot)
            mstore(add(s, _S_ZONES), zw.slot)
        }
        {
            uint256 src;
            uint256 end;
            assembly ("memory-safe") {
                src := fills.offset
                end := add(src, fills.length)
            }
            (uint256 err, uint256 at) = _commitFills(src, end, t, s);
            if (err != 0) _commitError(err, at, t, s);
        }
        _flushZones(zoneWord, zoneAt, interval, s.deltas);
        bytes32 topic = FillsCommitted.selector;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, 0x20)
            mstore(add(p, 0x20), div(fills.length, 0x60))
            calldatacopy(add(p, 0x40), fills.offset, fills.length)
            log2(p, add(0x40, fills.length), topic, interval)
        }
        return t;
    }

    /// @dev Checks the fills from calldata offset `src` to `end` (0x60 bytes each) against
    /// their orders and their zones' prices, and folds them into the tally `t` and the zone
    /// nets `s.deltas`. At the first fill that breaks a rule it stops and returns the rule's
    /// code (see {_commitError}, which reverts with the rule's error) and the fill's offset.
    /// The totals cannot overflow: qty < 2^32, price < 2^24, fewer than 2^32 fills; the
    /// deltas wrap as int256 (as unchecked Solidity would), each far from the bounds.
    function _commitFills(uint256 src, uint256 end, Tally memory t, Scan memory s)
        private
        view
        returns (uint256 err, uint256 at)
    {
        assembly ("memory-safe") {
            let interval := mload(s)
            let copper := mload(add(s, _S_COPPER))
            // The key bits every order of the chunk shares: its interval and the live bit.
            let live := or(interval, shl(216, 1))
            for {} lt(src, end) { src := add(src, 0x60) } {
                let id := calldataload(src)
                if iszero(eq(shr(192, id), interval)) {
                    err := 1
                    break
                }
                if iszero(gt(id, mload(t))) {
                    err := 2
                    break
                }
                mstore(t, id)
                // The order: orders[owner][nonce % 16] (owner bits 31-190 of the id, nonce bits 0-30).
                mstore(0x00, and(shr(31, id), 0xffffffffffffffffffffffffffffffffffffffff))
                mstore(0x20, mload(add(s, _S_ORDERS)))
                let w := sload(add(keccak256(0x00, 0x40), and(id, 15)))
                // OrderWordLib.matches: the word's interval (bits 0-63), nonce (64-95), live (216)
                // and bid (217) bits are the id's (nonce: bits 0-30, bid: bit 191).
                if iszero(
                    eq(
                        and(w, or(0xffffffffffffffffffffffff, shl(216, 3))),
                        or(live, or(shl(64, and(id, 0x7fffffff)), shl(26, and(id, shl(191, 1)))))
                    )
                ) {
                    err := 3
                    break
                }
                // The zone's word (cached while the zone stays the same): the order's zone
                // (OrderWordLib.zone, bits 218-233), or in a market without links the copper
                // zone, whose word the cache holds from the start.
                let zword := mload(add(s, _S_ZONE_WORD))
                if iszero(copper) {
                    let zone := and(shr(218, w), 0xffff)
                    if iszero(eq(zone, mload(add(s, _S_ZONE)))) {
                        mstore(0x00, zone)
                        mstore(0x20, mload(add(s, _S_ZONES)))
                        zword := sload(keccak256(0x00, 0x40))
                        mstore(add(s, _S_ZONE), zone)
                        mstore(add(s, _S_ZONE_WORD), zword)
                    }
                }
                // {valid}: present (bit 255) and of this interval (bits 168-231).
                if iszero(and(shr(255, zword), eq(and(shr(168, zword), 0xffffffffffffffff), interval))) {
                    err := 4
                    break
                }
                let p := and(zword, 0xffffff)
                if iszero(eq(calldataload(add(src, 0x40)), p)) {
                    err := 5
                    break
                }
                let qty := calldataload(add(src, 0x20))
                // OrderWordLib.qty (bits 96-127) and .limit (bits 128-151).
                let orderQty := and(shr(96, w), 0xffffffff)
                if gt(qty, orderQty) {
                    err := 6
                    break
                }
                let limit := and(shr(128, w), 0xffffff)
                // In the money: filled in full; out of the money: not at all; at the margin:
                // any part. An offer is in the money with its limit below the price, a bid with
                // its limit above it.
                let inMoney := lt(limit, p)
                let outMoney := gt(limit, p)
                if and(shr(191, id), 1) {
                    inMoney := outMoney
                    outMoney := lt(limit, p)
                }
                if or(and(inMoney, iszero(eq(qty, orderQty))), and(outMoney, iszero(iszero(qty)))) {
                    err := 7
                    break
                }
                // The zone's index among the committed prices (0 in a market without links).
                let index := 0
                if iszero(copper) { index := and(shr(24, zword), 0xffff) }
                let deltas := mload(add(s, _S_DELTAS))
                if iszero(lt(index, mload(deltas))) {
                    err := 8
                    break
                }
                let d := add(add(deltas, 0x20), shl(5, index))
                switch and(shr(191, id), 1)
                case 0 {
                    mstore(add(t, _T_SOLD_WH), add(mload(add(t, _T_SOLD_WH)), qty))
                    mstore(add(t, _T_SELL_VALUE), add(mload(add(t, _T_SELL_VALUE)), mul(qty, p)))
                    mstore(d, add(mload(d), qty))
                }
                default {
                    mstore(add(t, _T_BOUGHT_WH), add(mload(add(t, _T_BOUGHT_WH)), qty))
                    mstore(add(t, _T_BUY_VALUE), add(mload(add(t, _T_BUY_VALUE)), mul(qty, p)))
                    mstore(d, sub(mload(d), qty))
                }
                // The chunk's hash chain: h = keccak256(h, id, qty, price, lock), the lock being
                // the order's (OrderWordLib.lock, bits 152-215); id and qty as in calldata.
                let q := mload(0x40)
                mstore(q, mload(add(t, _T_H)))
                calldatacopy(add(q, 0x20), src, 0x40)
                mstore(add(q, 0x60), p)
                mstore(add(q, 0x80), and(shr(152, w), 0xffffffffffffffff))
                mstore(add(t, _T_H), keccak256(q, 0xa0))
            }
            at := src
        }
    }

    /// @dev Reverts with the error of rule `err` broken by the fill at calldata offset `src`
    /// (codes of {_commitFills}, in the order it checks them).
    function _commitError(uint256 err, uint256 src, Tally memory t, Scan memory s) private view {
        uint256 id;
        uint256 qty;
        uint256 price;
        assembly ("memory-safe") {
            id := calldataload(src)
            qty := calldataload(add(src, 0x20))
            price := calldataload(add(src, 0x40))
        }
        uint64 interval = uint64(s.interval);
        if (err == 1) revert IEnergyMarket.MarketOrderNotInInterval(id, interval);
        if (err == 2) revert IEnergyMarket.MarketFillsNotAscending(id, t.lastId);
        if (err == 3) revert IEnergyMarket.MarketOrderNotFound(id);
        // The order word and the zone's word as {_commitFills} left them.
        uint256 w;
        assembly ("memory-safe") {
            mstore(0x00, and(shr(31, id), 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(0x20, mload(add(s, _S_ORDERS)))
            w := sload(add(keccak256(0x00, 0x40), and(id, 15)))
        }
        if (err == 4) revert IEnergyMarket.MarketZonePriceMissing(id, uint16(s.zone));
        uint256 p = uint24(s.zoneWord);
        if (err == 5) revert IEnergyMarket.MarketFillNotAtZonePrice(id, price, p);
        if (err == 6) revert IEnergyMarket.MarketFillExceedsOrder(id, qty, uint32(w >> 96));
        if (err == 7) revert IEnergyMarket.MarketFillBreaksPriceRule(id, qty, uint24(w >> 128), p);
        // err == 8: the zone's index is past the chunk's zones (never: commitZones numbers the
        // zones 0..zoneCount-1), which Solidity reports as an out-of-bounds index.
        s.deltas[s.copper ? 0 : uint16(s.zoneWord >> 24)] = 0;
        revert();
    }

    /// @dev Adds a chunk's per-zone (sold - bought) to the zones' committed nets.
    function _flushZones(
        mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord,
        mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt,
        uint64 interval,
        int256[] memory deltas
    ) private {
        for (uint256 i; i < deltas.length; ++i) {
            int256 d = deltas[i];
            if (d == 0) continue;
            uint16 z = zoneAt[interval % 16][i];
            uint256 w = zoneWord[interval % 16][z];
            int256 running = int256(int64(uint64(w >> 104))) + d;
            if (running > type(int64).max || running < type(int64).min) revert IEnergyMarket.MarketTotalsOverflow(interval);
            w = (w & ~(uint256(type(uint64).max) << 104)) | (uint256(uint64(int64(running))) << 104);
            zoneWord[interval % 16][z] = w;
        }
    }

    /// @dev Every zone's committed (sold - bought) equals its (outflow - inflow).
    function checkZonesBalanced(mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord, mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt, uint64 interval, uint256 zoneCount)
        external
        view
    {
        for (uint256 i; i < zoneCount; ++i) {
            uint16 z = zoneAt[interval % 16][i];
            uint256 w = zoneWord[interval % 16][z];
            int256 expected = int64(uint64(w >> 40));
            int256 net = int64(uint64(w >> 104));
            if (net != expected) revert IEnergyMarket.MarketZoneUnbalanced(interval, z, net, expected);
        }
    }

    /// @notice Replaces the link table `to` with `links` after checking them: at most 64, each
    /// joining two different zones (neither the copper zone), no pair twice.
    function setLinks(IEnergyMarket.Link[] storage to, IEnergyMarket.Link[] memory links) external {
        _checkLinks(links);
        while (to.length > 0) to.pop();
        for (uint256 i; i < links.length; ++i) {
            to.push(links[i]);
        }
    }

    function _checkLinks(IEnergyMarket.Link[] memory l) private pure {
        if (l.length > 64) revert IEnergyMarket.MarketTooManyLinks(l.length);
        for (uint256 i; i < l.length; ++i) {
            if (l[i].fromZone == l[i].toZone || l[i].fromZone == type(uint16).max || l[i].toZone == type(uint16).max) {
                revert IEnergyMarket.MarketInvalidLink(i);
            }
            for (uint256 k; k < i; ++k) {
                if (l[k].fromZone == l[i].fromZone && l[k].toZone == l[i].toZone) revert IEnergyMarket.MarketInvalidLink(i);
            }
        }
    }

}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice One order packed into one storage word: bits 0-63 interval, 64-95 nonce, 96-127 qty
/// (Wh), 128-151 limit price, 152-215 lock, 216 live, 217 bid, 218-233 zone. `live` stays set
/// after settlement: an order is dead once its interval is Settled, which posting checks before
/// it reuses the slot.
type OrderWord is uint256;

/// @title OrderWordLib — accessors of the packed {OrderWord}
library OrderWordLib {
    uint256 internal constant LIVE = 1 << 216;
    uint256 internal constant BID = 1 << 217;
    /// @dev The bits an order id determines (interval, nonce, side) plus `live`.
    uint256 internal constant KEY = ((1 << 96) - 1) | LIVE | BID;

    function pack(uint64 interval, uint32 nonce, bool isBid, uint32 qty, uint24 limit, uint256 lock, uint16 zone)
        internal
        pure
        returns (OrderWord)
    {
        return OrderWord.wrap(
            key(interval, isBid, nonce) | (uint256(qty) << 96) | (uint256(limit) << 128) | (lock << 152)
                | (uint256(zone) << 218)
        );
    }

    /// @dev The key bits of a live order with these id fields.
    function key(uint64 interval, bool isBid, uint32 nonce) internal pure returns (uint256) {
        return uint256(interval) | (uint256(nonce) << 64) | LIVE | (isBid ? BID : 0);
    }

    function matches(OrderWord w, uint64 interval, bool isBid, uint32 nonce) internal pure returns (bool) {
        return OrderWord.unwrap(w) & KEY == key(interval, isBid, nonce);
    }

    function interval(OrderWord w) internal pure returns (uint64) {
        return uint64(OrderWord.unwrap(w));
    }

    function nonce(OrderWord w) internal pure returns (uint32) {
        return uint32(OrderWord.unwrap(w) >> 64);
    }

    function qty(OrderWord w) internal pure returns (uint256) {
        return uint32(OrderWord.unwrap(w) >> 96);
    }

    function limit(OrderWord w) internal pure returns (uint256) {
        return uint24(OrderWord.unwrap(w) >> 128);
    }

    function lock(OrderWord w) internal pure returns (uint256) {
        return uint64(OrderWord.unwrap(w) >> 152);
    }

    function live(OrderWord w) internal pure returns (bool) {
        return OrderWord.unwrap(w) & LIVE != 0;
    }

    function isBid(OrderWord w) internal pure returns (bool) {
        return OrderWord.unwrap(w) & BID != 0;
    }

    function zone(OrderWord w) internal pure returns (uint16) {
        return uint16(OrderWord.unwrap(w) >> 218);
    }

    function dead(OrderWord w) internal pure returns (OrderWord) {
        return OrderWord.wrap(OrderWord.unwrap(w) & ~LIVE);
    }
}

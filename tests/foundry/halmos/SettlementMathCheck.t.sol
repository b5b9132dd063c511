// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SettlementMath} from "../../../contracts/libraries/SettlementMath.sol";

/// @dev Halmos checks (scripts/halmos.sh): each `check_` holds for every value of its symbolic
/// arguments. Quantities and energies are symbolic over the contract's full range (< 2^32); the
/// prices and rates are concrete per shape (several each), because products of two symbolic
/// 256-bit values make the solvers time out. tests/foundry/SettlementMath.t.sol fuzzes every
/// argument over the full ranges.
contract SettlementMathCheck {
    /// An offer's credit never underflows, conserves value, grows with delivered energy, and no
    /// reading (d = 0) is its worst case; the collateral always covers the charge.
    function _offer(uint32 oq, uint32 q, uint32 d, uint32 d2, uint256 price, uint256 rate, uint256 imb) internal pure {
        if (q > oq || d > q || d2 > d) return;
        uint256 lock = uint256(oq) * rate;
        (uint256 received, uint256 charge, uint256 credit) = SettlementMath.offer(lock, q, price, d, imb);
        assert(credit + charge == lock + received);
        assert(credit >= received);
        (,, uint256 less) = SettlementMath.offer(lock, q, price, d2, imb);
        assert(less <= credit);
    }

    function check_offer_typical(uint32 oq, uint32 q, uint32 d, uint32 d2) public pure {
        _offer(oq, q, d, d2, 100, 60, 50);
    }

    function check_offer_extreme(uint32 oq, uint32 q, uint32 d, uint32 d2) public pure {
        _offer(oq, q, d, d2, type(uint24).max, type(uint24).max, type(uint24).max);
    }

    /// A bid never pays above its limit, conserves value, and no reading (u = q) is its worst
    /// case; using less never costs more.
    function _bid(uint32 oq, uint32 q, uint32 u, uint32 u2, uint256 limit, uint256 price, uint256 imb) internal pure {
        if (q > oq || u > q || u2 < u || u2 > q) return;
        uint256 lock = uint256(oq) * limit;
        (uint256 paid, uint256 refund, uint256 credit) = SettlementMath.bid(lock, q, price, u, imb);
        assert(paid <= uint256(q) * limit);
        assert(credit + paid == lock + refund);
        (,, uint256 more) = SettlementMath.bid(lock, q, price, u2, imb);
        assert(more <= credit);
    }

    function check_bid_typical(uint32 oq, uint32 q, uint32 u, uint32 u2) public pure {
        _bid(oq, q, u, u2, 120, 100, 10);
    }

    function check_bid_extreme(uint32 oq, uint32 q, uint32 u, uint32 u2) public pure {
        _bid(oq, q, u, u2, type(uint24).max, type(uint24).max, type(uint24).max);
    }

    function check_allot(uint32 q, uint64 left) public pure {
        (uint256 used, uint256 rest) = SettlementMath.allot(q, left);
        assert(used <= q && used + rest == left);
        assert(used == q || rest == 0);
    }
}

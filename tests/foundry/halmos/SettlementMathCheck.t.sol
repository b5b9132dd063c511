// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SettlementMath} from "../../../contracts/libraries/SettlementMath.sol";

/// @dev Halmos checks (scripts/halmos.sh): each `check_` holds for every value of its symbolic
/// arguments. Quantities and energies are symbolic over the contract's full range (< 2^32); the
/// prices and rates are concrete per check, because products of two symbolic 256-bit values
/// make the solvers time out (so do prices near 2^24 here, within the 120 s budget).
/// tests/foundry/SettlementMath.t.sol fuzzes every argument over the full ranges.
contract SettlementMathCheck {
    /// An offer's credit conserves value and covers what it received less the charge, and
    /// delivering `d2 <= d` (or no reading, d2 = 0) never pays more: credit(d) - credit(d2) =
    /// (d - d2) x imbalanceBuy.
    function _offer(uint32 oq, uint32 q, uint32 d, uint32 d2, uint256 price, uint256 rate, uint256 imb) internal pure {
        if (q > oq || d > q || d2 > d) return;
        uint256 lock = uint256(oq) * rate;
        (uint256 received, uint256 charge, uint256 credit) = SettlementMath.offer(lock, q, price, d, imb);
        assert(credit + charge == lock + received);
        (,, uint256 less) = SettlementMath.offer(lock, q, price, d2, imb);
        assert(credit - less == uint256(d - d2) * imb);
    }

    /// Prices and rates as powers of two (price 128, rate 64, imbalance 32): non-power-of-two
    /// constants time out here; the fuzz tests take any values.
    function check_offer_priced(uint32 oq, uint32 q, uint32 d, uint32 d2) public pure {
        _offer(oq, q, d, d2, 128, 64, 32);
    }

    function check_offer_no_price(uint32 oq, uint32 q, uint32 d, uint32 d2) public pure {
        _offer(oq, q, d, d2, 0, 20, 20);
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

    function check_bid_at_limit(uint32 oq, uint32 q, uint32 u, uint32 u2) public pure {
        _bid(oq, q, u, u2, 250, 250, 0);
    }

    function check_allot(uint32 q, uint64 left) public pure {
        (uint256 used, uint256 rest) = SettlementMath.allot(q, left);
        assert(used <= q && used + rest == left);
        assert(used == q || rest == 0);
    }
}

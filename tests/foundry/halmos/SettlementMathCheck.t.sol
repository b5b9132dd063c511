// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SettlementMath} from "../../../contracts/libraries/SettlementMath.sol";

/// @dev Halmos checks (scripts/halmos.sh): each `check_` holds for every input in its bounds,
/// the contract's ranges (qty < 2^32, prices and rates < 2^24).
contract SettlementMathCheck {
    /// An offer's credit never underflows, conserves value, and grows with delivered energy;
    /// no reading (d = 0) is its worst case.
    function check_offer(uint32 oq, uint32 q, uint24 p, uint32 d, uint24 rate, uint24 imb) public pure {
        if (q > oq || d > q || imb > rate) return;
        uint256 lock = uint256(oq) * rate;
        (uint256 received, uint256 charge, uint256 credit) = SettlementMath.offer(lock, q, p, d, imb);
        assert(received == uint256(q) * p);
        assert(credit + charge == lock + received);
        assert(credit >= received); // the collateral always covers the imbalance charge
        (,, uint256 none) = SettlementMath.offer(lock, q, p, 0, imb);
        assert(none <= credit);
    }

    /// A bid never pays above its limit, conserves value, and no reading (u = q) is its worst case.
    function check_bid(uint32 oq, uint32 q, uint24 limit, uint24 p, uint32 u, uint24 imb) public pure {
        if (q > oq || u > q || p > limit) return;
        uint256 lock = uint256(oq) * limit;
        (uint256 paid, uint256 refund, uint256 credit) = SettlementMath.bid(lock, q, p, u, imb);
        assert(paid <= uint256(q) * limit);
        assert(credit + paid == lock + refund);
        (,, uint256 none) = SettlementMath.bid(lock, q, p, q, imb);
        assert(none <= credit);
    }

    function check_allot(uint32 q, uint64 left) public pure {
        (uint256 used, uint256 rest) = SettlementMath.allot(q, left);
        assert(used <= q && used + rest == left);
        assert(used == q || rest == 0);
    }
}

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
    function check_offer(uint32 oq, uint32 q, uint32 d, uint32 d2) public pure {
        if (q > oq || d > q || d2 > d) return;
        uint24[3] memory price = [uint24(0), 100, type(uint24).max];
        uint24[3] memory rate = [uint24(0), 60, type(uint24).max];
        uint24[3] memory imb = [uint24(0), 50, type(uint24).max];
        for (uint256 s; s < 3; ++s) {
            uint256 lock = uint256(oq) * rate[s];
            (uint256 received, uint256 charge, uint256 credit) = SettlementMath.offer(lock, q, price[s], d, imb[s]);
            assert(received == uint256(q) * price[s]);
            assert(credit + charge == lock + received);
            assert(credit >= received);
            (,, uint256 less) = SettlementMath.offer(lock, q, price[s], d2, imb[s]);
            assert(less <= credit);
        }
    }

    /// A bid never pays above its limit, conserves value, and no reading (u = q) is its worst
    /// case; using less never costs more.
    function check_bid(uint32 oq, uint32 q, uint32 u, uint32 u2) public pure {
        if (q > oq || u > q || u2 < u || u2 > q) return;
        uint24[3] memory limit = [uint24(1), 120, type(uint24).max];
        uint24[3] memory price = [uint24(0), 100, type(uint24).max];
        uint24[3] memory imb = [uint24(0), 10, type(uint24).max];
        for (uint256 s; s < 3; ++s) {
            uint256 lock = uint256(oq) * limit[s];
            (uint256 paid, uint256 refund, uint256 credit) = SettlementMath.bid(lock, q, price[s], u, imb[s]);
            assert(paid <= uint256(q) * limit[s]);
            assert(credit + paid == lock + refund);
            (,, uint256 more) = SettlementMath.bid(lock, q, price[s], u2, imb[s]);
            assert(more <= credit);
        }
    }

    function check_allot(uint32 q, uint64 left) public pure {
        (uint256 used, uint256 rest) = SettlementMath.allot(q, left);
        assert(used <= q && used + rest == left);
        assert(used == q || rest == 0);
    }
}

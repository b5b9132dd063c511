// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SettlementMath} from "../../contracts/libraries/SettlementMath.sol";

/// @dev Fuzz tests of the settlement arithmetic over the contract's full ranges (qty below 2^32,
/// prices below 2^24); tests/foundry/halmos proves the same properties symbolically.
contract SettlementMathTest {
    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }

    /// An offer: never negative, paid q * p, charged only for what it did not deliver, and
    /// delivering more never pays less.
    function testFuzz_offer(uint256 oq, uint256 q, uint256 p, uint256 d, uint256 rate, uint256 imb) public pure {
        oq = _bound(oq, 1, type(uint32).max);
        q = _bound(q, 0, oq);
        p = _bound(p, 0, type(uint24).max);
        d = _bound(d, 0, q);
        rate = _bound(rate, 0, type(uint24).max);
        imb = _bound(imb, 0, rate);
        uint256 lock = oq * rate;
        (uint256 received, uint256 charge, uint256 credit) = SettlementMath.offer(lock, q, p, d, imb);
        require(received == q * p && charge == (q - d) * imb, "offer terms");
        require(credit + charge == lock + received, "offer conservation");
        if (d < q) {
            (,, uint256 more) = SettlementMath.offer(lock, q, p, d + 1, imb);
            require(more >= credit, "delivering more paid less");
        }
        (,, uint256 none) = SettlementMath.offer(lock, q, p, 0, imb);
        require(none <= credit, "no reading paid better than a reading");
    }

    /// A bid: never negative, pays q * p <= q * limit, refunded only for what it did not use,
    /// and using less never costs more.
    function testFuzz_bid(uint256 oq, uint256 q, uint256 limit, uint256 p, uint256 u, uint256 imb) public pure {
        oq = _bound(oq, 1, type(uint32).max);
        q = _bound(q, 0, oq);
        limit = _bound(limit, 1, type(uint24).max);
        p = _bound(p, 0, limit);
        u = _bound(u, 0, q);
        imb = _bound(imb, 0, type(uint24).max);
        uint256 lock = oq * limit;
        (uint256 paid, uint256 refund, uint256 credit) = SettlementMath.bid(lock, q, p, u, imb);
        require(paid == q * p && paid <= q * limit && refund == (q - u) * imb, "bid terms");
        require(credit + paid == lock + refund, "bid conservation");
        (,, uint256 none) = SettlementMath.bid(lock, q, p, q, imb);
        require(none <= credit, "no reading paid better than a reading");
    }

    function testFuzz_allot(uint256 q, uint256 left) public pure {
        q = _bound(q, 0, type(uint32).max);
        left = _bound(left, 0, type(uint64).max);
        (uint256 used, uint256 rest) = SettlementMath.allot(q, left);
        require(used <= q && used <= left && used + rest == left, "allot");
        require(used == q || rest == 0, "allot left energy unused");
    }
}

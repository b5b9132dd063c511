// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementMath} from "../../../contracts/libraries/SettlementMath.sol";

/// @dev Symbolic checks of the settlement arithmetic for Halmos (`scripts/halmos.sh`): every
/// `check_` function must hold for ALL values of its symbolic arguments. Forge ignores them (they
/// are not `test`s); tests/foundry/SettlementMath.t.sol fuzzes the same properties over the full
/// input ranges.
///
/// What is symbolic: the amount being split (proRata), the amount being scaled (scale), and the
/// metered deliveries and evidence flags of a whole settlement. Weights, prices and the rate are
/// concrete per check (several shapes each), and with forfeits the delivered total is fixed (its
/// split between sellers is not): with symbolic divisors, Halmos's solvers (yices, z3) time out
/// even at 8-bit bounds, because `w * total / sum(w)` over symbolic `w` is nonlinear 256-bit
/// arithmetic. The fuzz tests cover those cases over the full ranges.
contract SettlementMathCheck {
    // ------------------------------------------------------------------ proRata

    function _proRataHolds(uint256[3] memory weights, uint256 total) internal pure {
        uint256[] memory w = new uint256[](3);
        (w[0], w[1], w[2]) = (weights[0], weights[1], weights[2]);
        uint256[] memory s = SettlementMath.proRata(w, total);
        uint256 sum = weights[0] + weights[1] + weights[2];
        for (uint256 i; i < 3; ++i) {
            assert(s[i] <= weights[i]); // never more than a weight
            // proportional: the exact share rounded down, or up by the one remainder unit
            if (sum > 0 && total <= sum) {
                uint256 floor = (weights[i] * total) / sum;
                assert(s[i] == floor || s[i] == floor + 1);
            }
        }
        if (total <= sum) assert(s[0] + s[1] + s[2] == total); // sums exactly
        else assert(s[0] == weights[0] && s[1] == weights[1] && s[2] == weights[2]);
    }

    function check_proRata_even(uint256 total) public pure {
        require(total < 64);
        _proRataHolds([uint256(3), 5, 11], total);
    }

    function check_proRata_skewed(uint256 total) public pure {
        require(total < 3_000);
        _proRataHolds([uint256(1_000), 1, 17], total);
    }

    function check_proRata_zeroWeight(uint256 total) public pure {
        require(total < 64);
        _proRataHolds([uint256(7), 0, 13], total);
    }

    function check_proRata_equal(uint256 total) public pure {
        require(total < 16);
        _proRataHolds([uint256(1), 1, 1], total);
    }

    // ------------------------------------------------------------------ scale

    function _scaleHolds(uint256 a, uint256 num, uint256 den) internal pure {
        uint256 r = SettlementMath.scale(a, num, den);
        assert(r <= a);
        if (den > 0 && num < den) assert(r * den <= a * num && a * num < (r + 1) * den);
    }

    /// Scaling down (num < den) never pays more than the exact share, rounded down.
    function check_scale_down(uint256 a) public pure {
        require(a < 1 << 20);
        _scaleHolds(a, 7, 9);
    }

    /// Enough to pay everyone (num >= den), or nothing owed at all (den == 0): paid in full.
    function check_scale_full(uint256 a, uint256 num) public pure {
        require(a < 1 << 20 && num < 1 << 20 && num >= 9);
        assert(SettlementMath.scale(a, num, 9) == a);
        assert(SettlementMath.scale(a, num, 0) == a);
    }

    // ------------------------------------------------------------------ settle

    /// Two offers (10 and 20 Wh) and two bids (12 and 18 Wh): bought == sold == 30, prices 90 and
    /// 100 (offers), 110 and 95 (bids). Deliveries `d0`, `d1` and evidence `m0`, `m1` as given.
    function _settle(uint256 d0, uint256 d1, bool m0, bool m1, uint256 rate)
        internal
        pure
        returns (SettlementMath.Outcome memory out)
    {
        SettlementMath.Input memory input;
        input.rate = rate;
        input.nOffers = 2;
        input.qty = new uint256[](4);
        input.price = new uint256[](4);
        input.delivered = new uint256[](4);
        input.metered = new bool[](4);
        (input.qty[0], input.qty[1], input.qty[2], input.qty[3]) = (10, 20, 12, 18);
        (input.price[0], input.price[1], input.price[2], input.price[3]) = (90, 100, 110, 95);
        (input.delivered[0], input.delivered[1]) = (d0, d1);
        (input.metered[0], input.metered[1]) = (m0, m1);
        out = SettlementMath.settle(input);
        uint256 received = out.amount[0] + out.amount[1];
        uint256 forfeit = out.penalty[0] + out.penalty[1];
        uint256 paid = out.amount[2] + out.amount[3];
        uint256 comp = out.penalty[2] + out.penalty[3];
        assert(paid + forfeit == received + comp + out.surplus); // money is conserved
        assert(out.delivered[2] + out.delivered[3] == d0 + d1); // buyers receive exactly D
        assert(out.deliveredWh == d0 + d1 && out.soldWh == 30);
        assert(comp == forfeit); // every forfeited unit reaches a buyer (bought == sold)
        assert(out.penalty[0] <= 10 * rate && out.penalty[1] <= 20 * rate); // within collateral
        assert(out.delivered[2] <= 12 && out.delivered[3] <= 18); // nobody gets more than its fill
        assert(out.amount[2] <= 12 * 110 && out.amount[3] <= 18 * 95); // payments within escrow
        assert(out.amount[0] <= d0 * 90 && out.amount[1] <= d1 * 100); // sellers at most their price
    }

    /// Any deliveries, no signed readings: nothing is forfeited, everything else conserved.
    function check_settle_unmetered(uint256 d0, uint256 d1) public pure {
        require(d0 <= 10 && d1 <= 20);
        SettlementMath.Outcome memory out = _settle(d0, d1, false, false, 25);
        assert(out.penalty[0] == 0 && out.penalty[1] == 0);
    }

    /// Signed readings (or not, per `m0`, `m1`) with D = 18 of the 30 Wh delivered, split
    /// between the sellers in any way (`d0` by the first): the shortfall's collateral is
    /// forfeited only by sellers that signed, and reaches the buyers in full.
    function check_settle_metered(uint256 d0, bool m0, bool m1) public pure {
        require(d0 <= 10);
        uint256 d1 = 18 - d0;
        SettlementMath.Outcome memory out = _settle(d0, d1, m0, m1, 25);
        assert(out.penalty[0] == (m0 ? (10 - d0) * 25 : 0));
        assert(out.penalty[1] == (m1 ? (20 - d1) * 25 : 0));
    }
}

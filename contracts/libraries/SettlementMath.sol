// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SettlementMath — the pure arithmetic of settling an interval
/// @notice The settlement rule, in full:
///  1. Each seller's delivered energy is its metered export, applied to its offers' fills in fill
///     order and capped at each fill: `delivered_s = min(fill_s, export left)`. A seller with no
///     signed reading delivered nothing but forfeits no collateral (no evidence, no penalty).
///  2. Buyers share the delivered energy D in proportion to their fills (largest-remainder
///     rounding, ties to the earlier fill), so sum(delivered_b) == D exactly.
///  3. A buyer pays `delivered_b * price_b`; a seller receives `delivered_s * price_s` (scaled
///     down pro rata only if buyers' payments would not cover them, which the clearing checks
///     make impossible without a shortfall). What is left is the surplus for the fee recipient.
///  4. A seller with a signed reading that delivered less than its fill forfeits
///     `(fill_s - delivered_s) * collateralRate`; the forfeited pool goes to buyers in proportion
///     to the energy they did not receive (same rounding).
///  5. Every lock (bid escrow `qty * limit`, offer collateral `qty * rate`) is released in full;
///     the owner's free balance changes by `lock - paid + compensation` (bid) or
///     `lock - forfeit + received` (offer).
/// Worked example: rate 50, price 100. Seller A offers 10 Wh, delivers 6 (signed); buyer B bid
/// 10 Wh at limit 120 (escrow 1,200). D = 6. B pays 600, gets 4 * 50 = 200 compensation and its
/// escrow back: B's free balance +1,200 - 600 + 200 = +800 net of the escrow. A's collateral 500
/// is released, 200 forfeited, 600 received: A's free balance +500 - 200 + 600.
library SettlementMath {
    /// @notice Splits `total` over `weights` in proportion, rounding down and handing the
    /// remainder out one unit at a time in index order to entries not yet at their weight.
    /// @dev Requires `total <= sum(weights)`; the result sums to `total` exactly and no entry
    /// exceeds its weight.
    function proRata(uint256[] memory weights, uint256 total) internal pure returns (uint256[] memory shares) {
        uint256 n = weights.length;
        shares = new uint256[](n);
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            sum += weights[i];
        }
        if (total == 0 || sum == 0) return shares;
        if (total >= sum) {
            for (uint256 i; i < n; ++i) {
                shares[i] = weights[i];
            }
            return shares;
        }
        uint256 given;
        for (uint256 i; i < n; ++i) {
            uint256 s = (weights[i] * total) / sum;
            shares[i] = s;
            given += s;
        }
        // Each floor loses less than one unit, so fewer than n units are left over, and an entry
        // with shares[i] == weights[i] already holds its full weight (total < sum).
        uint256 left = total - given;
        for (uint256 i; left > 0 && i < n; ++i) {
            if (shares[i] < weights[i]) {
                shares[i] += 1;
                left -= 1;
            }
        }
    }

    /// @notice `a * num / den` rounded down, for scaling seller receipts; `den == 0` gives `a`.
    function scale(uint256 a, uint256 num, uint256 den) internal pure returns (uint256) {
        if (den == 0 || num >= den) return a;
        return (a * num) / den;
    }
}

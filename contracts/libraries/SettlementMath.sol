// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SettlementMath — the pure arithmetic of settling an interval
/// @notice The settlement rule, in full (the contract does step 1, this library steps 2 to 5):
///  1. Each seller's delivered energy is its metered export, applied to its offers' fills in fill
///     order and capped at each fill: `delivered_s = min(fill_s, export left)`. A seller with no
///     signed reading delivered nothing but forfeits no collateral (no evidence, no penalty).
///  2. Buyers share the delivered energy D in proportion to their fills (rounded down, the
///     remaining units handed out one each in fill order), so sum(delivered_b) == D exactly and
///     no buyer receives more than its fill.
///  3. A buyer pays `delivered_b * price_b`; a seller receives `delivered_s * price_s`, scaled
///     down pro rata (rounded down) only if buyers' payments would not cover all sellers. What
///     is left is the surplus for the fee recipient.
///  4. A seller with a signed reading that delivered less than its fill forfeits
///     `(fill_s - delivered_s) * collateralRate`; the forfeited pool goes to buyers in proportion
///     to the energy they did not receive (same rounding). Anything that cannot be placed (never
///     happens when bought == sold) goes to the surplus.
///  5. Every lock (bid escrow `qty * limit`, offer collateral `qty * rate`) is released in full;
///     the owner's free balance grows by `lock - paid + compensation` (bid) or
///     `lock - forfeit + received` (offer); neither can be negative.
/// So money is conserved: sum(paid) + sum(forfeit) == sum(received) + sum(compensation) + surplus.
///
/// Worked example: collateral rate 50, clearing price 100. Seller A offered 10 Wh (collateral
/// 500) and delivers 6 Wh (signed reading). Buyer B bid 10 Wh at limit 120 (escrow 1,200).
/// D = 6, so B receives 6 Wh and pays 600; A receives 600. A forfeits 4 * 50 = 200 of its
/// collateral, which goes to B, the only buyer short of energy. Free balances: A +500 - 200 + 600
/// = +900, B +1,200 - 600 + 200 = +800; both locks are gone and the surplus is 0:
/// 600 + 200 == 600 + 200 + 0.
library SettlementMath {
    /// @notice What settlement needs to know about an interval's fills. Fills `[0, nOffers)` are
    /// offers, fills `[nOffers, n)` are bids, each in fill order.
    /// @dev For offers, `delivered[i] <= qty[i]` is the metered delivery of step 1 and
    /// `metered[i]` says whether the seller signed a reading; bid entries of both are ignored.
    struct Input {
        uint256 rate;
        uint256 nOffers;
        uint256[] qty;
        uint256[] price;
        uint256[] delivered;
        bool[] metered;
    }

    /// @notice Who delivers, pays and receives what, per fill (same indices as the input).
    /// @dev `delivered` is the input's array, completed in place with the buyers' shares.
    struct Outcome {
        uint256[] delivered; // offer: Wh delivered; bid: Wh received
        uint256[] amount; // offer: token base units received; bid: paid
        uint256[] penalty; // offer: collateral forfeited; bid: compensation received
        uint256 deliveredWh; // D
        uint256 soldWh; // sum of offer fills
        uint256 surplus; // to the fee recipient
    }

    /// @notice Applies steps 2 to 5 of the settlement rule.
    /// @dev Bounds the contract guarantees (and the checks assume): qty, price < 2^32, rate < 2^24,
    /// fewer than 2^32 fills, so every product and sum below fits easily in 256 bits.
    function settle(Input memory input) internal pure returns (Outcome memory out) {
        uint256 n = input.qty.length;
        uint256 k = input.nOffers;
        out.amount = new uint256[](n);
        out.penalty = new uint256[](n);
        (uint256 sellPay, uint256 pool) = _sellers(input, out);
        // Step 2: buyers' shares of D, written over the bid entries of `delivered`.
        _proRata(input.qty, k, n, out.deliveredWh, input.delivered);
        out.delivered = input.delivered;
        uint256 buyPay = _buyers(input, out);
        // Step 3: sellers' receipts, scaled down only if buyers' payments fall short.
        uint256 sellerTotal = _receipts(input, out, buyPay, sellPay);
        // Step 4: forfeited collateral to buyers short of energy.
        uint256 compTotal = 0;
        if (pool > 0) compTotal = _compensate(input, out, pool);
        // Cannot underflow: scale() never hands sellers more than buyPay in total, and
        // _proRata() never hands out more than `pool`.
        out.surplus = buyPay - sellerTotal + (pool - compTotal);
    }

    /// @notice Splits `total` over `weights` in proportion, rounding down and handing the
    /// remainder out one unit at a time in index order to entries not yet at their weight.
    /// @dev If `total <= sum(weights)` the result sums to `total` exactly; no entry ever exceeds
    /// its weight (if `total > sum(weights)` every entry gets its full weight).
    function proRata(uint256[] memory weights, uint256 total) internal pure returns (uint256[] memory shares) {
        shares = new uint256[](weights.length);
        _proRata(weights, 0, weights.length, total, shares);
    }

    /// @notice `a * num / den` rounded down, for scaling seller receipts; `num >= den` or
    /// `den == 0` gives `a` unchanged.
    function scale(uint256 a, uint256 num, uint256 den) internal pure returns (uint256) {
        if (den == 0 || num >= den) return a;
        return (a * num) / den;
    }

    /// @dev Sellers' side of steps 1 and 4: D, the sum of offer fills, what sellers are owed at
    /// their prices, and the forfeited collateral (written to `out.penalty`).
    function _sellers(Input memory input, Outcome memory out) private pure returns (uint256 sellPay, uint256 pool) {
        uint256 rate = input.rate;
        uint256[] memory qty = input.qty;
        uint256[] memory price = input.price;
        uint256[] memory delivered = input.delivered;
        bool[] memory metered = input.metered;
        uint256[] memory penalty = out.penalty;
        uint256 d = 0;
        uint256 sold = 0;
        for (uint256 i; i < input.nOffers; ++i) {
            uint256 di = delivered[i];
            uint256 qi = qty[i];
            uint256 shortWh = qi - di; // reverts if delivered > qty, which the contract rules out
            // Cannot overflow: see the bounds on settle().
            unchecked {
                d += di;
                sold += qi;
                sellPay += di * price[i];
                if (metered[i] && shortWh > 0) {
                    uint256 f = shortWh * rate;
                    penalty[i] = f;
                    pool += f;
                }
            }
        }
        out.deliveredWh = d;
        out.soldWh = sold;
    }

    /// @dev Buyers' payments for their shares (step 3).
    function _buyers(Input memory input, Outcome memory out) private pure returns (uint256 buyPay) {
        uint256 n = input.qty.length;
        uint256[] memory price = input.price;
        uint256[] memory share = out.delivered;
        uint256[] memory amount = out.amount;
        for (uint256 i = input.nOffers; i < n; ++i) {
            // Cannot overflow: see the bounds on settle().
            unchecked {
                uint256 p = share[i] * price[i];
                amount[i] = p;
                buyPay += p;
            }
        }
    }

    /// @dev Sellers' receipts (step 3), scaled by buyPay / sellPay when that is below one.
    function _receipts(Input memory input, Outcome memory out, uint256 buyPay, uint256 sellPay)
        private
        pure
        returns (uint256 sellerTotal)
    {
        uint256[] memory price = input.price;
        uint256[] memory delivered = input.delivered;
        uint256[] memory amount = out.amount;
        for (uint256 i; i < input.nOffers; ++i) {
            uint256 r = scale(delivered[i] * price[i], buyPay, sellPay);
            amount[i] = r;
            sellerTotal += r;
        }
    }

    /// @dev Step 4: shares `pool` over the bids in proportion to the collateral value of the
    /// energy each did not receive; returns what was handed out.
    function _compensate(Input memory input, Outcome memory out, uint256 pool) private pure returns (uint256 total) {
        uint256 n = input.qty.length;
        uint256 k = input.nOffers;
        uint256[] memory missing = new uint256[](n);
        for (uint256 i = k; i < n; ++i) {
            missing[i] = (input.qty[i] - out.delivered[i]) * input.rate;
        }
        _proRata(missing, k, n, pool, out.penalty);
        for (uint256 i = k; i < n; ++i) {
            total += out.penalty[i];
        }
    }

    /// @dev {proRata} over the entries `[from, to)` of `weights`, written to the same entries of
    /// `shares` (which may not be `weights`).
    function _proRata(uint256[] memory weights, uint256 from, uint256 to, uint256 total, uint256[] memory shares)
        private
        pure
    {
        uint256 sum = 0;
        for (uint256 i = from; i < to; ++i) {
            sum += weights[i];
        }
        if (total == 0 || sum == 0) {
            for (uint256 i = from; i < to; ++i) {
                shares[i] = 0;
            }
            return;
        }
        if (total >= sum) {
            for (uint256 i = from; i < to; ++i) {
                shares[i] = weights[i];
            }
            return;
        }
        uint256 given = 0;
        for (uint256 i = from; i < to; ++i) {
            uint256 s = (weights[i] * total) / sum;
            shares[i] = s;
            given += s;
        }
        // Each floor loses less than one unit, so fewer than (to - from) units are left over; an
        // entry with shares[i] == weights[i] has weight 0 (total < sum), so the others have room.
        uint256 left = total - given;
        for (uint256 i = from; left > 0 && i < to; ++i) {
            if (shares[i] < weights[i]) {
                shares[i] += 1;
                left -= 1;
            }
        }
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title SettlementMath — the pure arithmetic of settling one fill (imbalance settlement)
/// @notice The settlement rule. Every fill trades financially at its zone's clearing price `p`;
/// each party's deviation from its own fills, measured by its own signed reading and capped at
/// the fills, is settled at the interval's imbalance prices, fixed when the interval opened.
///  - Offer filled `q` Wh, whose owner's signed export allots `d <= q` Wh to it: the owner
///    receives `q * p` and pays `(q - d) * imbalanceBuy`. Without a reading `d = 0`.
///    Its free balance grows by `lock + q * p - (q - d) * imbalanceBuy` (never negative:
///    `lock = orderQty * collateralRate >= q * imbalanceBuy`).
///  - Bid filled `q` Wh, whose owner's signed import allots `c <= q` Wh to it: the owner pays
///    `q * p` and receives `(q - c) * imbalanceSell`. Without a reading `c = q`.
///    Its free balance grows by `lock - q * p + (q - c) * imbalanceSell` (never negative:
///    `lock = orderQty * limit >= q * p`).
///  - The fee recipient (balancing party) receives the interval's rent
///    `sum(flow * (price[to] - price[from]))` = `sum(bid q * p) - sum(offer q * p)`, plus the
///    sellers' imbalance charges, and pays the buyers' imbalance refunds.
/// A party's money depends only on public prices, its own fills and its own reading; an offer
/// is never paid below its limit for what it delivers, a bid never charged above its limit;
/// withholding a reading never pays better than signing it (an offer's credit grows with the
/// energy it delivered, a bid's shrinks with the energy it used, and no reading takes the worst
/// case of each: `d = 0`, `c = q`).
///
/// Worked example: imbalance buy 50, imbalance sell 10, zone price 100. Seller A offered 10 Wh
/// (collateral rate 60: lock 600), filled 10, signs an export of 6 Wh: it receives 1,000 and
/// pays 4 * 50 = 200, free balance +600 + 1,000 - 200 = +1,400. Buyer B bid 10 Wh at limit 120
/// (lock 1,200), filled 10, signs an import of 7 Wh: it pays 1,000 and is refunded 3 * 10 = 30,
/// free balance +1,200 - 1,000 + 30 = +230. The fee recipient: rent 1,000 - 1,000 = 0, plus
/// 200 - 30 = +170. Conserved: 600 + 1,200 locked = 1,400 + 230 + 170.
library SettlementMath {
    /// @notice Energy allotted to a fill of `qty` from a reading with `left` Wh not yet allotted
    /// to the owner's earlier fills on the same side; returns the allotment and what is left.
    function allot(uint256 qty, uint256 left) internal pure returns (uint256 used, uint256 rest) {
        used = qty < left ? qty : left;
        rest = left - used;
    }

    /// @notice An offer's settlement: what it receives, its imbalance charge, and the credit to
    /// its owner's free balance (its lock is released at the same time).
    /// @dev Requires `delivered <= qty` and `lock >= qty * imbalanceBuy` (the contract guarantees
    /// both: the lock is `orderQty * collateralRate` and `imbalanceBuy <= collateralRate`).
    function offer(uint256 lock, uint256 qty, uint256 price, uint256 delivered, uint256 imbalanceBuy)
        internal
        pure
        returns (uint256 received, uint256 charge, uint256 credit)
    {
        received = qty * price;
        charge = (qty - delivered) * imbalanceBuy;
        credit = lock + received - charge;
    }

    /// @notice A bid's settlement: what it pays, its imbalance refund, and the credit to its
    /// owner's free balance (its lock is released at the same time).
    /// @dev Requires `used <= qty` and `lock >= qty * price` (the lock is `orderQty * limit` and
    /// the price rule keeps `price <= limit` for any bid with `qty > 0`).
    function bid(uint256 lock, uint256 qty, uint256 price, uint256 used, uint256 imbalanceSell)
        internal
        pure
        returns (uint256 paid, uint256 refund, uint256 credit)
    {
        paid = qty * price;
        refund = (qty - used) * imbalanceSell;
        credit = lock - paid + refund;
    }
}

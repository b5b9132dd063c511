// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MarketHandler} from "./MarketHandler.sol";
import {EnergyMarket} from "../../contracts/EnergyMarket.sol";

/// @dev Invariants of the market over random sequences of the handler's actions. Run with
/// `scripts/fuzz.sh RUNS` (forge test --match-path tests/foundry/*); each run is one sequence
/// of `depth` calls (foundry.toml).
contract MarketInvariants {
    MarketHandler internal handler;
    EnergyMarket internal market;

    function setUp() public {
        handler = new MarketHandler();
        market = handler.market();
    }

    /// @dev Forge fuzzes only the handler (the hook forge-std's StdInvariant would provide).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The market holds exactly what its accounts are owed: free balances plus locks.
    function invariant_tokenBalanceEqualsInternalBalances() public view {
        address[4] memory actors = handler.actors();
        uint256 sum;
        uint256 locked;
        for (uint256 i; i < actors.length; ++i) {
            (uint256 f, uint256 l,,,,) = market.accountOf(actors[i]);
            sum += f + l;
            locked += l;
        }
        (uint256 ff, uint256 fl,,,,) = market.accountOf(handler.fee());
        sum += ff + fl;
        require(handler.token().balanceOf(address(market)) == sum, "token balance != internal balances");
        require(locked + fl == handler.ghostLocked(), "locked != locks of live orders");
    }

    /// No committed fill exceeds its order.
    function invariant_noFillExceedsItsOrder() public view {
        uint256 n = handler.committedCount();
        for (uint256 i; i < n; ++i) {
            uint256 id = handler.committedIds(i);
            require(handler.ghostFill(id) <= handler.ghostOrderQty(id), "a fill exceeds its order");
        }
    }

    /// In every cleared interval, bought == sold.
    function invariant_boughtEqualsSold() public view {
        uint256 n = handler.clearedCount();
        for (uint256 i; i < n; ++i) {
            uint64 k = handler.clearedIntervals(i);
            require(handler.ghostBought(k) == handler.ghostSold(k), "bought != sold");
            (uint64 bought, uint64 sold,,,) = market.totalsOf(k);
            require(bought == sold, "bought != sold on chain");
        }
    }

    /// Every fill settles at most once.
    function invariant_noFillSettlesTwice() public view {
        uint256 n = handler.settledIdCount();
        for (uint256 i; i < n; ++i) {
            require(handler.settledCount(handler.settledIds(i)) == 1, "a fill settled twice");
        }
    }

    /// Nobody's withdrawable balance went down except by its own action or a settlement it
    /// signed for; no invalid commit and no second settlement was accepted.
    function invariant_noBalanceTakenWithoutConsent() public view {
        require(!handler.violated(), handler.violation());
    }
}

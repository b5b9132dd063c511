// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketHandler} from "./MarketHandler.sol";
import {EnergyMarket} from "../../contracts/EnergyMarket.sol";
import {IEnergyMarket} from "../../contracts/interfaces/IEnergyMarket.sol";

/// @dev Invariants of the market over random sequences of the hostile handler's actions. Run with
/// `scripts/fuzz.sh RUNS`; each run is one sequence of `depth` calls (foundry.toml).
contract MarketInvariants {
    MarketHandler internal handler;
    EnergyMarket internal market;

    function setUp() public {
        handler = new MarketHandler();
        market = handler.market();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The market holds exactly what its accounts are owed, and locks match live orders.
    function invariant_tokenBalanceEqualsInternalBalances() public view {
        address[4] memory actors = handler.actors();
        uint256 sum;
        uint256 locked;
        for (uint256 i; i < actors.length; ++i) {
            (uint256 f, uint256 l,,,,) = market.accountOf(actors[i]);
            sum += f + l;
            locked += l;
        }
        sum += _feeBalances();
        require(handler.token().balanceOf(address(market)) == sum, "token balance != internal balances");
        require(locked == handler.ghostLocked(), "locked != locks of live orders");
    }

    /// Fee recipients the handler ever funded (0xFEE, then 0xFEE2 if a change applied).
    function _feeBalances() internal view returns (uint256 sum) {
        address[2] memory fees = [address(0xFEE), address(0xFEE2)];
        for (uint256 i; i < 2; ++i) {
            (uint256 f, uint256 l,,,,) = market.accountOf(fees[i]);
            sum += f + l;
        }
    }

    /// Every accepted commit and settlement obeyed the rules (see MarketHandler).
    function invariant_rulesHeldForEverythingAccepted() public view {
        require(!handler.violated(), handler.violation());
    }

    /// The powers stay separated: the fee recipient is never the market or zero, the operator
    /// never the admin.
    function invariant_powersSeparated() public view {
        (IEnergyMarket.Params memory p,) = market.parameters();
        (address admin,,) = market.admin();
        require(p.feeRecipient != address(market) && p.feeRecipient != address(0), "fee recipient invalid");
        require(p.operator != admin, "operator is admin");
    }

    /// The handler reaches accepted commits and settlements, and the contract refuses the
    /// perturbed (hostile) ones: the invariants above are not vacuous.
    function test_handlerReachesAcceptedAndRefusedStates() public {
        for (uint256 round; round < 6; ++round) {
            // (the handler posts qty + 1 Wh at limit + 1)
            handler.post(0, false, 9, 49); // offer 10 Wh at 50: in the money at 100
            handler.post(1, true, 11, 149); // bid 12 Wh at 150: in the money
            handler.post(2, false, 4, 99); // marginal offer 5 Wh at 100: fills 2
            handler.post(3, true, 4, 99); // marginal bid 5 Wh at 100: fills 0
            handler.clear(100, round % 2 == 0 ? 0 : round, round);
            handler.settle(round % 3 == 0 ? 15 : round, uint256(keccak256(abi.encode(round))), false, round % 3 == 1);
        }
        require(handler.commitsAccepted() >= 3, "valid commits refused");
        require(handler.commitsRefused() >= 3, "perturbed commits accepted");
        require(handler.settlesAccepted() >= 3, "settlements refused");
        require(!handler.violated(), handler.violation());
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementMath} from "../../contracts/libraries/SettlementMath.sol";

/// @dev Fuzz tests of the settlement arithmetic over the contract's full ranges (qty and price
/// below 2^32, rate below 2^24); tests/foundry/halmos proves the same properties symbolically on
/// fixed shapes.
contract SettlementMathTest {
    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }

    function testFuzz_proRata(uint256[5] memory raw, uint256 totalSeed) public pure {
        uint256[] memory w = new uint256[](5);
        uint256 sum;
        for (uint256 i; i < 5; ++i) {
            w[i] = raw[i] % 7 == 0 ? 0 : _bound(raw[i], 0, type(uint32).max);
            sum += w[i];
        }
        uint256 total = _bound(totalSeed, 0, sum + 10);
        uint256[] memory s = SettlementMath.proRata(w, total);
        uint256 given;
        for (uint256 i; i < 5; ++i) {
            require(s[i] <= w[i], "share above its weight");
            if (total <= sum && sum > 0) {
                uint256 floor = (w[i] * total) / sum;
                require(s[i] == floor || s[i] == floor + 1, "share not proportional");
            }
            given += s[i];
        }
        require(given == (total <= sum ? total : sum), "shares do not sum to the total");
    }

    function testFuzz_settle(uint256[3] memory oq, uint256[3] memory split, uint256[6] memory prices, uint256[3] memory ds, uint256 flags, uint256 rateSeed)
        public
        pure
    {
        SettlementMath.Input memory input;
        input.rate = _bound(rateSeed, 0, (1 << 24) - 1);
        input.nOffers = 3;
        input.qty = new uint256[](6);
        input.price = new uint256[](6);
        input.delivered = new uint256[](6);
        input.metered = new bool[](6);
        uint256 sold;
        for (uint256 i; i < 3; ++i) {
            input.qty[i] = _bound(oq[i], 0, type(uint32).max / 4);
            sold += input.qty[i];
            input.delivered[i] = _bound(ds[i], 0, input.qty[i]);
            input.metered[i] = (flags >> i) & 1 == 1;
        }
        // bids split the same volume three ways (bought == sold)
        uint256 left = sold;
        for (uint256 i; i < 2; ++i) {
            uint256 q = _bound(split[i], 0, left);
            input.qty[3 + i] = q;
            left -= q;
        }
        input.qty[5] = left;
        for (uint256 i; i < 6; ++i) {
            input.price[i] = _bound(prices[i], 0, type(uint32).max);
        }
        SettlementMath.Outcome memory out = SettlementMath.settle(input);

        uint256 received;
        uint256 forfeit;
        uint256 paid;
        uint256 comp;
        uint256 bidEnergy;
        for (uint256 i; i < 3; ++i) {
            received += out.amount[i];
            forfeit += out.penalty[i];
            paid += out.amount[3 + i];
            comp += out.penalty[3 + i];
            bidEnergy += out.delivered[3 + i];
            require(out.penalty[i] <= input.qty[i] * input.rate, "forfeit above collateral");
            require(out.amount[i] <= input.delivered[i] * input.price[i], "seller paid above its price");
            require(out.delivered[3 + i] <= input.qty[3 + i], "buyer received above its fill");
            require(out.amount[3 + i] == out.delivered[3 + i] * input.price[3 + i], "buyer pays its price");
        }
        require(paid + forfeit == received + comp + out.surplus, "money not conserved");
        require(bidEnergy == out.deliveredWh, "buyers did not receive D");
        require(comp == forfeit, "forfeited collateral not passed on");
        require(out.soldWh == sold, "sold");
    }
}

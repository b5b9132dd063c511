// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IEnergyMarket} from "../interfaces/IEnergyMarket.sol";

/// @title MarketClearing — the zone and link checks of {EnergyMarket}'s clearing rule (an
/// external library, run by DELEGATECALL in the market's storage so the market stays under the
/// 24,576-byte contract size limit)
/// @notice A zone word packs: bit 255 present, bits 0-23 price, 24-39 index, 40-103 expected
/// net (sold - bought = outflow - inflow, int64), 104-167 committed net (int64), 168-231 the
/// interval it belongs to. Zone words are keyed by clearing slot (interval % 16) and reused.
library MarketClearing {
    uint256 private constant _Z_PRESENT = 1 << 255;

    /// @notice A fresh zone word of `interval`: `price`, position `index`, nets zero.
    function word(uint64 interval, uint256 price, uint256 index) internal pure returns (uint256) {
        return _Z_PRESENT | price | (index << 24) | (uint256(interval) << 168);
    }

    /// @notice Whether `w` is a zone word committed for `interval`.
    function valid(uint256 w, uint64 interval) internal pure returns (bool) {
        return w & _Z_PRESENT != 0 && uint64(w >> 168) == interval;
    }

    /// @dev Stores the zone prices, checks every link, and returns the rent.
    function commitZones(
        mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord,
        mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt,
        IEnergyMarket.Link[] storage links,
        uint64 interval,
        IEnergyMarket.ZonePrice[] calldata prices,
        uint64[] calldata flows
    )
        external
        returns (uint256 rent)
    {
        uint256 k = prices.length;
        int256[] memory expected = new int256[](k);
        mapping(uint16 => uint256) storage zw = zoneWord[interval % 16];
        for (uint256 i; i < k; ++i) {
            uint16 z = prices[i].zone;
            if (i > 0 && z <= prices[i - 1].zone) revert IEnergyMarket.MarketZonesNotAscending(i, z);
            zw[z] = word(interval, prices[i].price, i);
            zoneAt[interval % 16][i] = z;
        }
        for (uint256 l; l < flows.length; ++l) {
            IEnergyMarket.Link memory link = links[l];
            uint256 a = zw[link.fromZone];
            uint256 b = zw[link.toZone];
            if (!valid(a, interval)) revert IEnergyMarket.MarketZonePriceMissing(0, link.fromZone);
            if (!valid(b, interval)) revert IEnergyMarket.MarketZonePriceMissing(0, link.toZone);
            uint256 f = flows[l];
            if (f > link.limitWh) revert IEnergyMarket.MarketFlowAboveLimit(l, f, link.limitWh);
            int256 diff = int256(uint256(uint24(b))) - int256(uint256(uint24(a)));
            int256 fee = int256(uint256(link.fee));
            if ((f > 0 && diff < fee) || (f < link.limitWh && diff > fee)) {
                revert IEnergyMarket.MarketLinkPriceRule(l, f, diff, link.fee);
            }
            if (f > 0) {
                // diff >= fee >= 0 here; f < 2^64 and diff < 2^24.
                rent += f * uint256(diff);
                expected[uint16(a >> 24)] += int256(f);
                expected[uint16(b >> 24)] -= int256(f);
            }
        }
        for (uint256 i; i < k; ++i) {
            int256 e = expected[i];
            if (e != 0) {
                uint16 z = prices[i].zone;
                if (e > type(int64).max || e < type(int64).min) revert IEnergyMarket.MarketTotalsOverflow(interval);
                zw[z] |= uint256(uint64(int64(e))) << 40;
            }
        }
        if (rent > type(uint128).max) revert IEnergyMarket.MarketTotalsOverflow(interval);
    }

    /// @dev Adds a chunk's per-zone (sold - bought) to the zones' committed nets.
    function flushZones(mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord, mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt, uint64 interval, int256[] memory deltas)
        external
    {
        for (uint256 i; i < deltas.length; ++i) {
            int256 d = deltas[i];
            if (d == 0) continue;
            uint16 z = zoneAt[interval % 16][i];
            uint256 w = zoneWord[interval % 16][z];
            int256 running = int256(int64(uint64(w >> 104))) + d;
            if (running > type(int64).max || running < type(int64).min) revert IEnergyMarket.MarketTotalsOverflow(interval);
            w = (w & ~(uint256(type(uint64).max) << 104)) | (uint256(uint64(int64(running))) << 104);
            zoneWord[interval % 16][z] = w;
        }
    }

    /// @dev Every zone's committed (sold - bought) equals its (outflow - inflow).
    function checkZonesBalanced(mapping(uint256 => mapping(uint16 => uint256)) storage zoneWord, mapping(uint256 => mapping(uint256 => uint16)) storage zoneAt, uint64 interval, uint256 zoneCount)
        external
        view
    {
        for (uint256 i; i < zoneCount; ++i) {
            uint16 z = zoneAt[interval % 16][i];
            uint256 w = zoneWord[interval % 16][z];
            int256 expected = int64(uint64(w >> 40));
            int256 net = int64(uint64(w >> 104));
            if (net != expected) revert IEnergyMarket.MarketZoneUnbalanced(interval, z, net, expected);
        }
    }

    /// @notice Replaces the link table `to` with `links` after checking them: at most 64, each
    /// joining two different zones (neither the copper zone), no pair twice.
    function setLinks(IEnergyMarket.Link[] storage to, IEnergyMarket.Link[] memory links) external {
        _checkLinks(links);
        while (to.length > 0) to.pop();
        for (uint256 i; i < links.length; ++i) {
            to.push(links[i]);
        }
    }

    function _checkLinks(IEnergyMarket.Link[] memory l) private pure {
        if (l.length > 64) revert IEnergyMarket.MarketTooManyLinks(l.length);
        for (uint256 i; i < l.length; ++i) {
            if (l[i].fromZone == l[i].toZone || l[i].fromZone == type(uint16).max || l[i].toZone == type(uint16).max) {
                revert IEnergyMarket.MarketInvalidLink(i);
            }
            for (uint256 k; k < i; ++k) {
                if (l[k].fromZone == l[i].fromZone && l[k].toZone == l[i].toZone) revert IEnergyMarket.MarketInvalidLink(i);
            }
        }
    }

}

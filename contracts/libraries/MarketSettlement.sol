// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";

import {IEnergyMarket} from "../interfaces/IEnergyMarket.sol";
import {SettlementMath} from "./SettlementMath.sol";

/// @title MarketSettlement — settles one commit chunk of {EnergyMarket} (an external library)
/// @notice Verifies the chunk's signed meter readings and applies {SettlementMath} to every
/// fill, crediting each owner's account. It runs by DELEGATECALL in the market's storage and
/// emits the market's events; it lives in its own bytecode so the market stays under the
/// 24,576-byte contract size limit.
library MarketSettlement {
    bytes32 private constant _METER_TYPEHASH =
        keccak256("MeterReading(address participant,uint64 interval,uint64 exportedWh,uint64 importedWh)");
    uint256 private constant _BID_BIT = 1 << 191;
    uint256 private constant _LOW_MASK = (1 << 192) - 1;
    uint256 private constant _U96 = (1 << 96) - 1;

    /// @dev One storage slot: balances, zone, registration and the order counter.
    struct Account {
        uint96 free;
        uint96 locked;
        uint16 zone;
        bool registered;
        uint32 nonce;
    }


    /// @dev A chunk's readings: who signed, Wh left to allot, and the walk's position.
    struct Meter {
        address[] who;
        uint256[] exportLeft;
        uint256[] importLeft;
        uint256 j;
        uint256[][] out;
        uint64 interval;
        bool complete; // every owner with a non-zero fill must have a reading
        address sOwner; // the owner group whose on-chain reading is loaded
        bool sBid;
        bool sHas;
        uint256 sLeft;
    }

    /// @dev The settlement loop's running state for one chunk.
    struct Run {
        uint256 deliveredWh;
        uint256 charges;
        uint256 refunds;
        uint256 imbalanceBuy;
        uint256 imbalanceSell;
    }


    /// @notice Same as IEnergyMarket's.
    event MeterReadingsAccepted(
        uint64 indexed interval, address[] participants, uint256[] exportedWh, uint256[] importedWh
    );
    /// @notice Same as IEnergyMarket's.
    event ReadingSubmitted(uint64 indexed interval, address indexed participant, uint64 exportedWh, uint64 importedWh);
    /// @notice Same as IEnergyMarket's.
    event FillsSettled(
        uint64 indexed interval, uint256[] orderIds, uint256[] deliveredWh, uint256[] amounts, uint256[] penalties
    );

    /// @notice Settles `fills` with `readings` at the given imbalance prices; returns the
    /// chunk's charges, refunds and delivered energy.
    /// `submitted` holds readings participants put on chain themselves ({submit}); one counts
    /// for an owner whose reading `readings` lacks. With `complete` (bit 48 of `terms`), every
    /// owner of a non-zero fill must have a reading (before `settleBy`).
    function settleChunk(
        mapping(address => Account) storage accounts,
        mapping(address => uint256) storage submitted,
        bytes32 domainSeparator,
        uint64 interval,
        IEnergyMarket.SettlementFill[] calldata fills,
        IEnergyMarket.SignedReading[] calldata readings,
        uint256 terms
    ) external returns (Run memory run) {
        // terms: bits 0-23 imbalance buy price, 24-47 imbalance sell price, 48 complete.
        (run.imbalanceBuy, run.imbalanceSell) = (uint24(terms), uint24(terms >> 24));
        // Filled in below.
        // slither-disable-next-line uninitialized-local
        Meter memory meter;
        (meter.who, meter.exportLeft, meter.importLeft) = _verifyReadings(domainSeparator, interval, readings);
        (meter.interval, meter.complete) = (interval, terms >> 48 & 1 == 1);
        _settleChunk(accounts, submitted, fills, meter, run);
    }

    /// @notice Stores a participant's signed reading on chain (anyone may send it): settlement
    /// uses it whenever the operator's calldata lacks that participant's reading.
    function submit(
        mapping(uint256 => mapping(address => uint256)) storage submitted,
        bytes32 domainSeparator,
        IEnergyMarket.SignedReading calldata sr
    ) external {
        IEnergyMarket.MeterReading calldata r = sr.reading;
        address signer = _signer(domainSeparator, sr);
        if (signer != r.participant) revert IEnergyMarket.MarketReadingBadSignature(0, r.participant, signer);
        submitted[r.interval % 16][r.participant] =
            (1 << 255) | uint256(r.interval) | (uint256(r.exportedWh) << 64) | (uint256(r.importedWh) << 128);
        emit ReadingSubmitted(r.interval, r.participant, r.exportedWh, r.importedWh);
    }

    /// @notice The EIP-712 digest of a meter reading under `domainSeparator`.
    function digest(bytes32 domainSeparator, IEnergyMarket.MeterReading memory r) internal pure returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(
            domainSeparator,
            keccak256(abi.encode(_METER_TYPEHASH, r.participant, r.interval, r.exportedWh, r.importedWh))
        );
    }

    /// @dev Verifies signed readings (ascending participants, this interval, right signer).
    function _verifyReadings(bytes32 domainSeparator, uint64 interval, IEnergyMarket.SignedReading[] calldata readings)
        private
        returns (address[] memory who, uint256[] memory exported, uint256[] memory imported)
    {
        uint256 m = readings.length;
        who = new address[](m);
        exported = new uint256[](m);
        imported = new uint256[](m);
        address previous;
        for (uint256 j; j < m; ++j) {
            IEnergyMarket.MeterReading calldata r = readings[j].reading;
            address participant = r.participant;
            if (r.interval != interval) revert IEnergyMarket.MarketReadingWrongInterval(j, r.interval);
            if (participant <= previous) revert IEnergyMarket.MarketReadingsNotAscending(j, participant);
            previous = participant;
            address signer = _signer(domainSeparator, readings[j]);
            if (signer != participant) revert IEnergyMarket.MarketReadingBadSignature(j, participant, signer);
            exported[j] = r.exportedWh;
            imported[j] = r.importedWh;
            who[j] = participant;
        }
        if (m > 0) {
            uint256[] memory participants;
            assembly ("memory-safe") {
                participants := who
            }
            uint256[][] memory arrays = new uint256[][](3);
            (arrays[0], arrays[1], arrays[2]) = (participants, exported, imported);
            _logArrays(MeterReadingsAccepted.selector, interval, arrays);
            // The event logged the readings; from here the arrays count what is left to allot.
        }
    }

    /// @dev Who signed the reading (zero if the signature is malformed).
    function _signer(bytes32 domainSeparator, IEnergyMarket.SignedReading calldata sr) private pure returns (address) {
        // The error's argument adds nothing: any error rejects the reading.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest(domainSeparator, sr.reading), sr.r, sr.vs);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }

    /// @dev Verifies the readings, settles the chunk's fills and logs the outcome.
    function _settleChunk(
        mapping(address => Account) storage accounts,
        mapping(address => uint256) storage submitted,
        IEnergyMarket.SettlementFill[] calldata fills,
        Meter memory meter,
        Run memory run
    ) private {
        uint256 n = fills.length;
        uint256[][] memory out = new uint256[][](4);
        for (uint256 k; k < 4; ++k) {
            out[k] = new uint256[](n);
        }
        meter.out = out;
        // Offers come first: false until the first bid.
        // slither-disable-next-line uninitialized-local
        bool bidSide;
        for (uint256 i; i < n; ++i) {
            IEnergyMarket.SettlementFill calldata f = fills[i];
            bool isBid = f.orderId & _BID_BIT != 0;
            if (isBid && !bidSide) {
                bidSide = true;
                meter.j = 0;
            }
            _settleOne(accounts, submitted, f, isBid, meter, run, i);
        }
        _logArrays(FillsSettled.selector, meter.interval, out);
    }

    /// @dev Applies {SettlementMath} to one fill: its owner's reading (if any) is allotted to its
    /// fills on one side in fill order (offers use the export, bids the import). Writes order
    /// id, energy, amount and penalty to `out[0..3][i]` and credits the owner.
    function _settleOne(
        mapping(address => Account) storage accounts,
        mapping(address => uint256) storage submitted,
        IEnergyMarket.SettlementFill calldata f,
        bool isBid,
        Meter memory meter,
        Run memory run,
        uint256 i
    ) private {
        address owner = address(uint160(f.orderId >> 31));
        uint256 energy = _energy(submitted, f.qty, owner, isBid, meter);
        (uint256 amount, uint256 penalty) = isBid ? _settleBid(accounts, f, owner, energy, run) : _settleOffer(accounts, f, owner, energy, run);
        uint256[][] memory out = meter.out;
        (out[0][i], out[1][i], out[2][i], out[3][i]) = (f.orderId, energy, amount, penalty);
    }

    /// @dev The energy allotted to a fill of `qty`: from the owner's reading in calldata, else
    /// its reading submitted on chain, else the worst case (an offer delivered 0, a bid used
    /// all); with `meter.complete` a non-zero fill without any reading reverts.
    function _energy(
        mapping(address => uint256) storage submitted,
        uint256 qty,
        address owner,
        bool isBid,
        Meter memory meter
    ) private view returns (uint256 energy) {
        (bool has, uint256 j) = _find(meter, owner);
        if (has) {
            uint256[] memory left = isBid ? meter.importLeft : meter.exportLeft;
            (energy, left[j]) = SettlementMath.allot(qty, left[j]);
            return energy;
        }
        // An owner's fills on one side are contiguous: load its submitted reading once per group.
        if (owner != meter.sOwner || isBid != meter.sBid) {
            uint256 w = submitted[owner];
            meter.sOwner = owner;
            meter.sBid = isBid;
            meter.sHas = w >> 255 == 1 && uint64(w) == meter.interval;
            meter.sLeft = isBid ? uint64(w >> 128) : uint64(w >> 64);
        }
        if (meter.sHas) {
            (energy, meter.sLeft) = SettlementMath.allot(qty, meter.sLeft);
            return energy;
        }
        if (meter.complete && qty > 0) revert IEnergyMarket.MarketReadingMissing(meter.interval, owner);
        return isBid ? qty : 0;
    }

    /// @dev Moves the walk over the (ascending) readings to `owner`'s, if it has one.
    function _find(Meter memory meter, address owner) private pure returns (bool has, uint256 j) {
        address[] memory who = meter.who;
        j = meter.j;
        while (j < who.length && who[j] < owner) ++j;
        meter.j = j;
        has = j < who.length && who[j] == owner;
    }

    function _settleBid(mapping(address => Account) storage accounts, IEnergyMarket.SettlementFill calldata f, address owner, uint256 used, Run memory run)
        private
        returns (uint256 paid, uint256 refund)
    {
        uint256 credit;
        (paid, refund, credit) = SettlementMath.bid(f.lock, f.qty, f.price, used, run.imbalanceSell);
        run.refunds += refund;
        _settleAccount(accounts, owner, f.lock, credit);
    }

    function _settleOffer(mapping(address => Account) storage accounts, IEnergyMarket.SettlementFill calldata f, address owner, uint256 delivered, Run memory run)
        private
        returns (uint256 received, uint256 charge)
    {
        uint256 credit;
        (received, charge, credit) = SettlementMath.offer(f.lock, f.qty, f.price, delivered, run.imbalanceBuy);
        run.charges += charge;
        run.deliveredWh += delivered;
        _settleAccount(accounts, owner, f.lock, credit);
    }

    /// @dev `locked -= lock; free += credit` in one read and one write of the account's slot.
    function _settleAccount(mapping(address => Account) storage accounts, address owner, uint256 lock, uint256 credit) private {
        Account storage a = accounts[owner];
        uint256 word;
        assembly ("memory-safe") {
            word := sload(a.slot)
        }
        uint256 free = (word & _U96) + credit;
        uint256 locked = ((word >> 96) & _U96) - lock;
        if (free > _U96) revert IEnergyMarket.MarketBalanceOverflow(owner, free);
        word = (word & ~_LOW_MASK) | (locked << 96) | free;
        assembly ("memory-safe") {
            sstore(a.slot, word)
        }
    }

    /// @dev Emits event `topic` with indexed `interval` and data `abi.encode(arrays[0], ...)`,
    /// copying with the identity precompile.
    function _logArrays(bytes32 topic, uint64 interval, uint256[][] memory arrays) private {
        assembly ("memory-safe") {
            let k := mload(arrays)
            let buf := mload(0x40)
            let head := mul(k, 0x20)
            let tail := head
            for { let i := 0 } lt(i, k) { i := add(i, 1) } {
                let src := mload(add(arrays, mul(add(i, 1), 0x20)))
                let len := mul(add(mload(src), 1), 0x20)
                mstore(add(buf, mul(i, 0x20)), tail)
                if iszero(staticcall(gas(), 0x04, src, len, add(buf, tail), len)) { revert(0, 0) }
                tail := add(tail, len)
            }
            log2(buf, tail, topic, interval)
        }
    }

}

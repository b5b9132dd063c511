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

    /// @dev One storage slot: balances, zone, registration and the order counter.
    struct Account {
        uint96 free;
        uint96 locked;
        uint16 zone;
        bool registered;
        uint32 nonce;
    }


    /// @dev The walk's state: the chunk's readings (an event buffer, see {_verifyReadings}), the
    /// walk's position in them, the owner group whose on-chain reading is loaded, and the
    /// storage the walk writes. The fill loop reads and writes these words from assembly at
    /// the offsets named below (each field takes one word in memory).
    struct Meter {
        uint256 who; // memory address of the participants array's first element
        uint256 end; // memory address of the word after the participants array's last element
        uint256 stride; // bytes between the readings' arrays: exported at who + stride, imported at who + 2 * stride
        uint256 at; // the walk's position: the memory address of the next participant to compare
        uint256 bidSide; // offers come first: 0 until the first bid, then 1
        uint256 accounts; // storage slot of the accounts mapping
        uint256 submitted; // storage slot of the submitted readings mapping
        uint64 interval;
        bool complete; // every owner with a non-zero fill must have a reading
        address sOwner;
        bool sBid;
        bool sHas;
        uint256 sLeft;
    }

    uint256 private constant _M_WHO = 0x00;
    uint256 private constant _M_END = 0x20;
    uint256 private constant _M_STRIDE = 0x40;
    uint256 private constant _M_AT = 0x60;
    uint256 private constant _M_BID_SIDE = 0x80;
    uint256 private constant _M_ACCOUNTS = 0xa0;
    uint256 private constant _M_SUBMITTED = 0xc0;

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
    /// `fills` is the ABI encoding of the chunk's `SettlementFill[]` elements (0x80 bytes each:
    /// order id, qty, price, lock) and `readings` of its `SignedReading[]` elements (0xc0 bytes
    /// each: participant, interval, exported, imported, r, vs), both copied as they are from
    /// the market's calldata, so nothing is encoded twice; the market has checked `fills`
    /// against the chunk's committed hash.
    /// `submitted` holds readings participants put on chain themselves ({submit}); one counts
    /// for an owner whose reading `readings` lacks. With `complete` (bit 48 of `terms`), every
    /// owner of a non-zero fill must have a reading (before `settleBy`).
    function settleChunk(
        mapping(address => Account) storage accounts,
        mapping(address => uint256) storage submitted,
        bytes32 domainSeparator,
        uint64 interval,
        bytes calldata fills,
        bytes calldata readings,
        uint256 terms
    ) external returns (Run memory run) {
        // terms: bits 0-23 imbalance buy price, 24-47 imbalance sell price, 48 complete.
        (run.imbalanceBuy, run.imbalanceSell) = (uint24(terms), uint24(terms >> 24));
        // Filled in below.
        // slither-disable-next-line uninitialized-local
        Meter memory meter;
        _verifyReadings(domainSeparator, interval, readings, meter);
        (meter.interval, meter.complete) = (interval, terms >> 48 & 1 == 1);
        assembly ("memory-safe") {
            mstore(add(meter, _M_ACCOUNTS), accounts.slot)
            mstore(add(meter, _M_SUBMITTED), submitted.slot)
        }
        _settleChunk(fills, meter, run);
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

    /// @dev Verifies signed readings (ascending participants, this interval, right signer) and
    /// logs them. The event's data is built in place: three arrays (participants, exported,
    /// imported) of `m` words each; after the log, `meter` points at them and the two amounts
    /// count what is left to allot.
    function _verifyReadings(bytes32 domainSeparator, uint64 interval, bytes calldata readings, Meter memory meter)
        private
    {
        uint256 m = readings.length / 0xc0;
        uint256 buf;
        uint256 stride = (m + 1) * 0x20;
        assembly ("memory-safe") {
            buf := mload(0x40)
            mstore(0x40, add(buf, add(0x60, mul(stride, 3))))
            mstore(buf, 0x60)
            mstore(add(buf, 0x20), add(0x60, stride))
            mstore(add(buf, 0x40), add(0x60, mul(stride, 2)))
            mstore(add(buf, 0x60), m)
            mstore(add(buf, add(0x60, stride)), m)
            mstore(add(buf, add(0x60, mul(stride, 2))), m)
        }
        (meter.who, meter.end, meter.stride, meter.at) = (buf + 0x80, buf + 0x60 + stride, stride, buf + 0x80);
        {
            uint256 src;
            assembly ("memory-safe") {
                src := readings.offset
            }
            (uint256 err, uint256 at, uint256 signer) =
                _checkReadings(domainSeparator, interval, src, src + readings.length, buf + 0x80, stride);
            if (err != 0) _readingError(err, (at - src) / 0xc0, at, signer);
        }
        if (m > 0) {
            bytes32 topic = MeterReadingsAccepted.selector;
            assembly ("memory-safe") {
                log2(buf, add(0x60, mul(stride, 3)), topic, interval)
            }
        }
    }

    /// @dev Checks the readings from calldata offset `src` to `end` (0xc0 bytes each:
    /// participant, interval, exported, imported, r, vs) in order: every field fits its ABI type
    /// (as the ABI decoder would check), the reading is of `interval`, participants ascend, and
    /// the participant signed it. The signer is recovered as OpenZeppelin's ECDSA.tryRecover
    /// does (zero if the signature has a high `s` or does not recover): the EIP-712 digest and
    /// the EIP-2098 compact signature go straight to the ecrecover precompile. Writes each
    /// reading's participant, exported and imported into the event buffer (`w`: the
    /// participants array's first element, `stride`: bytes between the arrays). At the first
    /// reading that fails it stops and returns the check's code (1 to 4, in the order above),
    /// the reading's offset and its signer.
    function _checkReadings(
        bytes32 domainSeparator,
        uint64 interval,
        uint256 src,
        uint256 end,
        uint256 w,
        uint256 stride
    ) private view returns (uint256 err, uint256 at, uint256 signer) {
        bytes32 typeHash = _METER_TYPEHASH;
        assembly ("memory-safe") {
            let previous := 0
            for {} lt(src, end) {
                src := add(src, 0xc0)
                w := add(w, 0x20)
            } {
                let participant := calldataload(src)
                {
                    let exported := calldataload(add(src, 0x40))
                    let imported := calldataload(add(src, 0x60))
                    if or(shr(160, participant), shr(64, or(calldataload(add(src, 0x20)), or(exported, imported)))) {
                        err := 1
                        break
                    }
                    mstore(w, participant)
                    mstore(add(w, stride), exported)
                    mstore(add(w, add(stride, stride)), imported)
                }
                if iszero(eq(calldataload(add(src, 0x20)), interval)) {
                    err := 2
                    break
                }
                if iszero(gt(participant, previous)) {
                    err := 3
                    break
                }
                previous := participant
                let p := mload(0x40)
                mstore(p, typeHash)
                calldatacopy(add(p, 0x20), src, 0x80)
                mstore(add(p, 0x22), keccak256(p, 0xa0))
                mstore(p, shl(240, 0x1901))
                mstore(add(p, 0x02), domainSeparator)
                let h := keccak256(p, 0x42)
                let vs := calldataload(add(src, 0xa0))
                let s := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                signer := 0
                if iszero(gt(s, 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)) {
                    mstore(p, h)
                    mstore(add(p, 0x20), add(shr(255, vs), 27))
                    mstore(add(p, 0x40), calldataload(add(src, 0x80)))
                    mstore(add(p, 0x60), s)
                    mstore(0x00, 0)
                    if staticcall(gas(), 0x01, p, 0x80, 0x00, 0x20) { signer := mload(0x00) }
                }
                if iszero(eq(signer, participant)) {
                    err := 4
                    break
                }
            }
            at := src
        }
    }

    /// @dev Reverts with the error of check `err` of {_checkReadings}, failed by reading `j`
    /// (at calldata offset `src`, signed by `signer`).
    function _readingError(uint256 err, uint256 j, uint256 src, uint256 signer) private pure {
        uint256 participant;
        uint256 at;
        assembly ("memory-safe") {
            participant := calldataload(src)
            at := calldataload(add(src, 0x20))
        }
        // A field that does not fit its type: the ABI decoder's revert, without data.
        if (err == 1) revert();
        if (err == 2) revert IEnergyMarket.MarketReadingWrongInterval(j, uint64(at));
        if (err == 3) revert IEnergyMarket.MarketReadingsNotAscending(j, address(uint160(participant)));
        revert IEnergyMarket.MarketReadingBadSignature(j, address(uint160(participant)), address(uint160(signer)));
    }

    /// @dev Who signed the reading (zero if the signature is malformed).
    function _signer(bytes32 domainSeparator, IEnergyMarket.SignedReading calldata sr) private pure returns (address) {
        // The error's argument adds nothing: any error rejects the reading.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest(domainSeparator, sr.reading), sr.r, sr.vs);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }

    /// @dev Settles the chunk's fills and logs the outcome: FillsSettled's data (four arrays of
    /// `n` words: order id, energy, amount, penalty) is written in place as the walk goes.
    function _settleChunk(bytes calldata fills, Meter memory meter, Run memory run) private {
        uint256 n = fills.length / 0x80;
        uint256 stride = (n + 1) * 0x20;
        uint256 buf;
        assembly ("memory-safe") {
            buf := mload(0x40)
            mstore(0x40, add(buf, add(0x80, mul(stride, 4))))
            for { let k := 0 } lt(k, 4) { k := add(k, 1) } {
                mstore(add(buf, mul(k, 0x20)), add(0x80, mul(stride, k)))
                mstore(add(buf, add(0x80, mul(stride, k))), n)
            }
        }
        uint256 src;
        uint256 end;
        assembly ("memory-safe") {
            src := fills.offset
            end := add(src, fills.length)
        }
        // Fill i is at calldata src + i * 0x80; its order id goes to FillsSettled's word at
        // buf + 0xa0 + i * 0x20, its energy, amount and penalty one, two, three strides on.
        for (uint256 at = buf + 0xa0; src < end;) {
            _settleFill(src, at, stride, meter, run);
            unchecked {
                src += 0x80;
                at += 0x20;
            }
        }
        bytes32 topic = FillsSettled.selector;
        uint64 interval = meter.interval;
        assembly ("memory-safe") {
            log2(buf, add(0x80, mul(stride, 4)), topic, interval)
        }
    }

    /// @dev Settles the fill at calldata offset `src` (order id, qty, price, lock) with
    /// {SettlementMath}, books the chunk's totals, credits its owner and writes its order id,
    /// energy, amount and penalty into FillsSettled's arrays (at `at`, `stride` apart).
    /// The energy allotted to the fill: from the owner's reading in calldata, else its reading
    /// submitted on chain, else the worst case (an offer delivered 0, a bid used all); with
    /// `meter.complete` a non-zero fill without any reading reverts. An owner's reading is
    /// allotted to its fills on one side in fill order (offers use the export, bids the import).
    /// The totals cannot overflow: a penalty or an energy is below 2^56 (qty < 2^32, prices
    /// < 2^24, all as committed), and a chunk has fewer than 2^32 fills.
    function _settleFill(uint256 src, uint256 at, uint256 stride, Meter memory meter, Run memory run) private {
        uint256 id;
        uint256 lock;
        uint256 credit;
        {
            uint256 qty;
            uint256 energy;
            {
                // Memory address of what is left of the owner's reading on this side, if it has one.
                // slither-disable-next-line uninitialized-local
                uint256 slot;
                assembly ("memory-safe") {
                    id := calldataload(src)
                    qty := calldataload(add(src, 0x20))
                    let isBid := and(shr(191, id), 1)
                    let owner := and(shr(31, id), 0xffffffffffffffffffffffffffffffffffffffff)
                    // The walk's position: the address of the next participant word to compare.
                    let w := mload(add(meter, _M_AT))
                    // Offers come first; the walk starts over at the first bid.
                    if gt(isBid, mload(add(meter, _M_BID_SIDE))) {
                        mstore(add(meter, _M_BID_SIDE), 1)
                        w := mload(add(meter, _M_WHO))
                    }
                    // Moves the walk over the (ascending) readings to the first participant at or
                    // above `owner`: the owner's reading, if it has one. If the last participant
                    // (or, without readings, the participants array's length word, 0) is below
                    // the owner, none is at or above it; else the walk stops before the end
                    // without a bounds check.
                    let last := mload(add(meter, _M_END))
                    switch lt(mload(sub(last, 0x20)), owner)
                    case 1 { w := last }
                    default {
                        for {} lt(mload(w), owner) { w := add(w, 0x20) } {}
                        if and(lt(w, last), eq(mload(w), owner)) {
                            slot := add(w, mul(add(isBid, 1), mload(add(meter, _M_STRIDE))))
                        }
                    }
                    mstore(add(meter, _M_AT), w)
                }
                if (slot != 0) {
                    uint256 left;
                    assembly ("memory-safe") {
                        left := mload(slot)
                    }
                    (energy, left) = SettlementMath.allot(qty, left);
                    assembly ("memory-safe") {
                        mstore(slot, left)
                    }
                } else {
                    energy = _submittedEnergy(meter, address(uint160(id >> 31)), id & _BID_BIT != 0, qty);
                }
            }
            uint256 price;
            assembly ("memory-safe") {
                price := calldataload(add(src, 0x40))
                lock := calldataload(add(src, 0x60))
            }
            // Offer: amount received and imbalance charge; bid: amount paid and imbalance refund.
            uint256 amount;
            uint256 penalty;
            if (id & _BID_BIT != 0) {
                (amount, penalty, credit) = SettlementMath.bid(lock, qty, price, energy, run.imbalanceSell);
                unchecked {
                    run.refunds += penalty;
                }
            } else {
                (amount, penalty, credit) = SettlementMath.offer(lock, qty, price, energy, run.imbalanceBuy);
                unchecked {
                    run.charges += penalty;
                    run.deliveredWh += energy;
                }
            }
            assembly ("memory-safe") {
                mstore(at, id)
                mstore(add(at, stride), energy)
                mstore(add(at, add(stride, stride)), amount)
                mstore(add(at, mul(stride, 3)), penalty)
            }
        }
        // `locked -= lock; free += credit` in one read and one write of the owner's account
        // slot, accounts[owner] (the owner: bits 31-190 of the id; free: bits 0-95, locked:
        // bits 96-191). `locked - lock` is checked as Solidity checks it (Panic 0x11); the sum
        // cannot overflow: free < 2^96 and credit <= lock + qty * price + qty * imbalanceSell < 2^66.
        uint256 free;
        bool overflow;
        assembly ("memory-safe") {
            mstore(0x00, and(shr(31, id), 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(0x20, mload(add(meter, _M_ACCOUNTS)))
            let slot := keccak256(0x00, 0x40)
            let word := sload(slot)
            let locked := and(shr(96, word), 0xffffffffffffffffffffffff)
            if lt(locked, lock) {
                mstore(0x00, shl(224, 0x4e487b71))
                mstore(0x04, 0x11)
                revert(0x00, 0x24)
            }
            free := add(and(word, 0xffffffffffffffffffffffff), credit)
            overflow := gt(free, 0xffffffffffffffffffffffff)
            if iszero(overflow) {
                sstore(
                    slot,
                    or(
                        and(word, not(0xffffffffffffffffffffffffffffffffffffffffffffffff)),
                        or(shl(96, sub(locked, lock)), free)
                    )
                )
            }
        }
        if (overflow) revert IEnergyMarket.MarketBalanceOverflow(address(uint160(id >> 31)), free);
    }

    /// @dev The energy of a fill whose owner has no reading in calldata: its reading submitted
    /// on chain, else the worst case (or a revert, see {_settleFill}).
    function _submittedEnergy(Meter memory meter, address owner, bool isBid, uint256 qty)
        private
        view
        returns (uint256 energy)
    {
        // An owner's fills on one side are contiguous: load its submitted reading once per group.
        if (owner != meter.sOwner || isBid != meter.sBid) {
            uint256 w;
            assembly ("memory-safe") {
                // An address on the stack may carry dirty high bits: clean it for the key.
                mstore(0x00, and(owner, 0xffffffffffffffffffffffffffffffffffffffff))
                mstore(0x20, mload(add(meter, _M_SUBMITTED)))
                w := sload(keccak256(0x00, 0x40))
            }
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
}

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


    /// @dev The walk's state: the chunk's readings (an event buffer, see {_verifyReadings}), the
    /// walk's position in them, the owner group whose on-chain reading is loaded, and the
    /// storage the walk writes. The fill loop reads and writes these words from assembly at
    /// the offsets named below (each field takes one word in memory).
    struct Meter {
        uint256 who; // memory address of the participants array's first element
        uint256 m; // readings
        uint256 stride; // bytes between the readings' arrays: exported at who + stride, imported at who + 2 * stride
        uint256 j; // the walk's position in the readings
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
    uint256 private constant _M_M = 0x20;
    uint256 private constant _M_STRIDE = 0x40;
    uint256 private constant _M_J = 0x60;
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
        (meter.who, meter.m, meter.stride) = (buf + 0x80, m, stride);
        uint256 previous;
        for (uint256 j; j < m;) {
            (uint256 participant, uint256 at, uint256 signer, bool dirty) =
                _reading(domainSeparator, readings, j, buf + 0x80, stride);
            // The ABI decoder's check: every field fits its type.
            if (dirty) revert();
            if (at != interval) revert IEnergyMarket.MarketReadingWrongInterval(j, uint64(at));
            if (participant <= previous) {
                revert IEnergyMarket.MarketReadingsNotAscending(j, address(uint160(participant)));
            }
            previous = participant;
            if (signer != participant) {
                revert IEnergyMarket.MarketReadingBadSignature(j, address(uint160(participant)), address(uint160(signer)));
            }
            unchecked {
                ++j;
            }
        }
        if (m > 0) {
            bytes32 topic = MeterReadingsAccepted.selector;
            assembly ("memory-safe") {
                log2(buf, add(0x60, mul(stride, 3)), topic, interval)
            }
        }
    }

    /// @dev Reading `j`: its fields, whether one does not fit its ABI type, and who signed it
    /// (zero if the signature is malformed or has a high `s`, as OpenZeppelin's
    /// ECDSA.tryRecover): its EIP-712 digest and EIP-2098 compact signature go straight to the
    /// ecrecover precompile. Writes participant, exported and imported into the event buffer
    /// (`who`: the participants array's first element, `stride`: bytes between the arrays).
    function _reading(bytes32 domainSeparator, bytes calldata readings, uint256 j, uint256 who, uint256 stride)
        private
        view
        returns (uint256 participant, uint256 at, uint256 signer, bool dirty)
    {
        bytes32 typeHash = _METER_TYPEHASH;
        assembly ("memory-safe") {
            let src := add(readings.offset, mul(j, 0xc0))
            participant := calldataload(src)
            at := calldataload(add(src, 0x20))
            let exported := calldataload(add(src, 0x40))
            let imported := calldataload(add(src, 0x60))
            dirty := or(shr(160, participant), shr(64, or(at, or(exported, imported))))
            let w := add(who, shl(5, j))
            mstore(w, participant)
            mstore(add(w, stride), exported)
            mstore(add(w, add(stride, stride)), imported)
            let p := mload(0x40)
            mstore(p, typeHash)
            calldatacopy(add(p, 0x20), src, 0x80)
            let structHash := keccak256(p, 0xa0)
            mstore(p, shl(240, 0x1901))
            mstore(add(p, 0x02), domainSeparator)
            mstore(add(p, 0x22), structHash)
            let h := keccak256(p, 0x42)
            let vs := calldataload(add(src, 0xa0))
            let s := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
            if iszero(gt(s, 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)) {
                mstore(p, h)
                mstore(add(p, 0x20), add(shr(255, vs), 27))
                mstore(add(p, 0x40), calldataload(add(src, 0x80)))
                mstore(add(p, 0x60), s)
                mstore(0x00, 0)
                if staticcall(gas(), 0x01, p, 0x80, 0x00, 0x20) { signer := mload(0x00) }
            }
        }
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
        uint256 out;
        {
            uint256 buf;
            assembly ("memory-safe") {
                buf := mload(0x40)
                mstore(0x40, add(buf, add(0x80, mul(stride, 4))))
                for { let k := 0 } lt(k, 4) { k := add(k, 1) } {
                    mstore(add(buf, mul(k, 0x20)), add(0x80, mul(stride, k)))
                    mstore(add(buf, add(0x80, mul(stride, k))), n)
                }
            }
            out = buf + 0xa0;
        }
        for (uint256 i; i < n;) {
            uint256 id;
            uint256 qty;
            uint256 price;
            uint256 lock;
            assembly ("memory-safe") {
                let src := add(fills.offset, shl(7, i))
                id := calldataload(src)
                qty := calldataload(add(src, 0x20))
                price := calldataload(add(src, 0x40))
                lock := calldataload(add(src, 0x60))
            }
            uint256 energy = _energy(meter, id, qty);
            (uint256 amount, uint256 penalty) = _pay(meter, run, id, qty, price, lock, energy);
            assembly ("memory-safe") {
                let at := add(out, shl(5, i))
                mstore(at, id)
                mstore(add(at, stride), energy)
                mstore(add(at, add(stride, stride)), amount)
                mstore(add(at, mul(stride, 3)), penalty)
            }
            unchecked {
                ++i;
            }
        }
        bytes32 topic = FillsSettled.selector;
        uint64 interval = meter.interval;
        assembly ("memory-safe") {
            log2(sub(out, 0xa0), add(0x80, mul(stride, 4)), topic, interval)
        }
    }

    /// @dev {SettlementMath} for one fill; books the chunk's totals and credits the owner.
    /// Offer: amount received and imbalance charge; bid: amount paid and imbalance refund.
    /// The totals cannot overflow: a penalty or an energy is below 2^56 (qty < 2^32, prices
    /// < 2^24, all as committed), and a chunk has fewer than 2^32 fills.
    function _pay(
        Meter memory meter,
        Run memory run,
        uint256 id,
        uint256 qty,
        uint256 price,
        uint256 lock,
        uint256 energy
    ) private returns (uint256 amount, uint256 penalty) {
        uint256 credit;
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
        _settleAccount(meter, id, lock, credit);
    }

    /// @dev The energy allotted to fill `id` of `qty`: from the owner's reading in calldata,
    /// else its reading submitted on chain, else the worst case (an offer delivered 0, a bid
    /// used all); with `meter.complete` a non-zero fill without any reading reverts. An owner's
    /// reading is allotted to its fills on one side in fill order (offers use the export, bids
    /// the import).
    function _energy(Meter memory meter, uint256 id, uint256 qty) private view returns (uint256 energy) {
        uint256 isBid = (id >> 191) & 1;
        // Memory address of what is left of the owner's reading on this side, if it has one.
        // slither-disable-next-line uninitialized-local
        uint256 slot;
        assembly ("memory-safe") {
            let owner := and(shr(31, id), 0xffffffffffffffffffffffffffffffffffffffff)
            let j := mload(add(meter, _M_J))
            // Offers come first; the walk starts over at the first bid.
            if gt(isBid, mload(add(meter, _M_BID_SIDE))) {
                mstore(add(meter, _M_BID_SIDE), 1)
                j := 0
            }
            // Moves the walk over the (ascending) readings to `owner`'s, if it has one.
            let who := mload(add(meter, _M_WHO))
            let m := mload(add(meter, _M_M))
            for {} lt(j, m) { j := add(j, 1) } {
                let w := add(who, shl(5, j))
                let at := mload(w)
                if iszero(lt(at, owner)) {
                    if eq(at, owner) { slot := add(w, mul(add(isBid, 1), mload(add(meter, _M_STRIDE)))) }
                    break
                }
            }
            mstore(add(meter, _M_J), j)
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
            return energy;
        }
        return _submittedEnergy(meter, address(uint160(id >> 31)), isBid == 1, qty);
    }

    /// @dev {_energy} for an owner without a reading in calldata: its reading submitted on
    /// chain, else the worst case (or a revert, see there).
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

    /// @dev `locked -= lock; free += credit` in one read and one write of the owner's account
    /// slot (`accounts[owner]`, the owner being bits 31-190 of `id`).
    function _settleAccount(Meter memory meter, uint256 id, uint256 lock, uint256 credit) private {
        uint256 slot;
        uint256 word;
        assembly ("memory-safe") {
            mstore(0x00, and(shr(31, id), 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(0x20, mload(add(meter, _M_ACCOUNTS)))
            slot := keccak256(0x00, 0x40)
            word := sload(slot)
        }
        uint256 free = (word & _U96) + credit;
        uint256 locked = ((word >> 96) & _U96) - lock;
        if (free > _U96) revert IEnergyMarket.MarketBalanceOverflow(address(uint160(id >> 31)), free);
        word = (word & ~_LOW_MASK) | (locked << 96) | free;
        assembly ("memory-safe") {
            sstore(slot, word)
        }
    }
}

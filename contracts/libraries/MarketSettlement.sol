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


    /// @dev The fill walk's state: the chunk's readings (an event buffer, see {_verifyReadings}),
    /// the walk's position in them, and the owner group whose on-chain reading is loaded.
    struct Meter {
        uint256 who; // memory address of the participants array's first element
        uint256 exportLeft; // ... of the exported array's (Wh left to allot)
        uint256 importLeft; // ... of the imported array's
        uint256 m;
        uint256 j;
        uint64 interval;
        bool complete; // every owner with a non-zero fill must have a reading
        address sOwner;
        bool sBid;
        bool sHas;
        bool bidSide; // offers come first: false until the first bid
        uint256 sLeft;
        uint256 out; // memory address of FillsSettled's first order id
        uint256 outStride; // bytes between its arrays
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
        (meter.who, meter.exportLeft, meter.importLeft, meter.m) =
            (buf + 0x80, buf + 0x80 + stride, buf + 0x80 + 2 * stride, m);
        address previous;
        for (uint256 j; j < m; ++j) {
            (address participant, uint256 at, uint256 exported, uint256 imported) = _readingAt(readings, j);
            if (at != interval) revert IEnergyMarket.MarketReadingWrongInterval(j, uint64(at));
            if (participant <= previous) revert IEnergyMarket.MarketReadingsNotAscending(j, participant);
            previous = participant;
            address signer = _recover(domainSeparator, readings, j);
            if (signer != participant) revert IEnergyMarket.MarketReadingBadSignature(j, participant, signer);
            _keep(meter, j, participant, exported, imported);
        }
        if (m > 0) {
            bytes32 topic = MeterReadingsAccepted.selector;
            assembly ("memory-safe") {
                log2(buf, add(0x60, mul(stride, 3)), topic, interval)
            }
        }
    }

    /// @dev Writes reading `j` into the event buffer `meter` points at.
    function _keep(Meter memory meter, uint256 j, address participant, uint256 exported, uint256 imported)
        private
        pure
    {
        uint256 o = j * 0x20;
        (uint256 w, uint256 e, uint256 i) = (meter.who + o, meter.exportLeft + o, meter.importLeft + o);
        assembly ("memory-safe") {
            mstore(w, participant)
            mstore(e, exported)
            mstore(i, imported)
        }
    }

    /// @dev Reading `j`'s fields, each checked to fit its ABI type (as the ABI decoder would).
    function _readingAt(bytes calldata readings, uint256 j)
        private
        pure
        returns (address participant, uint256 at, uint256 exported, uint256 imported)
    {
        uint256 p;
        bool dirty;
        assembly ("memory-safe") {
            let src := add(readings.offset, mul(j, 0xc0))
            p := calldataload(src)
            at := calldataload(add(src, 0x20))
            exported := calldataload(add(src, 0x40))
            imported := calldataload(add(src, 0x60))
            dirty := or(shr(160, p), shr(64, or(at, or(exported, imported))))
        }
        if (dirty) revert();
        participant = address(uint160(p));
    }

    /// @dev Who signed reading `j` (zero if the signature is malformed or has a high `s`, as
    /// OpenZeppelin's ECDSA.tryRecover): its EIP-712 digest and EIP-2098 compact signature go
    /// straight to the ecrecover precompile.
    function _recover(bytes32 domainSeparator, bytes calldata readings, uint256 j) private view returns (address signer) {
        bytes32 typeHash = _METER_TYPEHASH;
        assembly ("memory-safe") {
            let src := add(readings.offset, mul(j, 0xc0))
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
    function _settleChunk(
        mapping(address => Account) storage accounts,
        mapping(address => uint256) storage submitted,
        bytes calldata fills,
        Meter memory meter,
        Run memory run
    ) private {
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
        (meter.out, meter.outStride) = (buf + 0xa0, stride);
        for (uint256 i; i < n; ++i) {
            _settleOne(accounts, submitted, fills, i, meter, run);
        }
        bytes32 topic = FillsSettled.selector;
        uint64 interval = meter.interval;
        assembly ("memory-safe") {
            log2(buf, add(0x80, mul(stride, 4)), topic, interval)
        }
    }

    /// @dev Settles fill `i` with {SettlementMath}, credits its owner and writes its order id,
    /// energy, amount and penalty into FillsSettled's arrays.
    function _settleOne(
        mapping(address => Account) storage accounts,
        mapping(address => uint256) storage submitted,
        bytes calldata fills,
        uint256 i,
        Meter memory meter,
        Run memory run
    ) private {
        (uint256 id, uint256 qty, uint256 price, uint256 lock) = _fillAt(fills, i);
        bool isBid = id & _BID_BIT != 0;
        if (isBid && !meter.bidSide) {
            meter.bidSide = true;
            meter.j = 0;
        }
        uint256 energy = _energy(submitted, qty, address(uint160(id >> 31)), isBid, meter);
        (uint256 amount, uint256 penalty) = _pay(accounts, run, id, qty, price, lock, energy);
        (uint256 at, uint256 stride) = (meter.out + i * 0x20, meter.outStride);
        assembly ("memory-safe") {
            mstore(at, id)
            mstore(add(at, stride), energy)
            mstore(add(at, mul(stride, 2)), amount)
            mstore(add(at, mul(stride, 3)), penalty)
        }
    }

    /// @dev {SettlementMath} for one fill; books the chunk's totals and credits the owner.
    /// Offer: amount received and imbalance charge; bid: amount paid and imbalance refund.
    function _pay(
        mapping(address => Account) storage accounts,
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
            run.refunds += penalty;
        } else {
            (amount, penalty, credit) = SettlementMath.offer(lock, qty, price, energy, run.imbalanceBuy);
            run.charges += penalty;
            run.deliveredWh += energy;
        }
        _settleAccount(accounts, address(uint160(id >> 31)), lock, credit);
    }

    /// @dev Fill `i`: order id, qty, price, lock (checked against the commit by the market).
    function _fillAt(bytes calldata fills, uint256 i)
        private
        pure
        returns (uint256 id, uint256 qty, uint256 price, uint256 lock)
    {
        assembly ("memory-safe") {
            let src := add(fills.offset, mul(i, 0x80))
            id := calldataload(src)
            qty := calldataload(add(src, 0x20))
            price := calldataload(add(src, 0x40))
            lock := calldataload(add(src, 0x60))
        }
    }

    /// @dev The energy allotted to a fill of `qty`: from the owner's reading in calldata, else
    /// its reading submitted on chain, else the worst case (an offer delivered 0, a bid used
    /// all); with `meter.complete` a non-zero fill without any reading reverts. An owner's
    /// reading is allotted to its fills on one side in fill order (offers use the export,
    /// bids the import).
    function _energy(
        mapping(address => uint256) storage submitted,
        uint256 qty,
        address owner,
        bool isBid,
        Meter memory meter
    ) private view returns (uint256 energy) {
        // Moves the walk over the (ascending) readings to `owner`'s, if it has one.
        (uint256 j, uint256 m, uint256 who) = (meter.j, meter.m, meter.who);
        address at;
        while (j < m) {
            assembly ("memory-safe") {
                at := mload(add(who, mul(j, 0x20)))
            }
            if (at >= owner) break;
            ++j;
        }
        meter.j = j;
        if (j < m && at == owner) {
            uint256 slot = (isBid ? meter.importLeft : meter.exportLeft) + j * 0x20;
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
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {IEnergyMarket} from "./interfaces/IEnergyMarket.sol";
import {SettlementMath} from "./libraries/SettlementMath.sol";

/// @title EnergyMarket — GridSwarm's peer-to-peer energy market of record
/// @notice Participants keep tokens in internal balances; a bid locks `qty * limit price`, an
/// offer locks `qty * collateralRate`. The operator runs intervals, commits one fill per order
/// and settles from meter readings signed by the participants; it can never move funds without
/// that evidence, and if it stops, every owner recovers its own locks after the deadline.
/// See {SettlementMath} for the settlement rule with a worked example.
///
/// Gas design (see docs/contracts.md): an order lives in one of `ORDER_SLOTS` storage slots of
/// its owner, reused round-robin, so posting rewrites a used slot instead of creating one; fills
/// live in events and in a hash chain, and settlement re-reads them from calldata; fills are
/// committed in ascending order id, which proves that no order is filled twice without a
/// per-order write.
///
/// Reentrancy: the token is fixed at deployment, and every function makes its one token call
/// (if any) last, after all its state changes and events.
contract EnergyMarket is IEnergyMarket, AccessControl, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Runs intervals, commits fills and submits settlements.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice May pause new orders (never anything else).
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    /// @notice How many orders one account can have in flight (posted and not yet settled,
    /// cancelled or recovered).
    uint256 public constant ORDER_SLOTS = 16;
    /// @notice How many intervals can be between gate closure and settlement at once.
    uint256 public constant CLEARING_SLOTS = 16;
    /// @notice Upper bound of the clear and settle timeouts, so no lock is ever held for long.
    uint32 public constant MAX_TIMEOUT = 7 days;

    bytes32 private constant _METER_TYPEHASH =
        keccak256("MeterReading(address participant,uint64 interval,uint64 exportedWh,uint64 importedWh)");

    uint256 private constant _NONCE_MASK = (1 << 31) - 1;
    uint256 private constant _BID_BIT = 1 << 191;
    uint256 private constant _LOW_MASK = (1 << 192) - 1;

    // An order is one storage word in one of its owner's ORDER_SLOTS slots (slot nonce % 16):
    // bits 0-63 interval, 64-95 nonce, 96-127 qty (Wh), 128-151 limit price, 152-215 lock,
    // 216 live, 217 bid. `live` stays set after settlement: an order is dead once its interval
    // is Settled, which posting checks before it reuses the slot.
    uint256 private constant _O_LIVE = 1 << 216;
    uint256 private constant _O_BID = 1 << 217;
    uint256 private constant _O_KEY = ((1 << 96) - 1) | _O_LIVE | _O_BID;
    /// @dev What registration writes into every slot: nonce 2^32 - 1 matches no order id.
    uint256 private constant _O_PLACEHOLDER = uint256(type(uint32).max) << 64;
    uint256 private constant _U24 = (1 << 24) - 1;
    uint256 private constant _U32 = (1 << 32) - 1;
    uint256 private constant _U64 = (1 << 64) - 1;
    uint256 private constant _U96 = (1 << 96) - 1;

    /// @dev One storage slot: balances, zone, registration and the order counter.
    struct Account {
        uint96 free;
        uint96 locked;
        uint16 zone;
        bool registered;
        uint32 nonce;
    }

    /// @dev One storage slot per interval for everything posting touches.
    struct Interval {
        IntervalStatus status;
        uint24 collateralRate;
        uint32 liveOrders;
        uint32 committed;
        uint40 clearBy;
        uint40 settleBy;
    }

    /// @dev Running state of committing an interval's fills, kept until it settles or lapses in
    /// one of CLEARING_SLOTS slots (slot interval % CLEARING_SLOTS), which later intervals reuse.
    /// `lastId` is the low 192 bits of the last committed order id (the interval is the top 64).
    struct Clearing {
        uint64 interval;
        uint192 lastId;
        uint48 boughtWh;
        uint48 soldWh;
        uint80 buyValue;
        uint80 sellValue;
        bytes32 fillsHash;
    }

    /// @dev {Clearing} unpacked for the commit loop.
    struct Tally {
        uint256 lastId;
        uint256 boughtWh;
        uint256 soldWh;
        uint256 buyValue;
        uint256 sellValue;
        bytes32 fillsHash;
    }

    /// @dev Parameters packed with the pause flag so posting reads one slot.
    struct Params {
        uint24 collateralRate;
        uint32 clearTimeout;
        uint32 settleTimeout;
        bool paused;
        address feeRecipient;
    }

    IERC20 private immutable _token;
    Params private _params;
    bytes32 private _coordinatorKey;
    mapping(address account => Account) private _accounts;
    mapping(address account => bytes32) private _keys;
    // Written through storage references (`slots[index] = ...`), which Slither does not follow.
    // slither-disable-next-line uninitialized-state
    mapping(address account => uint256[ORDER_SLOTS]) private _orders;
    mapping(uint64 interval => Interval) private _intervals;
    Clearing[CLEARING_SLOTS] private _clearings;

    constructor(
        IERC20 token_,
        address admin,
        address operator,
        uint24 collateralRate,
        uint32 clearTimeout,
        uint32 settleTimeout
    ) EIP712("GridSwarm EnergyMarket", "1") {
        if (address(token_) == address(0) || admin == address(0) || operator == address(0)) revert MarketZeroAddress();
        _token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
        _setParameters(collateralRate, clearTimeout, settleTimeout, admin);
    }

    // ================================================================ views

    /// @notice The settlement token.
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @notice A participant's free and locked internal balance, zone, registration, Ed25519 key
    /// and order counter (the nonce of its next order).
    function accountOf(address account)
        external
        view
        returns (uint256 free, uint256 locked, uint16 zone, bool registered, bytes32 ed25519Key, uint32 nonce)
    {
        Account memory a = _accounts[account];
        return (a.free, a.locked, a.zone, a.registered, _keys[account], a.nonce);
    }

    /// @notice The coordinator's Ed25519 public key.
    function coordinatorKey() external view returns (bytes32) {
        return _coordinatorKey;
    }

    /// @notice Current parameters.
    function parameters()
        external
        view
        returns (uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, bool paused, address feeRecipient)
    {
        Params memory p = _params;
        return (p.collateralRate, p.clearTimeout, p.settleTimeout, p.paused, p.feeRecipient);
    }

    /// @notice An interval's lifecycle state.
    function intervalOf(uint64 interval)
        external
        view
        returns (IntervalStatus status, uint32 liveOrders, uint32 committed, uint40 clearBy, uint40 settleBy)
    {
        Interval memory iv = _intervals[interval];
        return (iv.status, iv.liveOrders, iv.committed, iv.clearBy, iv.settleBy);
    }

    /// @notice An interval's committed fill totals and fill hash chain (zero once its clearing
    /// slot is reused by a later interval; {IntervalCleared} keeps them).
    function totalsOf(uint64 interval)
        external
        view
        returns (uint64 boughtWh, uint64 soldWh, uint128 buyValue, uint128 sellValue, bytes32 fillsHash)
    {
        Clearing memory c = _clearings[interval % CLEARING_SLOTS];
        if (c.interval != interval) return (0, 0, 0, 0, bytes32(0));
        return (c.boughtWh, c.soldWh, c.buyValue, c.sellValue, c.fillsHash);
    }

    /// @notice An order's terms and whether it is live (posted and not yet settled, cancelled or
    /// recovered). Unknown ids and reused slots give a zero owner.
    function orderOf(uint256 orderId)
        external
        view
        returns (address owner, Side side, uint32 qty, uint24 price, uint64 lock, bool live)
    {
        (uint64 interval, bool bid, address who, uint32 nonce) = decodeOrderId(orderId);
        uint256 word = _orders[who][nonce % ORDER_SLOTS];
        if (word & (_O_KEY & ~_O_LIVE) != _orderKey(interval, bid, nonce) & ~_O_LIVE || word == 0) {
            return (address(0), Side.Bid, 0, 0, 0, false);
        }
        live = word & _O_LIVE != 0 && _intervals[interval].status != IntervalStatus.Settled;
        qty = uint32(word >> 96);
        price = uint24(word >> 128);
        lock = uint64(word >> 152);
        return (who, bid ? Side.Bid : Side.Offer, qty, price, lock, live);
    }

    /// @notice The EIP-712 digest a participant signs for a meter reading.
    function meterReadingDigest(MeterReading memory r) external view returns (bytes32) {
        return _meterDigest(r);
    }

    /// @notice Whether an interval has lapsed (its operator missed a deadline).
    function lapsed(uint64 interval) external view returns (bool) {
        return _lapsed(_intervals[interval]);
    }

    /// @notice The id of `owner`'s order number `nonce` (see {IEnergyMarket} for the layout).
    function orderIdOf(uint64 interval, Side side, address owner, uint32 nonce) public pure returns (uint256) {
        return _orderId(interval, side == Side.Bid, owner, nonce);
    }

    /// @notice Splits an order id into its parts.
    function decodeOrderId(uint256 orderId)
        public
        pure
        returns (uint64 interval, bool bid, address owner, uint32 nonce)
    {
        interval = uint64(orderId >> 192);
        bid = orderId & _BID_BIT != 0;
        owner = address(uint160(orderId >> 31));
        nonce = uint32(orderId & _NONCE_MASK);
    }

    /// @notice The interval an order id belongs to.
    function intervalOfOrder(uint256 orderId) external pure returns (uint64) {
        return uint64(orderId >> 192);
    }

    // ================================================================ admin

    /// @inheritdoc IEnergyMarket
    function registerParticipant(address account, bytes32 ed25519Key, uint16 zone)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        if (account == address(0)) revert MarketZeroAddress();
        if (ed25519Key == bytes32(0)) revert MarketInvalidKey();
        Account storage a = _accounts[account];
        if (a.registered) revert MarketParticipantExists(account);
        a.registered = true;
        a.zone = zone;
        _keys[account] = ed25519Key;
        _allocateOrderSlots(account);
        emit ParticipantRegistered(account, ed25519Key, zone);
    }

    /// @inheritdoc IEnergyMarket
    function rotateKey(bytes32 ed25519Key) external {
        if (!_accounts[msg.sender].registered) revert MarketNotParticipant(msg.sender);
        if (ed25519Key == bytes32(0)) revert MarketInvalidKey();
        _keys[msg.sender] = ed25519Key;
        emit ParticipantKeyRotated(msg.sender, ed25519Key);
    }

    /// @inheritdoc IEnergyMarket
    function setZone(address account, uint16 zone) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Account storage a = _accounts[account];
        if (!a.registered) revert MarketNotParticipant(account);
        a.zone = zone;
        emit ParticipantZoneChanged(account, zone);
    }

    /// @inheritdoc IEnergyMarket
    function removeParticipant(address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Account storage a = _accounts[account];
        if (!a.registered) revert MarketNotParticipant(account);
        a.registered = false;
        emit ParticipantRemoved(account);
    }

    /// @inheritdoc IEnergyMarket
    function setCoordinatorKey(bytes32 ed25519Key) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (ed25519Key == bytes32(0)) revert MarketInvalidKey();
        _coordinatorKey = ed25519Key;
        emit CoordinatorKeySet(ed25519Key);
    }

    /// @inheritdoc IEnergyMarket
    function setParameters(uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, address feeRecipient)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _setParameters(collateralRate, clearTimeout, settleTimeout, feeRecipient);
    }

    /// @inheritdoc IEnergyMarket
    function setPaused(bool paused) external onlyRole(PAUSER_ROLE) {
        _params.paused = paused;
        emit PausedSet(paused);
    }

    // ================================================================ balances

    /// @inheritdoc IEnergyMarket
    function deposit(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        Account storage a = _accounts[msg.sender];
        if (!a.registered) revert MarketNotParticipant(msg.sender);
        a.free = _toU96(a.free + amount);
        emit Deposited(msg.sender, amount);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IEnergyMarket
    function withdraw(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        Account storage a = _accounts[msg.sender];
        uint256 free = a.free;
        if (free < amount) revert MarketInsufficientBalance(msg.sender, amount, free);
        // Cannot underflow: checked just above.
        unchecked {
            a.free = uint96(free - amount);
        }
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ================================================================ intervals and orders

    /// @inheritdoc IEnergyMarket
    function openInterval(uint64 interval) external onlyRole(OPERATOR_ROLE) {
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.None) revert MarketIntervalExists(interval);
        Params memory p = _params;
        uint40 clearBy = uint40(block.timestamp + p.clearTimeout);
        iv.status = IntervalStatus.Open;
        iv.collateralRate = p.collateralRate;
        iv.clearBy = clearBy;
        emit IntervalOpened(interval, clearBy, p.collateralRate);
    }

    /// @inheritdoc IEnergyMarket
    function closeInterval(uint64 interval) external onlyRole(OPERATOR_ROLE) {
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.Open) revert MarketIntervalNotOpen(interval);
        if (block.timestamp > iv.clearBy) revert MarketDeadlinePassed(interval, iv.clearBy);
        iv.status = IntervalStatus.Closed;
        emit IntervalClosed(interval, iv.liveOrders);
    }

    /// @inheritdoc IEnergyMarket
    function postOrder(uint64 interval, Side side, uint32 qty, uint24 price) external returns (uint256 orderId) {
        if (_params.paused) revert MarketPaused();
        if (qty == 0) revert MarketZeroQuantity();
        if (price == 0) revert MarketZeroPrice();
        bool bid = side == Side.Bid;
        uint256 lock = _admitOrder(interval, bid, qty, price);
        (uint256 pull, uint32 nonce, uint16 zone) = _lockFunds(lock);
        orderId = _orderId(interval, bid, msg.sender, nonce);
        _storeOrder(orderId, qty, price, lock);
        emit OrderPosted(interval, orderId, msg.sender, side, qty, price, zone, lock);
        if (pull > 0) {
            emit Deposited(msg.sender, pull);
            _token.safeTransferFrom(msg.sender, address(this), pull);
        }
    }

    /// @inheritdoc IEnergyMarket
    function cancelOrder(uint256 orderId) external {
        (uint256[ORDER_SLOTS] storage slots, uint256 index, uint64 interval, address owner) = _liveOrder(orderId);
        if (owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender);
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.Open) revert MarketIntervalNotOpen(interval);
        uint256 word = slots[index];
        uint256 lock = (word >> 152) & _U64;
        // Cannot underflow: the order was counted when posted and is still live.
        unchecked {
            iv.liveOrders -= 1;
        }
        slots[index] = word & ~_O_LIVE;
        _release(msg.sender, lock);
        emit OrderCancelled(interval, orderId, msg.sender, lock);
    }

    /// @inheritdoc IEnergyMarket
    function commitFills(uint64 interval, Fill[] calldata fills, bool last) external onlyRole(OPERATOR_ROLE) {
        Interval memory iv = _intervals[interval];
        if (iv.status != IntervalStatus.Closed) revert MarketIntervalNotClosed(interval);
        if (block.timestamp > iv.clearBy) revert MarketDeadlinePassed(interval, iv.clearBy);

        Clearing storage stored = _clearings[interval % CLEARING_SLOTS];
        Tally memory t = _loadTally(stored, interval);
        uint256 n = fills.length;
        for (uint256 i; i < n; ++i) {
            _commitOne(interval, fills[i], t);
        }
        _storeTally(stored, interval, t);
        iv.committed += uint32(n);
        emit FillsCommitted(interval, fills);

        if (last) {
            if (iv.committed != iv.liveOrders) revert MarketFillsIncomplete(interval, iv.committed, iv.liveOrders);
            if (t.boughtWh != t.soldWh) revert MarketFillsUnbalanced(interval, uint64(t.boughtWh), uint64(t.soldWh));
            if (t.buyValue < t.sellValue) revert MarketFillsValueDeficit(interval, t.buyValue, t.sellValue);
            iv.status = IntervalStatus.Cleared;
            iv.settleBy = uint40(block.timestamp + _params.settleTimeout);
            emit IntervalCleared(
                interval,
                iv.committed,
                uint64(t.boughtWh),
                uint64(t.soldWh),
                uint128(t.buyValue),
                uint128(t.sellValue),
                iv.settleBy,
                t.fillsHash
            );
        }
        _intervals[interval] = iv;
    }

    /// @inheritdoc IEnergyMarket
    function settle(uint64 interval, SettlementFill[] calldata fills, SignedReading[] calldata readings)
        external
        onlyRole(OPERATOR_ROLE)
    {
        Interval memory iv = _intervals[interval];
        if (iv.status == IntervalStatus.Settled) revert MarketIntervalAlreadySettled(interval);
        if (iv.status != IntervalStatus.Cleared) revert MarketIntervalNotCleared(interval);
        if (block.timestamp > iv.settleBy) revert MarketDeadlinePassed(interval, iv.settleBy);

        (address[] memory who, uint256[] memory exportLeft) = _verifyReadings(interval, readings);
        (SettlementMath.Input memory input, uint256[] memory orderIds, uint256[] memory locks) =
            _readFills(interval, iv, fills, who, exportLeft);
        SettlementMath.Outcome memory out = SettlementMath.settle(input);

        // Effects: every lock is released; payments, forfeits and compensation are credited.
        _payOut(orderIds, locks, input.nOffers, out);
        _logArrays(FillsSettled.selector, interval, _arrays(orderIds, out.delivered, out.amount, out.penalty));
        if (out.surplus > 0) {
            Account storage fee = _accounts[_params.feeRecipient];
            fee.free = _toU96(fee.free + out.surplus);
        }
        _intervals[interval].status = IntervalStatus.Settled;
        emit IntervalSettled(interval, uint64(out.deliveredWh), uint64(out.soldWh - out.deliveredWh), out.surplus);
    }

    /// @inheritdoc IEnergyMarket
    function recover(uint256[] calldata orderIds) external {
        for (uint256 i; i < orderIds.length; ++i) {
            uint256 orderId = orderIds[i];
            (uint256[ORDER_SLOTS] storage slots, uint256 index, uint64 interval, address owner) = _liveOrder(orderId);
            if (owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender);
            if (!_lapsed(_intervals[interval])) revert MarketIntervalNotLapsed(interval);
            uint256 word = slots[index];
            uint256 lock = (word >> 152) & _U64;
            slots[index] = word & ~_O_LIVE;
            _release(msg.sender, lock);
            emit OrderRecovered(interval, orderId, msg.sender, lock);
        }
    }

    // ================================================================ internals

    /// @dev Checks that `interval` takes orders, counts one more live order, and returns the
    /// order's lock: `qty * price` for a bid, `qty * collateralRate` for an offer.
    function _admitOrder(uint64 interval, bool bid, uint32 qty, uint24 price) private returns (uint256) {
        Interval storage iv = _intervals[interval];
        (IntervalStatus status, uint40 clearBy, uint32 live, uint24 rate) =
            (iv.status, iv.clearBy, iv.liveOrders, iv.collateralRate);
        if (status != IntervalStatus.Open || block.timestamp > clearBy) revert MarketIntervalNotOpen(interval);
        // Cannot overflow: every live order holds one of its owner's ORDER_SLOTS slots, and
        // there are far fewer than 2^28 accounts.
        unchecked {
            iv.liveOrders = live + 1;
        }
        // qty < 2^32 and price, rate < 2^24: the lock is below 2^56.
        return uint256(qty) * (bid ? price : rate);
    }

    /// @dev Moves `lock` from the caller's free balance (topped up by `pull` from its wallet) to
    /// its locked balance and takes its next order nonce.
    function _lockFunds(uint256 lock) private returns (uint256 pull, uint32 nonce, uint16 zone) {
        Account memory a = _accounts[msg.sender];
        if (!a.registered) revert MarketNotParticipant(msg.sender);
        nonce = a.nonce;
        if (nonce > _NONCE_MASK) revert MarketInvalidParameter();
        pull = lock > a.free ? lock - a.free : 0;
        // Cannot overflow or underflow: free + pull >= lock; lock < 2^56 and an account holds at
        // most ORDER_SLOTS locks, so locked < 2^60; nonce <= _NONCE_MASK < 2^32 - 1.
        unchecked {
            a.free = uint96(a.free + pull - lock);
            a.locked = uint96(a.locked + lock);
            a.nonce = nonce + 1;
        }
        _accounts[msg.sender] = a;
        zone = a.zone;
    }

    /// @dev Checks one fill against its order and folds it into the running tally.
    function _commitOne(uint64 interval, Fill calldata f, Tally memory t) private view {
        uint256 id = f.orderId;
        if (id >> 192 != interval) revert MarketOrderNotInInterval(id, interval);
        if (id <= t.lastId) revert MarketFillsNotAscending(id, t.lastId);
        t.lastId = id;
        bool bid = id & _BID_BIT != 0;
        uint256 word = _orders[address(uint160(id >> 31))][(id & _NONCE_MASK) % ORDER_SLOTS];
        // A live order of a Closed interval is one of the interval's `liveOrders`: its slot
        // cannot be reused before the interval settles or lapses.
        if (word & _O_KEY != _orderKey(interval, bid, uint32(id & _NONCE_MASK))) revert MarketOrderNotFound(id);
        (uint256 qty, uint256 price) = (f.qty, f.price);
        uint256 orderQty = (word >> 96) & _U32;
        uint256 limit = (word >> 128) & _U24;
        if (qty > orderQty) revert MarketFillExceedsOrder(id, qty, orderQty);
        if (price > _U32 || (qty > 0 && (bid ? price > limit : price < limit))) {
            revert MarketFillPriceOutsideLimit(id, price, limit);
        }
        // Cannot overflow: qty, price < 2^32, so each sum grows by less than 2^64 per fill.
        unchecked {
            if (bid) {
                t.boughtWh += qty;
                t.buyValue += qty * price;
            } else {
                t.soldWh += qty;
                t.sellValue += qty * price;
            }
        }
        t.fillsHash = _link(t.fillsHash, id, qty, price, (word >> 152) & _U64);
    }

    /// @dev The running tally of an interval's committed fills, unpacked; empty on its first
    /// commit, when the interval takes its clearing slot over (if the slot's previous interval no
    /// longer needs it).
    function _loadTally(Clearing storage c, uint64 interval) private view returns (Tally memory t) {
        Clearing memory m = c;
        if (m.interval != interval) {
            // A slot never used reads as interval 0 with nothing committed. (An interval that
            // cleared with no fills looks the same; it holds no locks, so losing its slot costs
            // nothing.)
            bool unused = m.interval == 0 && m.lastId == 0 && m.fillsHash == bytes32(0);
            Interval memory previous = _intervals[m.interval];
            if (!unused && previous.status != IntervalStatus.Settled && !_lapsed(previous)) {
                revert MarketClearingSlotBusy(interval, m.interval);
            }
            return t;
        }
        t.lastId = m.lastId == 0 ? 0 : (uint256(interval) << 192) | m.lastId;
        (t.boughtWh, t.soldWh, t.buyValue, t.sellValue, t.fillsHash) =
            (m.boughtWh, m.soldWh, m.buyValue, m.sellValue, m.fillsHash);
    }

    function _storeTally(Clearing storage c, uint64 interval, Tally memory t) private {
        if (t.boughtWh > type(uint48).max || t.soldWh > type(uint48).max) revert MarketInvalidParameter();
        if (t.buyValue > type(uint80).max || t.sellValue > type(uint80).max) revert MarketInvalidParameter();
        c.interval = interval;
        c.lastId = uint192(t.lastId & _LOW_MASK);
        c.boughtWh = uint48(t.boughtWh);
        c.soldWh = uint48(t.soldWh);
        c.buyValue = uint80(t.buyValue);
        c.sellValue = uint80(t.sellValue);
        c.fillsHash = t.fillsHash;
    }

    /// @dev Verifies signed readings (ascending participants, this interval, right signer) and
    /// returns who signed and their exports.
    function _verifyReadings(uint64 interval, SignedReading[] calldata readings)
        private
        returns (address[] memory who, uint256[] memory exported)
    {
        uint256 m = readings.length;
        who = new address[](m);
        exported = new uint256[](m);
        uint256[] memory imported = new uint256[](m);
        address previous;
        for (uint256 j; j < m; ++j) {
            SignedReading calldata sr = readings[j];
            MeterReading memory r = sr.reading;
            address participant = r.participant;
            if (r.interval != interval) revert MarketReadingWrongInterval(j, r.interval);
            if (participant <= previous) revert MarketReadingsNotAscending(j, participant);
            previous = participant;
            // The third value (the error's argument) adds nothing: any error rejects the reading.
            // slither-disable-next-line unused-return
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(_meterDigest(r), sr.r, sr.vs);
            if (err != ECDSA.RecoverError.NoError || signer != participant) {
                revert MarketReadingBadSignature(j, participant, signer);
            }
            who[j] = participant;
            exported[j] = r.exportedWh;
            imported[j] = r.importedWh;
        }
        if (m > 0) {
            uint256[] memory participants;
            // address[] and uint256[] share their memory layout (one word per element).
            assembly ("memory-safe") {
                participants := who
            }
            uint256[][] memory arrays = new uint256[][](3);
            (arrays[0], arrays[1], arrays[2]) = (participants, exported, imported);
            _logArrays(MeterReadingsAccepted.selector, interval, arrays);
        }
    }

    /// @dev Rebuilds the fill hash chain from `fills`, checks it against the committed one, and
    /// lays the fills out for {SettlementMath}.
    function _readFills(
        uint64 interval,
        Interval memory iv,
        SettlementFill[] calldata fills,
        address[] memory who,
        uint256[] memory exportLeft
    ) private view returns (SettlementMath.Input memory input, uint256[] memory orderIds, uint256[] memory locks) {
        uint256 n = fills.length;
        bytes32 h;
        (orderIds, input.qty, input.price, locks, h) = _copyFills(fills);
        // The interval's clearing slot is still its own: a later interval may take it over only
        // once this one has settled or lapsed, and settle() has checked neither happened.
        bytes32 expected = _clearings[interval % CLEARING_SLOTS].fillsHash;
        if (h != expected || n != iv.committed) revert MarketFillsMismatch(interval, expected, h);
        input.rate = iv.collateralRate;
        input.nOffers = _firstBid(fills);
        (input.delivered, input.metered) = _meter(orderIds, input.qty, input.nOffers, who, exportLeft);
    }

    /// @dev Copies the fills to memory and hashes them into the chain commit built: link i is
    /// `keccak256(abi.encode(link i-1, orderId, qty, price, lock))`, as in {_link}. The fields are
    /// not range-checked here: the chain must match the committed one, which pins every value.
    function _copyFills(SettlementFill[] calldata fills)
        private
        pure
        returns (
            uint256[] memory orderIds,
            uint256[] memory qty,
            uint256[] memory price,
            uint256[] memory locks,
            bytes32 h
        )
    {
        uint256 n = fills.length;
        orderIds = new uint256[](n);
        qty = new uint256[](n);
        price = new uint256[](n);
        locks = new uint256[](n);
        // Reads each 4-word fill straight from calldata (the ABI decoder has checked that the
        // array lies within calldata) and hashes it in scratch memory past the free pointer.
        assembly ("memory-safe") {
            let scratch := mload(0x40)
            let src := fills.offset
            for { let o := 0x20 } lt(o, add(0x20, mul(n, 0x20))) { o := add(o, 0x20) } {
                mstore(scratch, h)
                calldatacopy(add(scratch, 0x20), src, 0x80)
                h := keccak256(scratch, 0xa0)
                mstore(add(orderIds, o), mload(add(scratch, 0x20)))
                mstore(add(qty, o), mload(add(scratch, 0x40)))
                mstore(add(price, o), mload(add(scratch, 0x60)))
                mstore(add(locks, o), mload(add(scratch, 0x80)))
                src := add(src, 0x80)
            }
        }
    }

    /// @dev Step 1 of the settlement rule: each seller's metered export, applied to its offers'
    /// fills in fill order and capped at each fill. Offers come first (their ids sort lower) and
    /// are grouped by owner, as are the readings, so one forward walk matches them.
    function _meter(
        uint256[] memory orderIds,
        uint256[] memory qty,
        uint256 nOffers,
        address[] memory who,
        uint256[] memory exportLeft
    ) private pure returns (uint256[] memory delivered, bool[] memory metered) {
        delivered = new uint256[](orderIds.length);
        metered = new bool[](orderIds.length);
        uint256 m = who.length;
        uint256 j = 0;
        for (uint256 i; i < nOffers; ++i) {
            address owner = address(uint160(orderIds[i] >> 31));
            while (j < m && who[j] < owner) ++j;
            if (j < m && who[j] == owner) {
                uint256 left = exportLeft[j];
                uint256 d = qty[i] < left ? qty[i] : left;
                exportLeft[j] = left - d;
                delivered[i] = d;
                metered[i] = true;
            }
        }
    }

    /// @dev Index of the first bid in `fills` (offers sort first); binary search. If the fills
    /// are not the committed ones the hash check rejects them whatever this returns.
    function _firstBid(SettlementFill[] calldata fills) private pure returns (uint256 lo) {
        uint256 hi = fills.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) >> 1;
            if (fills[mid].orderId & _BID_BIT != 0) hi = mid;
            else lo = mid + 1;
        }
    }

    /// @dev The live order `orderId` names (reverts if there is none): its owner's slots, the
    /// slot index, its interval and owner.
    function _liveOrder(uint256 orderId)
        private
        view
        returns (uint256[ORDER_SLOTS] storage slots, uint256 index, uint64 interval, address owner)
    {
        bool bid;
        uint32 nonce;
        (interval, bid, owner, nonce) = decodeOrderId(orderId);
        slots = _orders[owner];
        index = nonce % ORDER_SLOTS;
        if (slots[index] & _O_KEY != _orderKey(interval, bid, nonce)) revert MarketOrderNotFound(orderId);
    }

    /// @dev Writes the caller's order into slot `nonce % ORDER_SLOTS` once that slot is free.
    function _storeOrder(uint256 orderId, uint32 qty, uint24 price, uint256 lock) private {
        (uint64 interval, bool bid,, uint32 nonce) = decodeOrderId(orderId);
        uint256[ORDER_SLOTS] storage slots = _orders[msg.sender];
        uint256 index = nonce % ORDER_SLOTS;
        _checkSlotFree(slots[index], msg.sender);
        slots[index] = _orderKey(interval, bid, nonce) | (uint256(qty) << 96) | (uint256(price) << 128) | (lock << 152);
    }

    /// @dev Reverts unless the slot holds no live order, or one whose interval has settled.
    function _checkSlotFree(uint256 word, address owner) private view {
        if (word & _O_LIVE == 0) return;
        uint64 interval = uint64(word);
        if (_intervals[interval].status != IntervalStatus.Settled) {
            uint32 nonce = uint32(word >> 64);
            revert MarketTooManyOrders(owner, _orderId(interval, word & _O_BID != 0, owner, nonce));
        }
    }

    /// @dev Releases every settled fill's lock and credits its owner: `lock - forfeit + received`
    /// for an offer, `lock - paid + compensation` for a bid (never negative, see SettlementMath).
    function _payOut(
        uint256[] memory orderIds,
        uint256[] memory locks,
        uint256 nOffers,
        SettlementMath.Outcome memory out
    ) private {
        uint256[] memory amount = out.amount;
        uint256[] memory penalty = out.penalty;
        uint256 n = orderIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 lock = locks[i];
            uint256 credit = i < nOffers ? lock - penalty[i] + amount[i] : lock - amount[i] + penalty[i];
            _settleAccount(address(uint160(orderIds[i] >> 31)), lock, credit);
        }
    }

    /// @dev `locked -= lock; free += credit` in one read and one write of the account's slot.
    /// {Account} packs `free` into bits 0-95 and `locked` into bits 96-191 of its slot.
    function _settleAccount(address owner, uint256 lock, uint256 credit) private {
        Account storage a = _accounts[owner];
        uint256 word;
        assembly ("memory-safe") {
            word := sload(a.slot)
        }
        uint256 free = (word & _U96) + credit;
        uint256 locked = ((word >> 96) & _U96) - lock;
        if (free > _U96) revert MarketInvalidParameter();
        word = (word & ~_LOW_MASK) | (locked << 96) | free;
        assembly ("memory-safe") {
            sstore(a.slot, word)
        }
    }

    /// @dev Marks every order slot of `account` as used (a placeholder that matches no order id),
    /// so that posting always rewrites a used slot. Paid once, at registration.
    function _allocateOrderSlots(address account) private {
        uint256[ORDER_SLOTS] storage slots = _orders[account];
        for (uint256 i; i < ORDER_SLOTS; ++i) {
            if (slots[i] == 0) slots[i] = _O_PLACEHOLDER;
        }
    }

    /// @dev Unlocks `lock` back into the free balance.
    function _release(address owner, uint256 lock) private {
        Account memory a = _accounts[owner];
        a.locked -= uint96(lock);
        a.free = _toU96(a.free + lock);
        _accounts[owner] = a;
    }

    function _meterDigest(MeterReading memory r) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_METER_TYPEHASH, r.participant, r.interval, r.exportedWh, r.importedWh)));
    }

    /// @dev One link of the fill hash chain: keccak256(abi.encode(h, id, qty, price, lock)),
    /// hashed in scratch memory past the free pointer so a long chain allocates nothing.
    function _link(bytes32 h, uint256 id, uint256 qty, uint256 price, uint256 lock) private pure returns (bytes32 r) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, h)
            mstore(add(p, 0x20), id)
            mstore(add(p, 0x40), qty)
            mstore(add(p, 0x60), price)
            mstore(add(p, 0x80), lock)
            r := keccak256(p, 0xa0)
        }
    }

    function _arrays(uint256[] memory a, uint256[] memory b, uint256[] memory c, uint256[] memory d)
        private
        pure
        returns (uint256[][] memory arrays)
    {
        arrays = new uint256[][](4);
        (arrays[0], arrays[1], arrays[2], arrays[3]) = (a, b, c, d);
    }

    /// @dev Emits event `topic` with indexed `interval` and data `abi.encode(arrays[0], ...)`
    /// (every array a one-word-per-element array), copying with the identity precompile: the
    /// generic ABI encoder spends ~80 gas per element, this ~3.
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

    /// @dev The bits of a live order's word that its id determines.
    function _orderKey(uint64 interval, bool bid, uint32 nonce) private pure returns (uint256) {
        return uint256(interval) | (uint256(nonce) << 64) | _O_LIVE | (bid ? _O_BID : 0);
    }

    function _orderId(uint64 interval, bool bid, address owner, uint32 nonce) private pure returns (uint256) {
        return (uint256(interval) << 192) | (bid ? _BID_BIT : 0) | (uint256(uint160(owner)) << 31) | nonce;
    }

    /// @dev Whether the operator missed the deadline of the interval's current step. (Slither's
    /// strict-equality warning is about balances; these are enum states.)
    function _lapsed(Interval memory iv) private view returns (bool) {
        IntervalStatus status = iv.status;
        // slither-disable-next-line incorrect-equality
        if (status == IntervalStatus.Open || status == IntervalStatus.Closed) return block.timestamp > iv.clearBy;
        // slither-disable-next-line incorrect-equality
        if (status == IntervalStatus.Cleared) return block.timestamp > iv.settleBy;
        return false;
    }

    function _setParameters(uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, address feeRecipient)
        private
    {
        if (feeRecipient == address(0)) revert MarketZeroAddress();
        if (clearTimeout == 0 || settleTimeout == 0 || clearTimeout > MAX_TIMEOUT || settleTimeout > MAX_TIMEOUT) {
            revert MarketInvalidParameter();
        }
        _params = Params(collateralRate, clearTimeout, settleTimeout, _params.paused, feeRecipient);
        emit ParametersSet(collateralRate, clearTimeout, settleTimeout, feeRecipient);
    }

    function _toU96(uint256 x) private pure returns (uint96) {
        if (x > type(uint96).max) revert MarketInvalidParameter();
        return uint96(x);
    }
}

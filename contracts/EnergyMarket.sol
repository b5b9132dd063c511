// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IEnergyMarket} from "./interfaces/IEnergyMarket.sol";
import {SettlementMath} from "./libraries/SettlementMath.sol";

/// @title EnergyMarket — GridSwarm's peer-to-peer energy market of record
/// @notice Participants keep tokens in internal balances; a bid locks `qty * limit price`, an
/// offer locks `qty * collateralRate`. The operator runs intervals, commits one fill per order
/// and settles from meter readings signed by the participants; it can never move funds without
/// that evidence, and if it stops, every owner recovers its own locks after the deadline.
/// See {SettlementMath} for the settlement rule with a worked example.
contract EnergyMarket is IEnergyMarket, AccessControl, EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Runs intervals, commits fills and submits settlements.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice May pause new orders (never withdrawals or recoveries).
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    bytes32 private constant _METER_TYPEHASH =
        keccak256("MeterReading(address participant,uint64 interval,uint64 exportedWh,uint64 importedWh)");

    uint8 private constant _FLAG_OFFER = 1;
    uint8 private constant _FLAG_FILLED = 2;

    /// @dev One storage slot: who, and how much is free and locked.
    struct Account {
        uint112 free;
        uint112 locked;
        uint16 zone;
        bool registered;
    }

    /// @dev One storage slot per order. The interval and side are also encoded in the id.
    struct Order {
        address owner;
        uint32 qty;
        uint32 filled;
        uint24 price;
        uint8 flags;
    }

    /// @dev One storage slot per interval for everything order posting touches.
    struct Interval {
        IntervalStatus status;
        uint24 collateralRate;
        uint32 orderSeq;
        uint32 liveOrders;
        uint32 committed;
        uint40 clearBy;
        uint40 settleBy;
    }

    /// @dev Running totals of committed fills.
    struct Totals {
        uint64 boughtWh;
        uint64 soldWh;
        uint128 unused;
        uint128 buyValue;
        uint128 sellValue;
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
    mapping(uint64 interval => Interval) private _intervals;
    mapping(uint64 interval => Totals) private _totals;
    mapping(uint64 interval => bytes32) private _fillsHash;
    mapping(uint256 orderId => Order) private _orders;

    /// @notice Emitted when new orders are paused or unpaused.
    event PausedSet(bool paused);

    /// @notice Posting is paused.
    error MarketPaused();

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

    /// @notice A participant's free and locked internal balance, zone and registration.
    function accountOf(address account)
        external
        view
        returns (uint256 free, uint256 locked, uint16 zone, bool registered, bytes32 ed25519Key)
    {
        Account memory a = _accounts[account];
        return (a.free, a.locked, a.zone, a.registered, _keys[account]);
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

    /// @notice An interval's committed fill totals and fill hash chain.
    function totalsOf(uint64 interval)
        external
        view
        returns (uint64 boughtWh, uint64 soldWh, uint128 buyValue, uint128 sellValue, bytes32 fillsHash)
    {
        Totals memory t = _totals[interval];
        return (t.boughtWh, t.soldWh, t.buyValue, t.sellValue, _fillsHash[interval]);
    }

    /// @notice An order's state (zero owner once cancelled, settled or recovered).
    function orderOf(uint256 orderId)
        external
        view
        returns (address owner, Side side, uint32 qty, uint32 filled, uint24 price, bool hasFill)
    {
        Order memory o = _orders[orderId];
        return (o.owner, _side(o.flags), o.qty, o.filled, o.price, o.flags & _FLAG_FILLED != 0);
    }

    /// @notice The EIP-712 digest a participant signs for a meter reading.
    function meterReadingDigest(MeterReading calldata r) external view returns (bytes32) {
        return _meterDigest(r);
    }

    /// @notice The interval an order id belongs to.
    function intervalOfOrder(uint256 orderId) public pure returns (uint64) {
        return uint64(orderId >> 33);
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

    /// @notice Sets market parameters (admin). Open intervals keep the collateral rate they opened with.
    function setParameters(uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, address feeRecipient)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _setParameters(collateralRate, clearTimeout, settleTimeout, feeRecipient);
    }

    /// @notice Pauses or unpauses new orders (pauser). Withdrawals, settlement and recovery go on.
    function setPaused(bool paused) external onlyRole(PAUSER_ROLE) {
        _params.paused = paused;
        emit PausedSet(paused);
    }

    // ================================================================ balances

    /// @inheritdoc IEnergyMarket
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert MarketZeroAmount();
        Account storage a = _accounts[msg.sender];
        if (!a.registered) revert MarketNotParticipant(msg.sender);
        a.free += _toU112(amount);
        emit Deposited(msg.sender, amount);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IEnergyMarket
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert MarketZeroAmount();
        Account storage a = _accounts[msg.sender];
        if (a.free < amount) revert MarketInsufficientBalance(msg.sender, amount, a.free);
        // Cannot underflow: checked just above.
        unchecked {
            a.free -= uint112(amount);
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
        iv.status = IntervalStatus.Closed;
        emit IntervalClosed(interval, iv.liveOrders);
    }

    /// @inheritdoc IEnergyMarket
    function postOrder(uint64 interval, Side side, uint32 qty, uint24 price)
        external
        nonReentrant
        returns (uint256 orderId)
    {
        if (_params.paused) revert MarketPaused();
        if (qty == 0) revert MarketZeroQuantity();
        if (price == 0) revert MarketZeroPrice();
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.Open || block.timestamp > iv.clearBy) revert MarketIntervalNotOpen(interval);
        Account storage a = _accounts[msg.sender];
        if (!a.registered) revert MarketNotParticipant(msg.sender);

        bool offer = side == Side.Offer;
        // qty < 2^32 and price, rate < 2^24: the product fits easily in uint112.
        uint256 lock = uint256(qty) * (offer ? iv.collateralRate : price);
        uint256 pull = lock > a.free ? lock - a.free : 0;
        unchecked {
            // Cannot overflow: orderSeq < 2^32 and liveOrders <= orderSeq.
            orderId = (uint256(interval) << 33) | (offer ? uint256(1) << 32 : 0) | iv.orderSeq;
            iv.orderSeq += 1;
            iv.liveOrders += 1;
        }
        a.free = uint112(a.free + pull - lock);
        a.locked += uint112(lock);
        _orders[orderId] = Order({owner: msg.sender, qty: qty, filled: 0, price: price, flags: offer ? _FLAG_OFFER : 0});
        emit OrderPosted(interval, orderId, msg.sender, side, qty, price, a.zone, lock);
        if (pull > 0) {
            emit Deposited(msg.sender, pull);
            _token.safeTransferFrom(msg.sender, address(this), pull);
        }
    }

    /// @inheritdoc IEnergyMarket
    function cancelOrder(uint256 orderId) external {
        Order memory o = _orders[orderId];
        if (o.owner == address(0)) revert MarketOrderNotFound(orderId);
        if (o.owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender);
        uint64 interval = intervalOfOrder(orderId);
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.Open) revert MarketIntervalNotOpen(interval);
        uint256 lock = _lockOf(o, iv.collateralRate);
        unchecked {
            // Cannot underflow: the order was counted when posted and is still live.
            iv.liveOrders -= 1;
        }
        delete _orders[orderId];
        _release(_accounts[msg.sender], lock, lock);
        emit OrderCancelled(interval, orderId, msg.sender, lock);
    }

    /// @inheritdoc IEnergyMarket
    function commitFills(uint64 interval, Fill[] calldata fills, bool last) external onlyRole(OPERATOR_ROLE) {
        Interval memory iv = _intervals[interval];
        if (iv.status != IntervalStatus.Closed) revert MarketIntervalNotClosed(interval);
        if (block.timestamp > iv.clearBy) revert MarketDeadlinePassed(interval, iv.clearBy);

        Totals memory t = _totals[interval];
        bytes32 h = _fillsHash[interval];
        uint256 n = fills.length;
        for (uint256 i; i < n; ++i) {
            Fill calldata f = fills[i];
            uint256 value = uint256(f.qty) * f.price;
            if (_commitOne(interval, f)) {
                t.soldWh += f.qty;
                t.sellValue += uint128(value);
            } else {
                t.boughtWh += f.qty;
                t.buyValue += uint128(value);
            }
            h = keccak256(abi.encode(h, f.orderId, f.qty, f.price));
            emit FillCommitted(interval, f.orderId, f.qty, f.price);
        }
        iv.committed += uint32(n);
        _totals[interval] = t;
        _fillsHash[interval] = h;

        if (last) {
            if (iv.committed != iv.liveOrders) revert MarketFillsIncomplete(interval, iv.committed, iv.liveOrders);
            if (t.boughtWh != t.soldWh) revert MarketFillsUnbalanced(interval, t.boughtWh, t.soldWh);
            if (t.buyValue < t.sellValue) revert MarketFillsValueDeficit(interval, t.buyValue, t.sellValue);
            iv.status = IntervalStatus.Cleared;
            iv.settleBy = uint40(block.timestamp + _params.settleTimeout);
            emit IntervalCleared(interval, iv.committed, t.boughtWh, t.soldWh, t.buyValue, t.sellValue, iv.settleBy, h);
        }
        _intervals[interval] = iv;
    }

    /// @dev Checks one fill against its order and records it; returns whether it is an offer.
    function _commitOne(uint64 interval, Fill calldata f) private returns (bool offer) {
        Order memory o = _orders[f.orderId];
        if (o.owner == address(0)) revert MarketOrderNotFound(f.orderId);
        if (intervalOfOrder(f.orderId) != interval) revert MarketOrderNotInInterval(f.orderId, interval);
        if (o.flags & _FLAG_FILLED != 0) revert MarketOrderAlreadyFilled(f.orderId);
        if (f.qty > o.qty) revert MarketFillExceedsOrder(f.orderId, f.qty, o.qty);
        offer = o.flags & _FLAG_OFFER != 0;
        if (f.qty > 0 && (offer ? f.price < o.price : f.price > o.price)) {
            revert MarketFillPriceOutsideLimit(f.orderId, f.price, o.price);
        }
        o.filled = f.qty;
        o.flags |= _FLAG_FILLED;
        _orders[f.orderId] = o;
    }

    /// @dev Settlement working set, kept in memory to stay clear of the stack limit.
    struct Work {
        uint24 rate;
        uint256 n;
        uint256[] delivered;
        uint256[] bidWeights;
        uint256[] missingWeights;
        uint256 deliveredWh;
        uint256 forfeitPool;
        uint256 buyPay;
        uint256 sellPay;
        uint256 soldWh;
        uint256[] shares;
        uint256[] comp;
    }

    /// @dev Settles one fill; returns what a seller received (zero for a bid).
    function _settleFill(uint64 interval, Fill calldata f, bool hasReading, Work memory w, uint256 i)
        private
        returns (uint256 sellerReceived)
    {
        Order memory o = _orders[f.orderId];
        Account storage a = _accounts[o.owner];
        uint256 lock = _lockOf(o, w.rate);
        uint256 amount;
        uint256 penalty;
        uint256 deliveredWh;
        if (o.flags & _FLAG_OFFER != 0) {
            deliveredWh = w.delivered[i];
            amount = SettlementMath.scale(deliveredWh * f.price, w.buyPay, w.sellPay);
            penalty = hasReading ? (f.qty - deliveredWh) * w.rate : 0;
            _release(a, lock, lock - penalty + amount);
            sellerReceived = amount;
        } else {
            deliveredWh = w.shares[i];
            amount = deliveredWh * f.price;
            penalty = w.comp[i];
            _release(a, lock, lock - amount + penalty);
        }
        delete _orders[f.orderId];
        emit FillSettled(interval, f.orderId, o.owner, uint32(deliveredWh), amount, penalty, lock);
    }

    /// @inheritdoc IEnergyMarket
    function settle(
        uint64 interval,
        Fill[] calldata fills,
        uint32[] calldata readingOf,
        SignedReading[] calldata readings
    ) external onlyRole(OPERATOR_ROLE) nonReentrant {
        Interval storage iv = _intervals[interval];
        if (iv.status == IntervalStatus.Settled) revert MarketIntervalAlreadySettled(interval);
        if (iv.status != IntervalStatus.Cleared) revert MarketIntervalNotCleared(interval);
        if (block.timestamp > iv.settleBy) revert MarketDeadlinePassed(interval, iv.settleBy);
        if (readingOf.length != fills.length) revert MarketLengthMismatch();

        Work memory w = _allocate(interval, fills, readingOf, readings);

        // Effects: release every lock, pay, charge and compensate; delete every order.
        w.shares = SettlementMath.proRata(w.bidWeights, w.deliveredWh);
        w.comp = SettlementMath.proRata(w.missingWeights, w.forfeitPool);
        uint256 paidOut;
        for (uint256 i; i < w.n; ++i) {
            paidOut += _settleFill(interval, fills[i], readingOf[i] != type(uint32).max, w, i);
        }
        // Sellers receive at most what buyers pay (scaled down otherwise), so this cannot underflow.
        uint256 surplus = w.buyPay - paidOut;
        if (surplus > 0) _accounts[_params.feeRecipient].free += _toU112(surplus);
        iv.status = IntervalStatus.Settled;
        emit IntervalSettled(interval, uint64(w.deliveredWh), uint64(w.soldWh - w.deliveredWh), surplus);
    }

    /// @inheritdoc IEnergyMarket
    function recover(uint256[] calldata orderIds) external nonReentrant {
        Account storage a = _accounts[msg.sender];
        for (uint256 i; i < orderIds.length; ++i) {
            uint256 orderId = orderIds[i];
            Order memory o = _orders[orderId];
            if (o.owner == address(0)) revert MarketOrderNotFound(orderId);
            if (o.owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender);
            uint64 interval = intervalOfOrder(orderId);
            Interval memory iv = _intervals[interval];
            if (!_lapsed(iv)) revert MarketIntervalNotLapsed(interval);
            uint256 lock = _lockOf(o, iv.collateralRate);
            delete _orders[orderId];
            _release(a, lock, lock);
            emit OrderRecovered(interval, orderId, msg.sender, lock);
        }
    }

    /// @notice Whether an interval has lapsed (its operator missed a deadline).
    function lapsed(uint64 interval) external view returns (bool) {
        return _lapsed(_intervals[interval]);
    }

    // ================================================================ internals

    function _verifyReadings(uint64 interval, SignedReading[] calldata readings)
        private
        returns (uint256[] memory exportLeft)
    {
        exportLeft = new uint256[](readings.length);
        for (uint256 j; j < readings.length; ++j) {
            MeterReading calldata r = readings[j].reading;
            if (r.interval != interval) revert MarketReadingWrongInterval(j, r.interval);
            address signer = ECDSA.recover(_meterDigest(r), readings[j].signature);
            if (signer != r.participant) revert MarketReadingBadSignature(j, r.participant, signer);
            exportLeft[j] = r.exportedWh;
            emit MeterReadingAccepted(interval, r.participant, r.exportedWh, r.importedWh);
        }
    }

    /// @dev Checks the fills against the committed hash and works out delivery and money flows.
    function _allocate(
        uint64 interval,
        Fill[] calldata fills,
        uint32[] calldata readingOf,
        SignedReading[] calldata readings
    ) private returns (Work memory w) {
        uint256[] memory exportLeft = _verifyReadings(interval, readings);
        uint24 rate = _intervals[interval].collateralRate;
        w.rate = rate;
        w.n = fills.length;
        w.delivered = new uint256[](w.n);
        w.bidWeights = new uint256[](w.n);
        w.missingWeights = new uint256[](w.n);
        bytes32 h;
        for (uint256 i; i < w.n; ++i) {
            Fill calldata f = fills[i];
            h = keccak256(abi.encode(h, f.orderId, f.qty, f.price));
            Order storage o = _orders[f.orderId];
            if (o.flags & _FLAG_OFFER != 0) {
                w.soldWh += f.qty;
                uint256 j = readingOf[i];
                if (j == type(uint32).max) continue;
                if (readings[j].reading.participant != o.owner) revert MarketReadingNotOwner(i, j);
                uint256 d = f.qty < exportLeft[j] ? f.qty : exportLeft[j];
                exportLeft[j] -= d;
                w.delivered[i] = d;
                w.deliveredWh += d;
                w.forfeitPool += (f.qty - d) * rate;
                w.sellPay += d * f.price;
            } else {
                w.bidWeights[i] = f.qty;
            }
        }
        bytes32 expected = _fillsHash[interval];
        if (h != expected || w.n != _intervals[interval].committed) revert MarketFillsMismatch(interval, expected, h);
        uint256[] memory shares = SettlementMath.proRata(w.bidWeights, w.deliveredWh);
        for (uint256 i; i < w.n; ++i) {
            if (w.bidWeights[i] == 0) continue;
            w.missingWeights[i] = (w.bidWeights[i] - shares[i]) * rate;
            w.buyPay += shares[i] * fills[i].price;
        }
    }

    function _meterDigest(MeterReading calldata r) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_METER_TYPEHASH, r.participant, r.interval, r.exportedWh, r.importedWh)));
    }

    function _lockOf(Order memory o, uint24 rate) private pure returns (uint256) {
        return uint256(o.qty) * (o.flags & _FLAG_OFFER != 0 ? rate : o.price);
    }

    /// @dev Unlocks `lock` and credits `credit` to the free balance.
    function _release(Account storage a, uint256 lock, uint256 credit) private {
        a.locked -= uint112(lock);
        a.free += _toU112(credit);
    }

    function _lapsed(Interval memory iv) private view returns (bool) {
        if (iv.status == IntervalStatus.Open || iv.status == IntervalStatus.Closed) return block.timestamp > iv.clearBy;
        if (iv.status == IntervalStatus.Cleared) return block.timestamp > iv.settleBy;
        return false;
    }

    function _side(uint8 flags) private pure returns (Side) {
        return flags & _FLAG_OFFER != 0 ? Side.Offer : Side.Bid;
    }

    function _setParameters(uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, address feeRecipient)
        private
    {
        if (feeRecipient == address(0)) revert MarketZeroAddress();
        if (clearTimeout == 0 || settleTimeout == 0) revert MarketInvalidParameter();
        bool paused = _params.paused;
        _params = Params(collateralRate, clearTimeout, settleTimeout, paused, feeRecipient);
        emit ParametersSet(collateralRate, clearTimeout, settleTimeout, feeRecipient);
    }

    function _toU112(uint256 x) private pure returns (uint112) {
        if (x > type(uint112).max) revert MarketInvalidParameter();
        return uint112(x);
    }
}

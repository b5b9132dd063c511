// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {IEnergyMarket} from "./interfaces/IEnergyMarket.sol";
import {SettlementMath} from "./libraries/SettlementMath.sol";
import {OrderWord, OrderWordLib} from "./libraries/OrderWord.sol";
import {MarketSettlement} from "./libraries/MarketSettlement.sol";
import {MarketClearing} from "./libraries/MarketClearing.sol";

/// @title EnergyMarket — GridSwarm's peer-to-peer energy market of record
/// @notice Participants keep tokens in internal balances; a bid locks `qty * limit price`, an
/// offer locks `qty * collateralRate`. The operator key is assumed hostile: the contract itself
/// checks the clearing rule (one price per zone, flows within link limits, in-the-money orders
/// filled in full) and applies the settlement rule of {SettlementMath}, where each party's money
/// depends only on public prices, its own fills and its own signed reading. See
/// {IEnergyMarket} and docs/contracts.md for the rules and a worked example.
///
/// Gas design (docs/contracts.md): an order lives in one of `ORDER_SLOTS` storage slots of its
/// owner; fills live in events and in one hash per commit chunk, and settlement re-reads them
/// from calldata, one commit chunk per settlement transaction; fills are committed in ascending
/// order id, which proves that no order is filled twice without a per-order write.
///
/// Reentrancy: the token is fixed at deployment, and every function makes its one token call
/// (if any) last, after all its state changes and events.
contract EnergyMarket is IEnergyMarket, EIP712 {
    using SafeERC20 for IERC20;
    using OrderWordLib for OrderWord;

    /// @notice How many orders one account can have in flight.
    uint256 public constant ORDER_SLOTS = 16;
    /// @notice How many intervals can be between gate closure and settlement at once.
    uint256 internal constant CLEARING_SLOTS = 16;
    /// @notice Upper bound of the clear and settle timeouts.
    uint32 public constant MAX_TIMEOUT = 7 days;
    /// @notice The one zone of a market without links: every order trades at one price.
    uint16 public constant COPPER_ZONE = type(uint16).max;
    /// @notice Seconds between announcing an admin, parameter, link or operator change and
    /// applying it.
    uint32 public immutable CHANGE_DELAY;


    uint256 private constant _NONCE_MASK = (1 << 31) - 1;
    uint256 private constant _BID_BIT = 1 << 191;
    uint256 private constant _LOW_MASK = (1 << 192) - 1;
    /// @dev What registration writes into every slot: nonce 2^32 - 1 matches no order id.
    uint256 private constant _O_PLACEHOLDER = uint256(type(uint32).max) << 64;

    /// @dev One storage slot per interval.
    struct Interval {
        IntervalStatus status;
        uint32 liveOrders;
        uint32 committed;
        uint40 clearBy;
        uint40 settleBy;
        uint24 collateralRate;
        uint24 imbalanceBuy;
        uint24 imbalanceSell;
    }

    /// @dev Commit and settlement state of an interval, in one of CLEARING_SLOTS slots.
    struct Clearing {
        uint64 interval;
        uint192 lastId;
        uint32 chunks;
        uint32 nextSettle;
        uint16 zoneCount;
        bool copper;
        bool priced;
        uint128 rent;
        uint48 boughtWh;
        uint48 soldWh;
        uint72 buyValue;
        uint72 sellValue;
        uint16 keepC; // never zero, so later writes of this slot are nonzero-to-nonzero
        uint88 charges;
        uint88 refunds;
        uint64 deliveredWh;
        uint16 keepD; // never zero (as keepC)
    }

    IERC20 private immutable _token;
    address private _admin;
    address private _pendingAdmin;
    uint256 private _pendingAdminAt;
    Params private _params;
    bool private _paused;
    Params private _pending;
    uint256 private _pendingAt;
    Link[] private _links;
    Link[] private _pendingLinks;
    uint256 private _pendingLinksAt;
    bytes32 private _coordinatorKey;
    mapping(address account => MarketSettlement.Account) private _accounts;
    mapping(address account => bytes32) private _keys;
    // slither-disable-next-line uninitialized-state
    mapping(address account => OrderWord[ORDER_SLOTS]) private _orders;
    mapping(uint64 interval => Interval) private _intervals;
    Clearing[CLEARING_SLOTS] private _clearings;
    // Keyed by clearing slot (interval % CLEARING_SLOTS) so that later intervals rewrite used
    // storage; a zone word carries its interval, a chunk hash is read only for chunks the slot's
    // interval committed.
    mapping(uint256 slot => mapping(uint256 chunk => bytes32)) private _chunkHash;
    mapping(uint256 slot => mapping(uint16 zone => uint256)) private _zoneWord;
    mapping(uint256 slot => mapping(uint256 index => uint16)) private _zoneAt;
    mapping(uint256 slot => mapping(address participant => uint256)) private _submitted;

    modifier onlyAdmin() {
        if (msg.sender != _admin) revert MarketNotAdmin(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != _params.operator) revert MarketNotOperator(msg.sender);
        _;
    }

    /// @param changeDelay seconds every admin, parameter, link or operator change waits once
    /// announced
    constructor(IERC20 token_, address admin, Params memory params, Link[] memory links, uint32 changeDelay)
        EIP712("GridSwarm EnergyMarket", "1")
    {
        if (address(token_) == address(0) || admin == address(0)) revert MarketZeroAddress();
        _token = token_;
        _admin = admin;
        CHANGE_DELAY = changeDelay;
        _checkParams(params);
        _params = params;
        _emitParams(params);
        MarketClearing.setLinks(_links, links);
        emit LinksSet(links);
    }

    // ================================================================ views

    function token() external view returns (IERC20) {
        return _token;
    }

    /// @notice A participant's free and locked balance, zone, registration, key and order counter.
    function accountOf(address account)
        external
        view
        returns (uint256 free, uint256 locked, uint16 zone, bool registered, bytes32 ed25519Key, uint32 nonce)
    {
        MarketSettlement.Account memory a = _accounts[account];
        return (a.free, a.locked, a.zone, a.registered, _keys[account], a.nonce);
    }

    function coordinatorKey() external view returns (bytes32) {
        return _coordinatorKey;
    }

    /// @notice Parameters in force and whether posting is paused.
    function parameters() external view returns (Params memory params, bool paused) {
        return (_params, _paused);
    }

    /// @notice The registered links in force (flows are committed in this order).
    function links() external view returns (Link[] memory) {
        return _links;
    }

    /// @notice The admin, and the announced next admin with the time it may accept.
    function admin() external view returns (address current, address pending, uint256 pendingAt) {
        return (_admin, _pendingAdmin, _pendingAdminAt);
    }

    /// @notice An interval's state, deadlines, and the collateral rate and imbalance prices
    /// fixed when it opened.
    function intervalOf(uint64 interval) external view returns (Interval memory) {
        return _intervals[interval];
    }

    /// @notice An order's terms and whether it is live. Unknown ids give a zero owner.
    function orderOf(uint256 orderId)
        external
        view
        returns (address owner, Side side, uint32 qty, uint24 price, uint64 lock, bool live)
    {
        (uint64 interval, bool isBid, address who, uint32 nonce) = _decodeOrderId(orderId);
        OrderWord w = _orders[who][nonce % ORDER_SLOTS];
        // A cancelled, recovered or settled order keeps its terms until its slot is reused.
        if (!OrderWord.wrap(OrderWord.unwrap(w) | OrderWordLib.LIVE).matches(interval, isBid, nonce)) {
            return (address(0), Side.Bid, 0, 0, 0, false);
        }
        live = w.live() && _intervals[interval].status != IntervalStatus.Settled;
        return (who, isBid ? Side.Bid : Side.Offer, uint32(w.qty()), uint24(w.limit()), uint64(w.lock()), live);
    }

    function meterReadingDigest(MeterReading memory r) external view returns (bytes32) {
        return MarketSettlement.digest(_domainSeparatorV4(), r);
    }

    function _decodeOrderId(uint256 orderId)
        private
        pure
        returns (uint64 interval, bool isBid, address owner, uint32 nonce)
    {
        interval = uint64(orderId >> 192);
        isBid = orderId & _BID_BIT != 0;
        owner = address(uint160(orderId >> 31));
        nonce = uint32(orderId & _NONCE_MASK);
    }

    // ================================================================ admin

    /// @inheritdoc IEnergyMarket
    function registerParticipant(address account, bytes32 ed25519Key, uint16 zone)
        external
        onlyAdmin
    {
        if (account == address(0)) revert MarketZeroAddress();
        if (ed25519Key == bytes32(0)) revert MarketInvalidKey();
        MarketSettlement.Account storage a = _accounts[account];
        if (a.registered) revert MarketParticipantExists(account);
        a.registered = true;
        a.zone = zone;
        _keys[account] = ed25519Key;
        OrderWord[ORDER_SLOTS] storage slots = _orders[account];
        for (uint256 i; i < ORDER_SLOTS; ++i) {
            if (OrderWord.unwrap(slots[i]) == 0) slots[i] = OrderWord.wrap(_O_PLACEHOLDER);
        }
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
    function setZone(address account, uint16 zone) external onlyAdmin {
        MarketSettlement.Account storage a = _accounts[account];
        if (!a.registered) revert MarketNotParticipant(account);
        a.zone = zone;
        emit ParticipantZoneChanged(account, zone);
    }

    /// @inheritdoc IEnergyMarket
    function removeParticipant(address account) external onlyAdmin {
        MarketSettlement.Account storage a = _accounts[account];
        if (!a.registered) revert MarketNotParticipant(account);
        a.registered = false;
        emit ParticipantRemoved(account);
    }

    /// @inheritdoc IEnergyMarket
    function setCoordinatorKey(bytes32 ed25519Key) external onlyAdmin {
        if (ed25519Key == bytes32(0)) revert MarketInvalidKey();
        _coordinatorKey = ed25519Key;
        emit CoordinatorKeySet(ed25519Key);
    }

    /// @notice Announces new parameters (admin); anyone applies them `CHANGE_DELAY` later.
    function scheduleParameters(Params calldata params) external onlyAdmin {
        _checkParams(params);
        _pending = params;
        uint256 at = block.timestamp + CHANGE_DELAY;
        _pendingAt = at;
        emit ParametersScheduled(params, at);
    }

    /// @notice Announces a new link table (admin); anyone applies it `CHANGE_DELAY` later.
    function scheduleLinks(Link[] calldata links_) external onlyAdmin {
        MarketClearing.setLinks(_pendingLinks, links_);
        uint256 at = block.timestamp + CHANGE_DELAY;
        _pendingLinksAt = at;
        emit LinksScheduled(links_, at);
    }

    /// @notice Withdraws every announced change (admin).
    function cancelScheduled() external onlyAdmin {
        if (_pendingAt == 0 && _pendingLinksAt == 0) revert MarketNoChangeScheduled();
        _pendingAt = 0;
        _pendingLinksAt = 0;
        emit ParametersCancelled();
    }

    /// @notice Applies every announced change that is due (anyone).
    function applyScheduled() external {
        uint256 at = _pendingAt;
        uint256 linksAt = _pendingLinksAt;
        bool due = (at != 0 && block.timestamp >= at) || (linksAt != 0 && block.timestamp >= linksAt);
        if (!due) {
            // Times, not balances.
            // slither-disable-next-line incorrect-equality
            if (at == 0 && linksAt == 0) revert MarketNoChangeScheduled();
            // slither-disable-next-line incorrect-equality
            revert MarketChangeNotDue(at != 0 && (linksAt == 0 || at < linksAt) ? at : linksAt);
        }
        if (at != 0 && block.timestamp >= at) {
            Params memory p = _pending;
            // The admin may have changed since the announcement.
            _checkParams(p);
            _params = p;
            _pendingAt = 0;
            _emitParams(p);
        }
        if (linksAt != 0 && block.timestamp >= linksAt) {
            Link[] memory l = _pendingLinks;
            MarketClearing.setLinks(_links, l);
            _pendingLinksAt = 0;
            emit LinksSet(l);
        }
    }

    /// @inheritdoc IEnergyMarket
    function setPaused(bool paused) external onlyAdmin {
        _paused = paused;
        emit PausedSet(paused);
    }

    // ================================================================ balances

    /// @inheritdoc IEnergyMarket
    /// @dev The fee recipient may deposit too: it pays buyers' imbalance refunds.
    function deposit(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        MarketSettlement.Account storage a = _accounts[msg.sender];
        if (!a.registered && msg.sender != _params.feeRecipient) revert MarketNotParticipant(msg.sender);
        a.free = _toU96(msg.sender, a.free + amount);
        emit Deposited(msg.sender, amount);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IEnergyMarket
    function withdraw(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        MarketSettlement.Account storage a = _accounts[msg.sender];
        uint256 free = a.free;
        if (free < amount) revert MarketInsufficientBalance(msg.sender, amount, free);
        unchecked {
            a.free = uint96(free - amount);
        }
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ================================================================ intervals and orders

    /// @inheritdoc IEnergyMarket
    function openInterval(uint64 interval) external onlyOperator {
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.None) revert MarketIntervalExists(interval);
        Params memory p = _params;
        uint40 clearBy = uint40(block.timestamp + p.clearTimeout);
        iv.status = IntervalStatus.Open;
        iv.collateralRate = p.collateralRate;
        iv.imbalanceBuy = p.imbalanceBuy;
        iv.imbalanceSell = p.imbalanceSell;
        iv.clearBy = clearBy;
        emit IntervalOpened(interval, clearBy, p.collateralRate, p.imbalanceBuy, p.imbalanceSell);
    }

    /// @inheritdoc IEnergyMarket
    function closeInterval(uint64 interval) external onlyOperator {
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.Open) revert MarketIntervalNotOpen(interval);
        if (block.timestamp > iv.clearBy) revert MarketDeadlinePassed(interval, iv.clearBy);
        iv.status = IntervalStatus.Closed;
        emit IntervalClosed(interval, iv.liveOrders);
    }

    /// @inheritdoc IEnergyMarket
    function postOrder(uint64 interval, Side side, uint32 qty, uint24 price) external returns (uint256 orderId) {
        if (_paused) revert MarketPaused();
        if (qty == 0) revert MarketZeroQuantity();
        if (price == 0) revert MarketZeroPrice();
        bool isBid = side == Side.Bid;
        uint256 lock = _admitOrder(interval, isBid, qty, price);
        (uint256 pull, uint32 counter, uint16 zone) = _lockFunds(lock);
        OrderWord[ORDER_SLOTS] storage slots = _orders[msg.sender];
        uint256 index = _freeSlot(slots, counter);
        uint32 nonce = uint32((uint256(counter) << 4) | index);
        orderId = _orderId(interval, isBid, msg.sender, nonce);
        slots[index] = OrderWordLib.pack(interval, nonce, isBid, qty, price, lock, zone);
        emit OrderPosted(interval, orderId, msg.sender, side, qty, price, zone, lock);
        if (pull > 0) {
            emit Deposited(msg.sender, pull);
            _token.safeTransferFrom(msg.sender, address(this), pull);
        }
    }

    /// @inheritdoc IEnergyMarket
    function cancelOrder(uint256 orderId) external {
        (OrderWord[ORDER_SLOTS] storage slots, uint256 index, uint64 interval, address owner) = _liveOrder(orderId);
        if (owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender);
        Interval storage iv = _intervals[interval];
        if (iv.status != IntervalStatus.Open) revert MarketIntervalNotOpen(interval);
        OrderWord w = slots[index];
        unchecked {
            iv.liveOrders -= 1;
        }
        slots[index] = w.dead();
        _release(msg.sender, w.lock());
        emit OrderCancelled(interval, orderId, msg.sender, w.lock());
    }

    /// @notice Commits the interval's clearing prices and link flows (operator), after gate
    /// closure and before the fills. With links: one price per zone, zones strictly ascending,
    /// every zone of every link priced, one flow per registered link in registration order,
    /// within its limit and consistent with the price difference (see {IEnergyMarket}). Without
    /// links: exactly one price, for every order.
    function commitPrices(uint64 interval, ZonePrice[] calldata prices, uint64[] calldata flows)
        external
        onlyOperator
    {
        Interval memory iv = _intervals[interval];
        if (iv.status != IntervalStatus.Closed) revert MarketIntervalNotClosed(interval);
        if (block.timestamp > iv.clearBy) revert MarketDeadlinePassed(interval, iv.clearBy);
        Clearing storage c = _takeClearing(interval);
        if (c.priced) revert MarketPricesAlreadyCommitted(interval);
        uint256 nLinks = _links.length;
        if (flows.length != nLinks) revert MarketFlowsLengthMismatch(flows.length, nLinks);
        // Zero without links (one market carries no flows).
        // slither-disable-next-line uninitialized-local
        uint256 rent;
        if (nLinks == 0) {
            if (prices.length != 1) revert MarketCopperNeedsOnePrice(prices.length);
            _zoneWord[interval % CLEARING_SLOTS][COPPER_ZONE] = MarketClearing.word(interval, prices[0].price, 0);
            _zoneAt[interval % CLEARING_SLOTS][0] = COPPER_ZONE;
            c.copper = true;
            c.zoneCount = 1;
        } else {
            rent = MarketClearing.commitZones(_zoneWord, _zoneAt, _links, interval, prices, flows);
            c.zoneCount = uint16(prices.length);
        }
        c.priced = true;
        c.rent = uint128(rent);
        emit PricesCommitted(interval, prices, flows, rent);
    }

    /// @inheritdoc IEnergyMarket
    function commitFills(uint64 interval, Fill[] calldata fills, bool last) external onlyOperator {
        Interval memory iv = _intervals[interval];
        if (iv.status != IntervalStatus.Closed) revert MarketIntervalNotClosed(interval);
        if (block.timestamp > iv.clearBy) revert MarketDeadlinePassed(interval, iv.clearBy);
        Clearing storage c = _clearings[interval % CLEARING_SLOTS];
        if (c.interval != interval || !c.priced) revert MarketPricesNotCommitted(interval);

        uint256 chunk = c.chunks;
        // Filled in field by field below.
        // slither-disable-next-line uninitialized-local
        MarketClearing.Tally memory t;
        t.lastId = c.lastId == 0 ? 0 : (uint256(interval) << 192) | c.lastId;
        (t.boughtWh, t.soldWh, t.buyValue, t.sellValue) = (c.boughtWh, c.soldWh, c.buyValue, c.sellValue);
        t.h = bytes32(chunk + 1);
        uint256 n = fills.length;
        // A chunk boundary never splits one owner's fills on one side, so settlement can apply
        // each reading within one chunk.
        if (n > 0 && t.lastId != 0 && fills[0].orderId >> 31 == t.lastId >> 31) {
            revert MarketChunkSplitsOwner(fills[0].orderId);
        }
        // Every fill checked against its order and zone price, folded in and logged (FillsCommitted).
        t = MarketClearing.commitChunk(_orders, _zoneWord, _zoneAt, interval, _rawCommitFills(fills), c.zoneCount, c.copper, t);
        _storeTally(c, interval, t);
        _chunkHash[interval % CLEARING_SLOTS][chunk] = t.h;
        c.chunks = uint32(chunk + 1);
        iv.committed += uint32(n);

        if (last) {
            if (iv.committed != iv.liveOrders) revert MarketFillsIncomplete(interval, iv.committed, iv.liveOrders);
            MarketClearing.checkZonesBalanced(_zoneWord, _zoneAt, interval, c.zoneCount);
            iv.status = IntervalStatus.Cleared;
            iv.settleBy = uint40(block.timestamp + _params.settleTimeout);
            c.nextSettle = uint32(chunk);
            emit IntervalCleared(
                interval,
                iv.committed,
                uint64(t.boughtWh),
                uint64(t.soldWh),
                uint128(t.buyValue),
                uint128(t.sellValue),
                iv.settleBy,
                t.h
            );
        }
        _intervals[interval] = iv;
    }

    /// @notice Settles commit chunk `chunk` (chunks go last first, so buyers pay before sellers
    /// are paid): `fills` are that chunk's committed fills with their locks; `readings` are
    /// signed meter readings in ascending participant order (missing ones count as the worst
    /// case, see {SettlementMath}). Operator only until `settleBy`, then anyone.
    function settle(uint64 interval, uint256 chunk, SettlementFill[] calldata fills, SignedReading[] calldata readings)
        external
    {
        Interval memory iv = _intervals[interval];
        // Enum states, not balances.
        // slither-disable-next-line incorrect-equality
        if (iv.status == IntervalStatus.Settled) revert MarketIntervalAlreadySettled(interval);
        if (iv.status != IntervalStatus.Cleared) revert MarketIntervalNotCleared(interval);
        if (block.timestamp <= iv.settleBy && msg.sender != _params.operator) revert MarketNotOperator(msg.sender);
        // The clearing slot of a Cleared interval is its own until it settles.
        Clearing storage c = _clearings[interval % CLEARING_SLOTS];
        if (chunk != c.nextSettle) revert MarketChunkNotNext(interval, chunk, c.nextSettle);
        _checkChunk(interval, chunk, fills);
        MarketSettlement.Run memory run = _runChunk(interval, iv, fills, readings);
        _finishChunk(interval, chunk, c, run);
    }

    /// @dev The fills must be chunk `chunk` as committed. The slot's chunk hashes up to
    /// c.chunks are this interval's; nextSettle only decreases, so no chunk settles twice.
    function _checkChunk(uint64 interval, uint256 chunk, SettlementFill[] calldata fills) private view {
        bytes32 expected = _chunkHash[interval % CLEARING_SLOTS][chunk];
        bytes32 h = _hashFills(chunk, fills);
        if (h != expected) revert MarketFillsMismatch(interval, expected, h);
    }

    /// @dev Settles the chunk's fills in the settlement library (readings from calldata, else
    /// submitted on chain; all of them required before `settleBy`).
    function _runChunk(
        uint64 interval,
        Interval memory iv,
        SettlementFill[] calldata fills,
        SignedReading[] calldata readings
    ) private returns (MarketSettlement.Run memory) {
        uint256 terms = uint256(iv.imbalanceBuy) | (uint256(iv.imbalanceSell) << 24)
            | (block.timestamp <= iv.settleBy ? 1 << 48 : 0);
        // The arrays' elements go to the library as the bytes they are in calldata (static
        // structs: 0x80 and 0xc0 bytes each), copied once instead of encoded field by field.
        return MarketSettlement.settleChunk(
            _accounts, _submitted[interval % CLEARING_SLOTS], _domainSeparatorV4(), interval, _rawFills(fills), _rawReadings(readings), terms
        );
    }

    /// @dev Books a settled chunk: the balancing party's share, progress, and on the last
    /// chunk the interval's end.
    function _finishChunk(uint64 interval, uint256 chunk, Clearing storage c, MarketSettlement.Run memory run) private {
        (uint256 charges, uint256 refunds, uint256 delivered) = (run.charges, run.refunds, run.deliveredWh);
        // The first chunk to settle (the last committed) finds the running totals as the price
        // commit reset them, at zero (the slot stays this interval's until it settles), and
        // need not read them.
        if (chunk + 1 != c.chunks) {
            charges += c.charges;
            refunds += c.refunds;
            delivered += c.deliveredWh;
        }
        uint256 rent = chunk == 0 ? c.rent : 0;
        _payBalancing(interval, run.charges, run.refunds, rent);
        if (chunk == 0) {
            _intervals[interval].status = IntervalStatus.Settled;
            emit ImbalanceSettled(interval, charges, refunds);
            emit IntervalSettled(interval, uint64(delivered), uint64(c.soldWh - delivered), rent);
        } else {
            c.nextSettle = uint32(chunk - 1);
            if (charges > type(uint88).max || refunds > type(uint88).max) revert MarketTotalsOverflow(interval);
            c.charges = uint88(charges);
            c.refunds = uint88(refunds);
            c.deliveredWh = uint64(delivered);
        }
    }

    /// @notice Puts a participant's signed meter reading on chain (anyone may send it), so that
    /// settlement uses it even if the operator leaves it out; before `settleBy` the operator
    /// cannot settle a non-zero fill without its owner's reading.
    function submitReading(SignedReading calldata reading) external {
        MarketSettlement.submit(_submitted, _domainSeparatorV4(), reading);
    }

    /// @inheritdoc IEnergyMarket
    function recover(uint256[] calldata orderIds) external {
        for (uint256 i; i < orderIds.length; ++i) {
            uint256 orderId = orderIds[i];
            (OrderWord[ORDER_SLOTS] storage slots, uint256 index, uint64 interval, address owner) = _liveOrder(orderId);
            if (owner != msg.sender) revert MarketNotOrderOwner(orderId, msg.sender);
            if (!_lapsed(_intervals[interval])) revert MarketIntervalNotLapsed(interval);
            OrderWord w = slots[index];
            slots[index] = w.dead();
            _release(msg.sender, w.lock());
            emit OrderRecovered(interval, orderId, msg.sender, w.lock());
        }
    }

    // ================================================================ admin transfer

    /// @notice Announces a new admin (admin); it accepts `CHANGE_DELAY` later. Never the operator.
    function beginAdminTransfer(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert MarketZeroAddress();
        if (newAdmin == _params.operator || (_pendingAt != 0 && newAdmin == _pending.operator)) {
            revert MarketOperatorIsAdmin(newAdmin);
        }
        uint256 at = block.timestamp + CHANGE_DELAY;
        (_pendingAdmin, _pendingAdminAt) = (newAdmin, at);
        emit AdminTransferScheduled(newAdmin, at);
    }

    /// @notice The announced admin takes over once the delay has passed.
    function acceptAdminTransfer() external {
        if (msg.sender != _pendingAdmin) revert MarketNotAdmin(msg.sender);
        if (block.timestamp < _pendingAdminAt) revert MarketChangeNotDue(_pendingAdminAt);
        if (msg.sender == _params.operator) revert MarketOperatorIsAdmin(msg.sender);
        (_admin, _pendingAdmin, _pendingAdminAt) = (msg.sender, address(0), 0);
        emit AdminTransferred(msg.sender);
    }

    // ================================================================ internals

    function _admitOrder(uint64 interval, bool isBid, uint32 qty, uint24 price) private returns (uint256) {
        Interval storage iv = _intervals[interval];
        (IntervalStatus status, uint40 clearBy, uint32 live, uint24 rate) =
            (iv.status, iv.clearBy, iv.liveOrders, iv.collateralRate);
        if (status != IntervalStatus.Open || block.timestamp > clearBy) revert MarketIntervalNotOpen(interval);
        unchecked {
            iv.liveOrders = live + 1;
        }
        return uint256(qty) * (isBid ? price : rate);
    }

    function _lockFunds(uint256 lock) private returns (uint256 pull, uint32 counter, uint16 zone) {
        MarketSettlement.Account memory a = _accounts[msg.sender];
        if (!a.registered) revert MarketNotParticipant(msg.sender);
        counter = a.nonce;
        if (counter >= 1 << 27) revert MarketNonceExhausted(msg.sender);
        pull = lock > a.free ? lock - a.free : 0;
        unchecked {
            a.free = uint96(a.free + pull - lock);
            a.locked = uint96(a.locked + lock);
            a.nonce = counter + 1;
        }
        _accounts[msg.sender] = a;
        zone = a.zone;
    }

    /// @dev The first free slot from `counter % ORDER_SLOTS` on: one that holds no lock (never
    /// used, cancelled, recovered, or its interval settled). Reverts only if all are taken.
    function _freeSlot(OrderWord[ORDER_SLOTS] storage slots, uint32 counter) private view returns (uint256) {
        // Slot arithmetic, not randomness; status checks compare enum states, not balances.
        for (uint256 k; k < ORDER_SLOTS; ++k) {
            // slither-disable-next-line weak-prng
            uint256 index = (counter + k) % ORDER_SLOTS;
            OrderWord w = slots[index];
            // slither-disable-next-line incorrect-equality
            if (!w.live() || _intervals[w.interval()].status == IntervalStatus.Settled) return index;
        }
        // slither-disable-next-line weak-prng
        OrderWord first = slots[counter % ORDER_SLOTS];
        revert MarketTooManyOrders(msg.sender, _orderId(first.interval(), first.isBid(), msg.sender, first.nonce()));
    }

    /// @dev The slot of `interval` for its commit, taken over from an earlier interval that has
    /// settled or lapsed (or never used).
    function _takeClearing(uint64 interval) private returns (Clearing storage c) {
        c = _clearings[interval % CLEARING_SLOTS];
        uint64 previous = c.interval;
        if (previous == interval && (c.priced || c.chunks > 0)) return c;
        bool unused = previous == 0 && !c.priced;
        Interval memory p = _intervals[previous];
        if (!unused && previous != interval && p.status != IntervalStatus.Settled && !_lapsed(p)) {
            revert MarketClearingSlotBusy(interval, previous);
        }
        // One write of every field (no delete: zeroed slots would cost a fresh write later).
        // All zero but what is set below, on purpose.
        // slither-disable-next-line uninitialized-local
        Clearing memory fresh;
        (fresh.interval, fresh.keepC, fresh.keepD) = (interval, 1, 1);
        _clearings[interval % CLEARING_SLOTS] = fresh;
    }

    function _storeTally(Clearing storage c, uint64 interval, MarketClearing.Tally memory t) private {
        if (t.boughtWh > type(uint48).max || t.soldWh > type(uint48).max) revert MarketTotalsOverflow(interval);
        if (t.buyValue > type(uint72).max || t.sellValue > type(uint72).max) revert MarketTotalsOverflow(interval);
        c.lastId = uint192(t.lastId & _LOW_MASK);
        c.boughtWh = uint48(t.boughtWh);
        c.soldWh = uint48(t.soldWh);
        c.buyValue = uint72(t.buyValue);
        c.sellValue = uint72(t.sellValue);
    }

    /// @dev The fee recipient (balancing party) receives `rent + charges` and pays `refunds`.
    function _payBalancing(uint64 interval, uint256 charges, uint256 refunds, uint256 rent) private {
        address fee = _params.feeRecipient;
        MarketSettlement.Account storage a = _accounts[fee];
        uint256 free = a.free;
        uint256 income = rent + charges;
        if (income >= refunds) {
            if (income > refunds) a.free = _toU96(fee, free + income - refunds);
        } else {
            uint256 owed = refunds - income;
            if (free < owed) revert MarketBalancingShortfall(interval, owed, free);
            a.free = uint96(free - owed);
        }
    }

    /// @dev Hashes a chunk's settlement fills exactly as MarketClearing's commit chained them.
    function _hashFills(uint256 chunk, SettlementFill[] calldata fills) private pure returns (bytes32 h) {
        h = bytes32(chunk + 1);
        assembly ("memory-safe") {
            let scratch := mload(0x40)
            let src := fills.offset
            for { let end := add(src, mul(fills.length, 0x80)) } lt(src, end) { src := add(src, 0x80) } {
                mstore(scratch, h)
                calldatacopy(add(scratch, 0x20), src, 0x80)
                h := keccak256(scratch, 0xa0)
            }
        }
    }

    // Setting a calldata slice's offset and then its length is not a lost write.
    // slither-disable-start write-after-write
    function _rawCommitFills(Fill[] calldata fills) private pure returns (bytes calldata raw) {
        assembly ("memory-safe") {
            raw.offset := fills.offset
            raw.length := mul(fills.length, 0x60)
        }
    }

    function _rawFills(SettlementFill[] calldata fills) private pure returns (bytes calldata raw) {
        assembly ("memory-safe") {
            raw.offset := fills.offset
            raw.length := mul(fills.length, 0x80)
        }
    }

    function _rawReadings(SignedReading[] calldata readings) private pure returns (bytes calldata raw) {
        assembly ("memory-safe") {
            raw.offset := readings.offset
            raw.length := mul(readings.length, 0xc0)
        }
    }
    // slither-disable-end write-after-write

    function _liveOrder(uint256 orderId)
        private
        view
        returns (OrderWord[ORDER_SLOTS] storage slots, uint256 index, uint64 interval, address owner)
    {
        bool isBid;
        uint32 nonce;
        (interval, isBid, owner, nonce) = _decodeOrderId(orderId);
        slots = _orders[owner];
        index = nonce % ORDER_SLOTS;
        if (!slots[index].matches(interval, isBid, nonce)) revert MarketOrderNotFound(orderId);
    }

    function _release(address owner, uint256 lock) private {
        MarketSettlement.Account memory a = _accounts[owner];
        a.locked -= uint96(lock);
        a.free = _toU96(owner, a.free + lock);
        _accounts[owner] = a;
    }

    function _orderId(uint64 interval, bool isBid, address owner, uint32 nonce) private pure returns (uint256) {
        return (uint256(interval) << 192) | (isBid ? _BID_BIT : 0) | (uint256(uint160(owner)) << 31) | nonce;
    }

    /// @dev Whether the operator missed `clearBy` before clearing. A Cleared interval never
    /// lapses: after `settleBy` anyone can settle it.
    function _lapsed(Interval memory iv) private view returns (bool) {
        IntervalStatus status = iv.status;
        // slither-disable-next-line incorrect-equality
        if (status == IntervalStatus.Open || status == IntervalStatus.Closed) return block.timestamp > iv.clearBy;
        return false;
    }

    function _checkParams(Params memory p) private view {
        if (p.feeRecipient == address(0) || p.feeRecipient == address(this)) {
            revert MarketFeeRecipientInvalid(p.feeRecipient);
        }
        if (p.operator == address(0)) revert MarketZeroAddress();
        if (p.operator == _admin || p.operator == _pendingAdmin) revert MarketOperatorIsAdmin(p.operator);
        if (p.clearTimeout == 0 || p.settleTimeout == 0 || p.clearTimeout > MAX_TIMEOUT || p.settleTimeout > MAX_TIMEOUT)
        {
            revert MarketTimeoutOutOfRange(p.clearTimeout, p.settleTimeout);
        }
        if (p.imbalanceBuy > p.collateralRate) revert MarketImbalanceBuyAboveCollateral(p.imbalanceBuy, p.collateralRate);
        if (p.imbalanceSell > p.imbalanceBuy) revert MarketImbalanceSellAboveBuy(p.imbalanceSell, p.imbalanceBuy);
    }

    function _emitParams(Params memory p) private {
        emit ParametersSet(
            p.collateralRate, p.imbalanceBuy, p.imbalanceSell, p.clearTimeout, p.settleTimeout, p.feeRecipient, p.operator
        );
    }

    function _toU96(address account, uint256 x) private pure returns (uint96) {
        if (x > type(uint96).max) revert MarketBalanceOverflow(account, x);
        return uint96(x);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IEnergyMarket — the vocabulary of GridSwarm's on-chain energy market
/// @notice Units: quantities in whole Wh, prices in settlement-token base units per Wh (the token
/// has 6 decimals), so `cost = qty * price` is exact. Time is block time.
///
/// The contract enforces the market's rules itself; the operator key is assumed hostile. The
/// rules, in brief (docs/contracts.md states them in full, with a worked example):
///  - Clearing: per interval the operator commits one price per zone and one flow per registered
///    link; every fill is at its zone's price; a bid fills only if `limit >= price`, an offer only
///    if `limit <= price`; an order strictly in the money fills in full, only a marginal order
///    (`limit == price`) may fill in part; per zone, bought - sold == inflow - outflow; each flow
///    is within its link's limit, and a link with flow has `price[to] - price[from] >= fee`, a
///    link below its limit `price[to] - price[from] <= fee`. The fee recipient receives exactly
///    `sum(flow * (price[to] - price[from]))` = grid fees x flows + congestion rent.
///  - Settlement (imbalance settlement): each fill trades financially at its zone price. A seller
///    whose signed metered export falls short of its fills pays the shortfall at the interval's
///    imbalance buy price; a buyer whose signed metered import falls short of its fills is paid
///    the unused energy at the imbalance sell price (by the fee recipient, the balancing party).
///    No reading counts as the worst case: a seller exported nothing, a buyer used all it bought.
///    Deviations beyond a fill (exporting or importing more) are outside the market.
///  - Powers: parameter, link and operator changes wait `CHANGE_DELAY` after being announced; the
///    admin transfers in two steps with the same delay; the admin is never the operator; the fee
///    recipient is never the market or zero.
///
/// Interval lifecycle: Open -> Closed -> (prices) -> Cleared -> Settled. Orders are posted while
/// Open; the operator closes the gate, commits the zone prices and flows, then commits exactly
/// one fill per live order in ascending order id, in chunks (one chunk per transaction), and
/// finalises them; settlement replays the chunks (one transaction each, last chunk first), each
/// with the signed meter readings of its owners. Before `settleBy` only the operator settles;
/// after it anyone may. If the operator misses `clearBy` before the interval is Cleared, every
/// owner recovers its own locks with {recover}.
///
/// Order ids are self-describing 256-bit numbers (see {orderIdOf}):
/// `interval << 192 | isBid << 191 | owner << 31 | nonce`, where `nonce` is the owner's order
/// counter times 16 plus the order's storage slot. Within an interval, offers sort before bids
/// and each side sorts by owner.
interface IEnergyMarket {
    /// @notice Which side of the market an order is on.
    enum Side {
        Bid,
        Offer
    }

    /// @notice Where an interval is in its lifecycle.
    enum IntervalStatus {
        None,
        Open,
        Closed,
        Cleared,
        Settled
    }

    /// @notice Market parameters; every change is announced and waits `CHANGE_DELAY`.
    /// @param collateralRate seller collateral locked per offered Wh
    /// @param imbalanceBuy what a seller pays per Wh of its fill it did not export (at most
    /// `collateralRate`, so the collateral always covers it)
    /// @param imbalanceSell what a buyer is paid per Wh of its fill it did not import (at most
    /// `imbalanceBuy`)
    /// @param clearTimeout seconds from opening until the interval must be cleared
    /// @param settleTimeout seconds from clearing until only the operator may settle
    /// @param feeRecipient who receives grid fees and congestion rent and balances imbalances
    /// @param operator who runs intervals (never the admin)
    struct Params {
        uint24 collateralRate;
        uint24 imbalanceBuy;
        uint24 imbalanceSell;
        uint32 clearTimeout;
        uint32 settleTimeout;
        address feeRecipient;
        address operator;
    }

    /// @notice A registered directed link between zones: energy sold in `fromZone` may serve
    /// buyers in `toZone`, at `fee` per Wh carried, at most `limitWh` per interval.
    struct Link {
        uint16 fromZone;
        uint16 toZone;
        uint24 fee;
        uint64 limitWh;
    }

    /// @notice One zone's clearing price for an interval.
    struct ZonePrice {
        uint16 zone;
        uint24 price;
    }

    /// @notice One order's result of clearing: how much of it traded, at its zone's price.
    /// @dev Every live order of an interval gets exactly one fill; `qty` may be zero. `price`
    /// must equal the committed price of the order's zone.
    struct Fill {
        uint256 orderId;
        uint256 qty;
        uint256 price;
    }

    /// @notice A committed fill as settlement reads it back: the fill plus the lock its order
    /// holds. Checked against the hash of the commit chunk it came in, so none of it can change.
    struct SettlementFill {
        uint256 orderId;
        uint256 qty;
        uint256 price;
        uint256 lock;
    }

    /// @notice A participant's metered energy at its grid connection for one interval, signed
    /// by the participant's Ethereum key as EIP-712 typed data. Sellers' export and buyers'
    /// import are what settlement uses.
    struct MeterReading {
        address participant;
        uint64 interval;
        uint64 exportedWh;
        uint64 importedWh;
    }

    /// @notice A meter reading with its EIP-2098 compact signature (`r`, `vs`).
    struct SignedReading {
        MeterReading reading;
        bytes32 r;
        bytes32 vs;
    }

    // ------------------------------------------------------------------ events

    /// @notice A participant was registered (or registered again after removal).
    event ParticipantRegistered(address indexed account, bytes32 ed25519Key, uint16 zone);
    /// @notice A participant's Ed25519 key was replaced.
    event ParticipantKeyRotated(address indexed account, bytes32 ed25519Key);
    /// @notice A participant moved to another grid zone; its later orders carry the new zone.
    event ParticipantZoneChanged(address indexed account, uint16 zone);
    /// @notice A participant can no longer deposit or post orders; its funds and orders stay.
    event ParticipantRemoved(address indexed account);
    /// @notice The coordinator's Ed25519 key (which signs dispatch commands) was published.
    event CoordinatorKeySet(bytes32 ed25519Key);
    /// @notice Parameters in force from now on (also emitted at deployment).
    event ParametersSet(
        uint24 collateralRate,
        uint24 imbalanceBuy,
        uint24 imbalanceSell,
        uint32 clearTimeout,
        uint32 settleTimeout,
        address feeRecipient,
        address operator
    );
    /// @notice A parameter change was announced; it can be applied from `effectiveAt` on.
    event ParametersScheduled(Params params, uint256 effectiveAt);
    /// @notice The announced parameter change was withdrawn.
    event ParametersCancelled();
    /// @notice The link table in force from now on (also emitted at deployment).
    event LinksSet(Link[] links);
    /// @notice A new link table was announced; it can be applied from `effectiveAt` on.
    event LinksScheduled(Link[] links, uint256 effectiveAt);
    /// @notice A new admin was announced; it may accept from `effectiveAt` on.
    event AdminTransferScheduled(address newAdmin, uint256 effectiveAt);
    /// @notice The admin changed.
    event AdminTransferred(address admin);
    /// @notice New orders were paused or unpaused.
    event PausedSet(bool paused);
    /// @notice Tokens were moved into an internal balance.
    event Deposited(address indexed account, uint256 amount);
    /// @notice Tokens left an internal balance to its wallet.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice An interval opened for orders, with the prices of imbalance fixed for it.
    event IntervalOpened(
        uint64 indexed interval, uint40 clearBy, uint24 collateralRate, uint24 imbalanceBuy, uint24 imbalanceSell
    );
    /// @notice The gate closed: no more orders for the interval.
    event IntervalClosed(uint64 indexed interval, uint32 liveOrders);
    /// @notice An order was posted; carries everything needed to rebuild the book from events.
    event OrderPosted(
        uint64 indexed interval,
        uint256 indexed orderId,
        address indexed owner,
        Side side,
        uint32 qty,
        uint24 price,
        uint16 zone,
        uint256 locked
    );
    /// @notice An order was cancelled while its interval was open.
    event OrderCancelled(uint64 indexed interval, uint256 indexed orderId, address indexed owner, uint256 released);
    /// @notice The operator committed the interval's zone prices and link flows (in link order).
    /// `rent` = sum(flow * (price[to] - price[from])), what the fee recipient receives.
    event PricesCommitted(uint64 indexed interval, ZonePrice[] prices, uint64[] flows, uint256 rent);
    /// @notice The operator committed chunk `chunk` of fills (ascending order id).
    event FillsCommitted(uint64 indexed interval, Fill[] fills);
    /// @notice All fills of an interval are committed and checked.
    event IntervalCleared(
        uint64 indexed interval,
        uint32 fills,
        uint64 boughtWh,
        uint64 soldWh,
        uint128 buyValue,
        uint128 sellValue,
        uint40 settleBy,
        bytes32 fillsHash
    );
    /// @notice Signed meter readings were accepted in settlement.
    event MeterReadingsAccepted(
        uint64 indexed interval, address[] participants, uint256[] exportedWh, uint256[] importedWh
    );
    /// @notice A chunk of fills was settled. Offer: Wh delivered (metered, capped at the fill),
    /// token base units received (`qty * price`), imbalance charge. Bid: Wh used, token base
    /// units paid (`qty * price`), imbalance refund. Each lock went back to its owner.
    event FillsSettled(
        uint64 indexed interval, uint256[] orderIds, uint256[] deliveredWh, uint256[] amounts, uint256[] penalties
    );
    /// @notice A participant's signed reading was put on chain; settlement uses it whenever the
    /// operator does not pass that participant's reading.
    event ReadingSubmitted(uint64 indexed interval, address indexed participant, uint64 exportedWh, uint64 importedWh);
    /// @notice An interval was settled (its last chunk); it can never be settled again.
    /// `surplus` = rent credited to the fee recipient; imbalance charges and refunds moved too.
    event IntervalSettled(uint64 indexed interval, uint64 deliveredWh, uint64 shortfallWh, uint256 surplus);
    /// @notice The fee recipient's imbalance account for an interval: charges received from
    /// short sellers, refunds paid to buyers who used less than they bought.
    event ImbalanceSettled(uint64 indexed interval, uint256 charges, uint256 refunds);
    /// @notice An owner recovered an order's lock from a lapsed interval.
    event OrderRecovered(uint64 indexed interval, uint256 indexed orderId, address indexed owner, uint256 released);

    // ------------------------------------------------------------------ errors

    error MarketNotParticipant(address account);
    error MarketParticipantExists(address account);
    error MarketInvalidKey();
    error MarketZeroAddress();
    error MarketZeroAmount();
    error MarketPaused();
    error MarketInsufficientBalance(address account, uint256 needed, uint256 available);
    error MarketIntervalExists(uint64 interval);
    error MarketIntervalNotOpen(uint64 interval);
    error MarketIntervalNotClosed(uint64 interval);
    error MarketIntervalNotCleared(uint64 interval);
    error MarketIntervalAlreadySettled(uint64 interval);
    error MarketDeadlinePassed(uint64 interval, uint256 deadline);
    error MarketIntervalNotLapsed(uint64 interval);
    error MarketZeroQuantity();
    error MarketZeroPrice();
    /// @notice All ORDER_SLOTS slots of the account hold live orders; `pendingOrderId` is one.
    error MarketTooManyOrders(address account, uint256 pendingOrderId);
    error MarketOrderNotFound(uint256 orderId);
    error MarketNotOrderOwner(uint256 orderId, address caller);
    error MarketOrderNotInInterval(uint256 orderId, uint64 interval);
    error MarketClearingSlotBusy(uint64 interval, uint64 pending);
    error MarketFillsNotAscending(uint256 orderId, uint256 previous);
    error MarketFillExceedsOrder(uint256 orderId, uint256 fill, uint256 qty);
    /// @notice A fill's price is not its zone's committed price.
    error MarketFillNotAtZonePrice(uint256 orderId, uint256 price, uint256 zonePrice);
    /// @notice A bid above (offer below) the price was not filled in full, or a bid below
    /// (offer above) the price was filled at all: only marginal orders fill in part.
    error MarketFillBreaksPriceRule(uint256 orderId, uint256 qty, uint256 limit, uint256 price);
    error MarketFillsIncomplete(uint64 interval, uint32 committed, uint32 liveOrders);
    /// @notice A zone's bought - sold differs from its inflow - outflow.
    error MarketZoneUnbalanced(uint64 interval, uint16 zone, int256 net, int256 expected);
    /// @notice A chunk boundary splits one owner's fills on one side.
    error MarketChunkSplitsOwner(uint256 orderId);
    error MarketPricesAlreadyCommitted(uint64 interval);
    error MarketPricesNotCommitted(uint64 interval);
    error MarketZonePriceMissing(uint256 orderId, uint16 zone);
    error MarketZonesNotAscending(uint256 index, uint16 zone);
    error MarketFlowsLengthMismatch(uint256 flows, uint256 links);
    error MarketFlowAboveLimit(uint256 link, uint256 flow, uint256 limit);
    /// @notice A link's price difference breaks the equilibrium rule for its flow.
    error MarketLinkPriceRule(uint256 link, uint256 flow, int256 priceDifference, uint256 fee);
    error MarketCopperNeedsOnePrice(uint256 prices);
    error MarketChunkNotNext(uint64 interval, uint256 chunk, uint256 expected);
    /// @notice The fills given to settlement are not the committed chunk.
    error MarketFillsMismatch(uint64 interval, bytes32 expected, bytes32 actual);
    error MarketReadingWrongInterval(uint256 index, uint64 interval);
    error MarketReadingsNotAscending(uint256 index, address participant);
    error MarketReadingBadSignature(uint256 index, address participant, address signer);
    /// @notice Before `settleBy` every owner of a non-zero fill needs a reading (in calldata or
    /// submitted on chain).
    error MarketReadingMissing(uint64 interval, address participant);
    error MarketNotOperator(address caller);
    error MarketNotAdmin(address caller);
    error MarketOperatorIsAdmin(address account);
    error MarketFeeRecipientInvalid(address feeRecipient);
    error MarketTimeoutOutOfRange(uint32 clearTimeout, uint32 settleTimeout);
    error MarketImbalanceBuyAboveCollateral(uint24 imbalanceBuy, uint24 collateralRate);
    error MarketImbalanceSellAboveBuy(uint24 imbalanceSell, uint24 imbalanceBuy);
    error MarketNoChangeScheduled();
    error MarketChangeNotDue(uint256 effectiveAt);
    error MarketInvalidLink(uint256 index);
    error MarketTooManyLinks(uint256 links);
    error MarketBalanceOverflow(address account, uint256 balance);
    error MarketNonceExhausted(address account);
    error MarketTotalsOverflow(uint64 interval);
    /// @notice The fee recipient cannot pay the buyers' imbalance refunds of this chunk.
    error MarketBalancingShortfall(uint64 interval, uint256 needed, uint256 available);

    // ------------------------------------------------------------------ functions

    function registerParticipant(address account, bytes32 ed25519Key, uint16 zone) external;
    function rotateKey(bytes32 ed25519Key) external;
    function setZone(address account, uint16 zone) external;
    function removeParticipant(address account) external;
    function setCoordinatorKey(bytes32 ed25519Key) external;
    function scheduleParameters(Params calldata params) external;
    function scheduleLinks(Link[] calldata links) external;
    function cancelScheduled() external;
    function applyScheduled() external;
    function setPaused(bool paused) external;
    function deposit(uint256 amount) external;
    function withdraw(uint256 amount) external;
    function openInterval(uint64 interval) external;
    function closeInterval(uint64 interval) external;
    function postOrder(uint64 interval, Side side, uint32 qty, uint24 price) external returns (uint256 orderId);
    function cancelOrder(uint256 orderId) external;
    function commitPrices(uint64 interval, ZonePrice[] calldata prices, uint64[] calldata flows) external;
    function commitFills(uint64 interval, Fill[] calldata fills, bool last) external;
    function settle(uint64 interval, uint256 chunk, SettlementFill[] calldata fills, SignedReading[] calldata readings)
        external;
    function recover(uint256[] calldata orderIds) external;
    function submitReading(SignedReading calldata reading) external;
}

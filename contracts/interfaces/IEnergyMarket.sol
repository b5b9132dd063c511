// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IEnergyMarket — the vocabulary of GridSwarm's on-chain energy market
/// @notice Units (DESIGN §6): quantities in whole Wh, prices in settlement-token base units per
/// Wh (the token has 6 decimals), so `cost = qty * price` is exact. Time is block time.
///
/// Roles: the admin registers, re-zones and removes participants and sets parameters; the
/// operator opens and closes intervals, commits fills and submits settlements; the pauser stops
/// new orders. The operator can neither register participants nor move funds without meter
/// readings signed by the participants.
///
/// Interval lifecycle: Open -> Closed -> Cleared -> Settled. Orders are posted while Open; the
/// operator closes the gate, commits exactly one fill per live order (quantity may be zero) in
/// ascending order id, in one or more transactions, and finalises them; then it settles from
/// meter readings signed by the participants (EIP-712). If the operator misses `clearBy` (before
/// Cleared) or `settleBy` (before Settled), the interval has lapsed and every owner recovers its
/// own locks with {recover}.
///
/// Order ids are self-describing 256-bit numbers (see {orderIdOf}):
/// `interval << 192 | isBid << 191 | owner << 31 | nonce`, where `nonce` is the owner's order
/// counter. Within an interval, offers sort before bids and each side sorts by owner.
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

    /// @notice One order's result of clearing: how much of it traded and at what price.
    /// @dev `price` is what the owner pays per Wh (bid, including any grid fee) or receives per
    /// Wh (offer). Every live order of an interval gets exactly one fill; `qty` may be zero.
    /// Both are checked against the order (so qty < 2^32) and price must be below 2^32.
    struct Fill {
        uint256 orderId;
        uint256 qty;
        uint256 price;
    }

    /// @notice A committed fill as settlement reads it back: the fill plus the lock its order
    /// holds (the `locked` field of {OrderPosted}). The contract checks all of it against the
    /// hash chain it built at commit time, so none of it can be changed (which also bounds every
    /// field: qty < 2^32, price < 2^32, lock < 2^56).
    struct SettlementFill {
        uint256 orderId;
        uint256 qty;
        uint256 price;
        uint256 lock;
    }

    /// @notice A participant's metered energy at its grid connection for one interval, signed
    /// by the participant's Ethereum key as EIP-712 typed data.
    struct MeterReading {
        address participant;
        uint64 interval;
        uint64 exportedWh;
        uint64 importedWh;
    }

    /// @notice A meter reading with the participant's EIP-712 signature over it, in the compact
    /// 64-byte form of EIP-2098: `r`, and `vs` = `s` with the parity of `v` in its top bit.
    struct SignedReading {
        MeterReading reading;
        bytes32 r;
        bytes32 vs;
    }

    // ------------------------------------------------------------------ events

    /// @notice A participant was registered (or registered again after removal).
    /// @param account the participant's Ethereum address
    /// @param ed25519Key the participant's Ed25519 public key for off-chain envelopes
    /// @param zone the grid zone (feeder / substation) the participant sits in
    event ParticipantRegistered(address indexed account, bytes32 ed25519Key, uint16 zone);

    /// @notice A participant's Ed25519 key was replaced.
    /// @param account the participant
    /// @param ed25519Key the new key
    event ParticipantKeyRotated(address indexed account, bytes32 ed25519Key);

    /// @notice A participant moved to another grid zone; its later orders carry the new zone.
    /// @param account the participant
    /// @param zone the new zone
    event ParticipantZoneChanged(address indexed account, uint16 zone);

    /// @notice A participant can no longer deposit or post orders; its funds stay withdrawable and
    /// its orders still cancel, settle or recover.
    /// @param account the participant
    event ParticipantRemoved(address indexed account);

    /// @notice The coordinator's Ed25519 key (which signs dispatch commands) was published.
    /// @param ed25519Key the coordinator's public key
    event CoordinatorKeySet(bytes32 ed25519Key);

    /// @notice Market parameters changed.
    /// @param collateralRate seller collateral locked per offered Wh (token base units)
    /// @param clearTimeout seconds from opening until the interval must be cleared
    /// @param settleTimeout seconds from clearing until the interval must be settled
    /// @param feeRecipient who receives the market surplus (grid fees, congestion rent)
    event ParametersSet(uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, address feeRecipient);

    /// @notice New orders were paused or unpaused.
    /// @param paused whether posting is now paused
    event PausedSet(bool paused);

    /// @notice Tokens were moved into a participant's internal balance.
    /// @param account the participant
    /// @param amount token base units
    event Deposited(address indexed account, uint256 amount);

    /// @notice Tokens left a participant's internal balance to its wallet.
    /// @param account the participant
    /// @param amount token base units
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice An interval opened for orders.
    /// @param interval the interval id
    /// @param clearBy block time by which it must be cleared
    /// @param collateralRate seller collateral per Wh for offers in this interval
    event IntervalOpened(uint64 indexed interval, uint40 clearBy, uint24 collateralRate);

    /// @notice The gate closed: no more orders for the interval.
    /// @param interval the interval id
    /// @param liveOrders orders that must each receive one fill
    event IntervalClosed(uint64 indexed interval, uint32 liveOrders);

    /// @notice An order was posted; carries everything needed to rebuild the book from events.
    /// @param interval the interval id
    /// @param orderId the order id (unique across intervals, see {orderIdOf})
    /// @param owner the participant
    /// @param side bid or offer
    /// @param qty quantity in Wh
    /// @param price limit price in token base units per Wh
    /// @param zone the owner's zone at posting time
    /// @param locked token base units locked by the order (bid escrow or offer collateral)
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
    /// @param interval the interval id
    /// @param orderId the order id
    /// @param owner the participant
    /// @param released token base units unlocked
    event OrderCancelled(uint64 indexed interval, uint256 indexed orderId, address indexed owner, uint256 released);

    /// @notice The operator committed a batch of fills (one transaction of one or more).
    /// @param interval the interval id
    /// @param fills the fills, in ascending order id: order id, filled Wh (may be zero), and the
    /// price per Wh the owner pays (bid) or receives (offer)
    event FillsCommitted(uint64 indexed interval, Fill[] fills);

    /// @notice All fills of an interval are committed and checked.
    /// @param interval the interval id
    /// @param fills number of fills (one per live order)
    /// @param boughtWh total filled bid quantity
    /// @param soldWh total filled offer quantity (equal to boughtWh)
    /// @param buyValue what buyers pay if everything is delivered
    /// @param sellValue what sellers receive if everything is delivered
    /// @param settleBy block time by which it must be settled
    /// @param fillsHash hash chain over the fills, which settlement must reproduce
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
    /// @param interval the interval id
    /// @param participants who signed them, ascending
    /// @param exportedWh energy each exported during the interval
    /// @param importedWh energy each imported during the interval
    event MeterReadingsAccepted(
        uint64 indexed interval, address[] participants, uint256[] exportedWh, uint256[] importedWh
    );

    /// @notice An interval's fills were settled (all of them, in commit order). For an offer:
    /// Wh delivered, token base units received, collateral forfeited. For a bid: Wh received,
    /// token base units paid, compensation received. Each order's lock (the `locked` of
    /// {OrderPosted}) went back to its owner's free balance.
    /// @param interval the interval id
    /// @param orderIds the settled orders
    /// @param deliveredWh per order: Wh delivered (offer) or received (bid)
    /// @param amounts per order: token base units received (offer) or paid (bid)
    /// @param penalties per order: collateral forfeited (offer) or compensation received (bid)
    event FillsSettled(
        uint64 indexed interval, uint256[] orderIds, uint256[] deliveredWh, uint256[] amounts, uint256[] penalties
    );

    /// @notice An interval was settled; it can never be settled again.
    /// @param interval the interval id
    /// @param deliveredWh energy delivered by sellers (capped at their fills)
    /// @param shortfallWh filled energy that was not delivered
    /// @param surplus token base units credited to the fee recipient
    event IntervalSettled(uint64 indexed interval, uint64 deliveredWh, uint64 shortfallWh, uint256 surplus);

    /// @notice An owner recovered an order's lock from a lapsed interval.
    /// @param interval the interval id
    /// @param orderId the order id
    /// @param owner the participant
    /// @param released token base units unlocked
    event OrderRecovered(uint64 indexed interval, uint256 indexed orderId, address indexed owner, uint256 released);

    // ------------------------------------------------------------------ errors

    /// @notice The caller or account is not a registered participant.
    error MarketNotParticipant(address account);
    /// @notice The account is already registered.
    error MarketParticipantExists(address account);
    /// @notice An Ed25519 key must not be zero.
    error MarketInvalidKey();
    /// @notice An address parameter must not be zero.
    error MarketZeroAddress();
    /// @notice An amount must not be zero.
    error MarketZeroAmount();
    /// @notice A parameter is out of its allowed range.
    error MarketInvalidParameter();
    /// @notice Posting is paused.
    error MarketPaused();
    /// @notice The account's free internal balance is too small.
    error MarketInsufficientBalance(address account, uint256 needed, uint256 available);
    /// @notice The interval id is already in use.
    error MarketIntervalExists(uint64 interval);
    /// @notice The interval is not open for orders.
    error MarketIntervalNotOpen(uint64 interval);
    /// @notice The interval is not closed (fills are committed only after gate closure).
    error MarketIntervalNotClosed(uint64 interval);
    /// @notice The interval is not cleared (settlement comes after clearing).
    error MarketIntervalNotCleared(uint64 interval);
    /// @notice The interval is already settled; settling twice is impossible.
    error MarketIntervalAlreadySettled(uint64 interval);
    /// @notice The operator's deadline for this step has passed: the interval has lapsed.
    error MarketDeadlinePassed(uint64 interval, uint256 deadline);
    /// @notice The interval has not lapsed, so its locks cannot be recovered yet.
    error MarketIntervalNotLapsed(uint64 interval);
    /// @notice Order quantity must be positive.
    error MarketZeroQuantity();
    /// @notice Order price must be positive.
    error MarketZeroPrice();
    /// @notice The account's order slot is still held by an unsettled order: it has
    /// `ORDER_SLOTS` orders in flight. Settle, cancel or recover `pendingOrderId` first.
    error MarketTooManyOrders(address account, uint256 pendingOrderId);
    /// @notice The order does not exist or is no longer live (cancelled or recovered).
    error MarketOrderNotFound(uint256 orderId);
    /// @notice Only the order's owner may do this.
    error MarketNotOrderOwner(uint256 orderId, address caller);
    /// @notice The order belongs to another interval.
    error MarketOrderNotInInterval(uint256 orderId, uint64 interval);
    /// @notice The interval's clearing slot still holds `pending`, which has neither settled nor
    /// lapsed: CLEARING_SLOTS intervals are between gate closure and settlement already.
    error MarketClearingSlotBusy(uint64 interval, uint64 pending);
    /// @notice Fills must come in strictly ascending order id (so no order is filled twice).
    error MarketFillsNotAscending(uint256 orderId, uint256 previous);
    /// @notice A fill is larger than its order.
    error MarketFillExceedsOrder(uint256 orderId, uint256 fill, uint256 qty);
    /// @notice A fill's price is above the bid's limit or below the offer's limit.
    error MarketFillPriceOutsideLimit(uint256 orderId, uint256 price, uint256 limit);
    /// @notice Not every live order received a fill.
    error MarketFillsIncomplete(uint64 interval, uint32 committed, uint32 liveOrders);
    /// @notice Filled bid quantity differs from filled offer quantity.
    error MarketFillsUnbalanced(uint64 interval, uint64 boughtWh, uint64 soldWh);
    /// @notice Buyers would pay less than sellers receive.
    error MarketFillsValueDeficit(uint64 interval, uint256 buyValue, uint256 sellValue);
    /// @notice The fills given to settlement are not the committed ones (or not all of them).
    error MarketFillsMismatch(uint64 interval, bytes32 expected, bytes32 actual);
    /// @notice A meter reading is for another interval.
    error MarketReadingWrongInterval(uint256 index, uint64 interval);
    /// @notice Meter readings must come in strictly ascending participant address (one each).
    error MarketReadingsNotAscending(uint256 index, address participant);
    /// @notice A meter reading was not signed by its participant.
    error MarketReadingBadSignature(uint256 index, address participant, address signer);

    // ------------------------------------------------------------------ participants

    /// @notice Registers a participant, or registers a removed one again (admin). A returning
    /// participant keeps its balance and order counter.
    function registerParticipant(address account, bytes32 ed25519Key, uint16 zone) external;
    /// @notice Replaces the caller's Ed25519 key (the participant itself).
    function rotateKey(bytes32 ed25519Key) external;
    /// @notice Moves a participant to another zone (admin); orders already posted keep theirs.
    function setZone(address account, uint16 zone) external;
    /// @notice Stops a participant from depositing and posting orders (admin); never touches its
    /// funds or its orders.
    function removeParticipant(address account) external;
    /// @notice Publishes (or rotates) the coordinator's Ed25519 key (admin).
    function setCoordinatorKey(bytes32 ed25519Key) external;
    /// @notice Sets market parameters (admin). Open intervals keep the collateral rate and
    /// deadline they opened with; timeouts are bounded so no lock can be held for long.
    function setParameters(uint24 collateralRate, uint32 clearTimeout, uint32 settleTimeout, address feeRecipient)
        external;
    /// @notice Pauses or unpauses new orders (pauser). Nothing else stops.
    function setPaused(bool paused) external;

    // ------------------------------------------------------------------ balances

    /// @notice Moves `amount` tokens from the caller's wallet into its internal balance.
    function deposit(uint256 amount) external;
    /// @notice Moves `amount` of the caller's free internal balance to its wallet. Works for
    /// everyone who has a balance, registered or not, paused or not.
    function withdraw(uint256 amount) external;

    // ------------------------------------------------------------------ intervals and orders

    /// @notice Opens an interval for orders (operator).
    function openInterval(uint64 interval) external;
    /// @notice Closes the gate of an interval (operator).
    function closeInterval(uint64 interval) external;
    /// @notice Posts a bid (locks qty*price) or an offer (locks qty*collateralRate); any part of
    /// the lock the free balance does not cover is pulled from the caller's wallet.
    /// @return orderId the new order's id
    function postOrder(uint64 interval, Side side, uint32 qty, uint24 price) external returns (uint256 orderId);
    /// @notice Cancels the caller's order while its interval is open and releases its lock.
    function cancelOrder(uint256 orderId) external;
    /// @notice Commits fills in ascending order id (operator); `last` finalises the clearing.
    function commitFills(uint64 interval, Fill[] calldata fills, bool last) external;
    /// @notice Settles an interval (operator): `fills` are the committed fills in commit order
    /// with their locks; `readings` are signed meter readings in ascending participant order.
    function settle(uint64 interval, SettlementFill[] calldata fills, SignedReading[] calldata readings) external;
    /// @notice Recovers the caller's locks from orders of lapsed intervals.
    function recover(uint256[] calldata orderIds) external;
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IEnergyMarket — the vocabulary of GridSwarm's on-chain energy market
/// @notice Units (DESIGN §6): quantities in whole Wh, prices in settlement-token base units per
/// Wh (the token has 6 decimals), so `cost = qty * price` is exact. Time is block time.
///
/// Interval lifecycle: Open -> Closed -> Cleared -> Settled. Orders are posted while Open; the
/// operator closes the gate, commits exactly one fill per live order (quantity may be zero) in
/// one or more transactions and finalises them, and settles from meter readings signed by the
/// participants (EIP-712). If the operator misses `clearBy` (before Cleared) or `settleBy`
/// (before Settled), the interval has lapsed and every owner recovers its own locks.
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
    struct Fill {
        uint256 orderId;
        uint32 qty;
        uint32 price;
    }

    /// @notice A participant's metered energy at its grid connection for one interval, signed
    /// by the participant's Ethereum key as EIP-712 typed data.
    struct MeterReading {
        address participant;
        uint64 interval;
        uint64 exportedWh;
        uint64 importedWh;
    }

    /// @notice A meter reading with the participant's EIP-712 signature over it.
    struct SignedReading {
        MeterReading reading;
        bytes signature;
    }

    // ------------------------------------------------------------------ events

    /// @notice A participant was registered.
    /// @param account the participant's Ethereum address
    /// @param ed25519Key the participant's Ed25519 public key for off-chain envelopes
    /// @param zone the grid zone (feeder / substation) the participant sits in
    event ParticipantRegistered(address indexed account, bytes32 ed25519Key, uint16 zone);

    /// @notice A participant's Ed25519 key was replaced.
    /// @param account the participant
    /// @param ed25519Key the new key
    event ParticipantKeyRotated(address indexed account, bytes32 ed25519Key);

    /// @notice A participant can no longer post orders; its funds stay withdrawable.
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
    /// @param orderId the order id (unique across intervals)
    /// @param owner the participant
    /// @param side bid or offer
    /// @param qty quantity in Wh
    /// @param price limit price in token base units per Wh
    /// @param zone the owner's zone
    /// @param locked token base units locked by the order (escrow or collateral)
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

    /// @notice The operator committed one order's fill.
    /// @param interval the interval id
    /// @param orderId the order id
    /// @param qty filled Wh (may be zero)
    /// @param price token base units per Wh paid (bid) or received (offer)
    event FillCommitted(uint64 indexed interval, uint256 indexed orderId, uint32 qty, uint32 price);

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

    /// @notice A participant's signed meter reading was accepted in settlement.
    /// @param interval the interval id
    /// @param participant the participant who signed it
    /// @param exportedWh energy exported during the interval
    /// @param importedWh energy imported during the interval
    event MeterReadingAccepted(uint64 indexed interval, address indexed participant, uint64 exportedWh, uint64 importedWh);

    /// @notice One fill was settled.
    /// @param interval the interval id
    /// @param orderId the order id
    /// @param owner the participant
    /// @param deliveredWh Wh delivered (offer) or received (bid) under the settlement rule
    /// @param amount token base units paid (bid) or received (offer)
    /// @param penalty collateral received as compensation (bid) or forfeited (offer)
    /// @param released lock released back to the owner's free balance
    event FillSettled(
        uint64 indexed interval,
        uint256 indexed orderId,
        address indexed owner,
        uint32 deliveredWh,
        uint256 amount,
        uint256 penalty,
        uint256 released
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
    /// @notice The order does not exist (never posted, cancelled, settled or recovered).
    error MarketOrderNotFound(uint256 orderId);
    /// @notice Only the order's owner may do this.
    error MarketNotOrderOwner(uint256 orderId, address caller);
    /// @notice The order belongs to another interval.
    error MarketOrderNotInInterval(uint256 orderId, uint64 interval);
    /// @notice The order already received its fill.
    error MarketOrderAlreadyFilled(uint256 orderId);
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
    /// @notice The fills given to settlement are not the committed ones.
    error MarketFillsMismatch(uint64 interval, bytes32 expected, bytes32 actual);
    /// @notice `readingOf` must have one entry per fill.
    error MarketLengthMismatch();
    /// @notice A meter reading is for another interval.
    error MarketReadingWrongInterval(uint256 index, uint64 interval);
    /// @notice A meter reading was not signed by its participant.
    error MarketReadingBadSignature(uint256 index, address participant, address signer);
    /// @notice A fill points at a meter reading of another participant.
    error MarketReadingNotOwner(uint256 fillIndex, uint256 readingIndex);

    // ------------------------------------------------------------------ participants

    /// @notice Registers a participant (admin).
    function registerParticipant(address account, bytes32 ed25519Key, uint16 zone) external;
    /// @notice Replaces the caller's Ed25519 key.
    function rotateKey(bytes32 ed25519Key) external;
    /// @notice Stops a participant from posting orders (admin); never touches its funds.
    function removeParticipant(address account) external;
    /// @notice Publishes the coordinator's Ed25519 key (admin).
    function setCoordinatorKey(bytes32 ed25519Key) external;

    // ------------------------------------------------------------------ balances

    /// @notice Moves `amount` tokens from the caller's wallet into its internal balance.
    function deposit(uint256 amount) external;
    /// @notice Moves `amount` of the caller's free internal balance to its wallet.
    function withdraw(uint256 amount) external;

    // ------------------------------------------------------------------ intervals and orders

    /// @notice Opens an interval for orders (operator).
    function openInterval(uint64 interval) external;
    /// @notice Closes the gate of an interval (operator).
    function closeInterval(uint64 interval) external;
    /// @notice Posts a bid (locks qty*price) or an offer (locks qty*collateralRate).
    /// @return orderId the new order's id
    function postOrder(uint64 interval, Side side, uint32 qty, uint24 price) external returns (uint256 orderId);
    /// @notice Cancels the caller's order while its interval is open.
    function cancelOrder(uint256 orderId) external;
    /// @notice Commits fills (operator); `last` finalises the interval's clearing.
    function commitFills(uint64 interval, Fill[] calldata fills, bool last) external;
    /// @notice Settles an interval from signed meter readings (operator).
    function settle(
        uint64 interval,
        Fill[] calldata fills,
        uint32[] calldata readingOf,
        SignedReading[] calldata readings
    ) external;
    /// @notice Recovers the caller's locks from orders of lapsed intervals.
    function recover(uint256[] calldata orderIds) external;
}

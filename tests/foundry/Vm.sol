// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @dev The few Foundry cheatcodes these tests use (there is no forge-std offline).
interface Vm {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function warp(uint256 timestamp) external;
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
    function assume(bool condition) external pure;
}

address constant VM_ADDRESS = address(uint160(uint256(keccak256("hevm cheat code"))));

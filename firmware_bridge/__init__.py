"""firmware_bridge: the serial hardware backend behind the driver interface.

- `protocol`: the wire protocol (COBS, CRC-16, frames, messages, streaming parser);
- `link`: one serial link to a device: handshake, heartbeats, loss counting, reconnects;
- `bridge_node`: the ROS 2 node (cmd_vel in; odom, diagnostics, battery out; estop service);
- `firmware/`: the C reference firmware core, its Arduino board layer and host emulator.
"""

"""The web operator view: a page and a small HTTP + WebSocket API served by the fleet.

- `view`: what the page shows, as JSON documents (pure: no rclpy, no aiohttp);
- `api`: the HTTP + WebSocket API (aiohttp) over an operator backend;
- `operator_node`: the ROS 2 node that is that backend (subscribes to the fleet, calls
  its services) and hosts the server; `ros2 run fleet_coord operator_view`;
- `static/`: the page (HTML, JavaScript, CSS; no build step).

API reference: docs/operator-view.md.
"""

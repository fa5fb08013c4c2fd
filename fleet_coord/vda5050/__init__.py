"""VDA 5050 3.0 for fleet_coord (docs/vda5050.md): master control of AGVs/AMRs over MQTT
whose orders are released from the robot's reservations, and an emulated vehicle.

Pure modules (no MQTT, no ROS): ``schema`` (the official JSON schemas), ``protocol``
(topics, headers, checks on received messages), ``orders`` (route, release rule, order
updates), ``vehicle`` (the emulated vehicle). Programs: ``emulator`` (MQTT), ``master``
(ROS 2 node + MQTT); ``broker`` runs a private Mosquitto for tests and demos.
"""

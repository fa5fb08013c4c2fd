"""The pure core: roadmap, reservation table, planner, Contract Net, tasks.

No rclpy here. Time is always a parameter; randomness always takes a seed.
"""

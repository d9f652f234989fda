"""rosbag2 bags without a ROS install: generate, replay, record, evaluate and render.

Bag files are read and written with ``rosbags`` (pure Python); replay and record use
rclpy and are imported lazily, so the rest works where rclpy is absent.
"""

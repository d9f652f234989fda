"""ROS 2 adapters. ``conversions`` and ``params`` are pure Python (no rclpy);
``node`` and ``lifecycle_node`` are thin rclpy adapters over :mod:`irstd_ros.inference`."""

"""irstd_ros: infrared small target detection (SGEM-UNet) for ROS 2."""
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

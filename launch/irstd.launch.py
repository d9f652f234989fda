"""Start the infrared small target detector.

    ros2 launch irstd_ros irstd.launch.py image_topic:=/cam0/image_raw camera_info_topic:=/cam0/camera_info namespace:=cam0
    ros2 launch irstd_ros irstd.launch.py params_file:=/path/to/my.yaml use_lifecycle:=true
    ros2 launch irstd_ros irstd.launch.py use_lifecycle:=true autostart:=true
    ros2 launch irstd_ros irstd.launch.py dds_profile:=large_images
    ros2 launch irstd_ros irstd.launch.py image_topic:=/cam0/image_raw image_transport:=compressed
    ros2 launch irstd_ros irstd.launch.py use_sim_time:=true   # with `ros2 bag play --clock`

Arguments:
    image_topic    input sensor_msgs/Image topic; the node's 'image' is remapped to it
                   (input.transport compressed reads <image_topic>/compressed)
    image_transport  the parameter input.transport, over the params file's: '' (default)
                   keeps the file's (raw in the shipped one); raw: sensor_msgs/Image on
                   image_topic; compressed: sensor_msgs/CompressedImage (png, jpeg) on
                   <image_topic>/compressed, as image_transport's compressed publishes it
    camera_info_topic  the camera's sensor_msgs/CameraInfo topic (bearings); the node's
                   'camera_info' is remapped to it (default: camera_info in the node's
                   namespace; set it beside image_topic, e.g. /camera/camera_info)
    namespace      namespace of the node and of its output topics
    params_file    parameters YAML (default: share/irstd_ros/config/irstd.yaml)
    use_lifecycle  false: irstd_node; true: the managed node irstd_lifecycle_node
                   (configure/activate it, e.g. `ros2 lifecycle set /irstd_node configure`)
    autostart      with use_lifecycle: true: the managed node configures and activates
                   itself at start (`irstd_lifecycle_node --autostart true`)
    dds_profile    '' (default): the DDS environment as it is; 'large_images': the shipped
                   Fast DDS profile for full-resolution frames (config/dds/); or the path
                   of an XML profile. Set for every process this launch starts after it
                   (include this file before a camera driver's launch to cover both ends).
    use_sim_time   the node's use_sim_time, over the params file's: '' (default) keeps the
                   file's (false unless it sets it); true: the node's clock is /clock (a bag
                   played with --clock, a simulator); true/false/1/0 in any case, as a parent
                   launch file passes it

Without launch (e.g. in the project's venv), irstd_ros.ros.launch_args.node_command()
gives the same command line this file makes launch_ros run.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from irstd_ros.ros.launch_args import parameter_overrides
from irstd_ros.ros.transport import launch_profile_environment


def dds_environment(context):
    """SetEnvironmentVariable actions for the dds_profile argument (none for '')."""
    share = get_package_share_directory('irstd_ros')
    value = LaunchConfiguration('dds_profile').perform(context)
    return [SetEnvironmentVariable(k, v) for k, v in launch_profile_environment(value, share).items()]


def detector_nodes(context):
    """The node: irstd_node, or with use_lifecycle:=true the managed irstd_lifecycle_node.
    image_transport and use_sim_time, when given, are set over the params file's
    input.transport and use_sim_time (launch_ros passes them after the file, so they win);
    '' leaves the file's."""
    use_lifecycle = LaunchConfiguration('use_lifecycle')
    parameters = [LaunchConfiguration('params_file')]
    overrides = parameter_overrides(LaunchConfiguration('image_transport').perform(context),
                                    LaunchConfiguration('use_sim_time').perform(context))
    if overrides:
        parameters.append(overrides)
    common = dict(
        package='irstd_ros',
        name='irstd_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=parameters,
        remappings=[('image', LaunchConfiguration('image_topic')),
                    ('camera_info', LaunchConfiguration('camera_info_topic'))],
        output='screen',
        emulate_tty=True,
    )
    detector = Node(
        executable='irstd_node',
        condition=UnlessCondition(use_lifecycle),
        **common,
    )
    managed_detector = LifecycleNode(
        executable='irstd_lifecycle_node',
        arguments=['--autostart', LaunchConfiguration('autostart')],
        condition=IfCondition(use_lifecycle),
        **common,
    )
    return [detector, managed_detector]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('irstd_ros'), 'config', 'irstd.yaml')

    arguments = [
        DeclareLaunchArgument(
            'image_topic', default_value='image',
            description="Input image topic (sensor_msgs/Image), remapped from 'image'"),
        DeclareLaunchArgument(
            'image_transport', default_value='', choices=['', 'raw', 'compressed'],
            description="The node's input.transport, over the params file's: '' keeps the file's, "
                        'raw (sensor_msgs/Image on image_topic) or compressed (CompressedImage '
                        'on <image_topic>/compressed)'),
        DeclareLaunchArgument(
            'camera_info_topic', default_value='camera_info',
            description="The camera's CameraInfo topic (for bearings), remapped from 'camera_info'"),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node and of its topics'),
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='ROS 2 parameters YAML of the node'),
        DeclareLaunchArgument(
            'use_lifecycle', default_value='false', choices=['true', 'false'],
            description='Start the managed (lifecycle) node irstd_lifecycle_node'),
        DeclareLaunchArgument(
            'autostart', default_value='false', choices=['true', 'false'],
            description='Managed node only: configure and activate it at start'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='',
            description="The node's use_sim_time, over the params file's: '' keeps the file's "
                        '(false unless it sets it); true: the clock is /clock (a bag played '
                        'with --clock, a simulator)'),
        DeclareLaunchArgument(
            'dds_profile', default_value='',
            description="Fast DDS XML profile for the processes launched after it: '' keeps the "
                        "environment, 'large_images' the shipped one for full-resolution frames, "
                        'or a path'),
    ]

    # the environment first: it must be set before any process starts
    return LaunchDescription(arguments + [OpaqueFunction(function=dds_environment),
                                          OpaqueFunction(function=detector_nodes)])

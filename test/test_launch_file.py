"""launch/irstd.launch.py, tested without `launch` (not installable from a registry here).

1. Its syntax tree: the declared arguments, executables, node name and package.
2. Run against recording stand-ins of launch/launch_ros: the node each value of
   use_lifecycle starts, and the command line launch_ros would build for it, which must
   be irstd_ros.ros.launch_args.node_command() -- what the node-process tests run.
3. The package plumbing that makes `ros2 launch irstd_ros irstd.launch.py` work.
4. Where the real launch is importable (a ROS install), its own parse of the file.
"""

from __future__ import annotations

import ast
import importlib
import re
import runpy
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from irstd_ros.ros import launch_args
from irstd_ros.ros.launch_args import (
    IMAGE_TRANSPORTS,
    LAUNCH_ARGUMENTS,
    LIFECYCLE_EXECUTABLE,
    NODE_NAME,
    PACKAGE,
    SIM_TIME_PARAM,
    TRANSPORT_PARAM,
    executable_for,
    node_command,
)
from irstd_ros.ros.params import SPECS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "irstd.launch.py"
SHARE = "/opt/fake_ros/share/irstd_ros"


# 1. syntax tree ------------------------------------------------------------------------


def calls(tree: ast.AST, func_name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == func_name:
                out.append(node)
    return out


def kwarg(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def test_declares_exactly_the_documented_arguments(tree):
    declared = {}
    for call in calls(tree, "DeclareLaunchArgument"):
        name = ast.literal_eval(call.args[0])
        default = kwarg(call, "default_value")
        declared[name] = default
        assert kwarg(call, "description") is not None, f"{name} has no description"
    assert set(declared) == set(LAUNCH_ARGUMENTS)
    for name, (default, _) in LAUNCH_ARGUMENTS.items():
        if default is not None:
            assert ast.literal_eval(declared[name]) == default, name


def test_image_transport_offers_the_parameter_s_choices(tree):
    """'' (the params file's value), then exactly input.transport's choices."""
    (call,) = [c for c in calls(tree, "DeclareLaunchArgument")
               if ast.literal_eval(c.args[0]) == "image_transport"]
    assert tuple(ast.literal_eval(kwarg(call, "choices"))) == IMAGE_TRANSPORTS
    assert IMAGE_TRANSPORTS == ("", *SPECS[TRANSPORT_PARAM].choices)
    # the parameter is named by launch_args.parameter_overrides, which the launch file calls
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "parameter_overrides" in names


def test_names_package_executables_node_name_and_config(tree):
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert {PACKAGE, NODE_NAME, "irstd_node", LIFECYCLE_EXECUTABLE, "config", "irstd.yaml"} <= strings
    execs = {ast.literal_eval(kwarg(c, "executable")) for c in calls(tree, "Node") + calls(tree, "LifecycleNode")}
    assert execs == {"irstd_node", LIFECYCLE_EXECUTABLE}
    assert calls(tree, "generate_launch_description") == []  # defined, not called
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)


# 2. run against stand-ins ----------------------------------------------------------------


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):  # the stand-in context is the argument values
        return context[self.name]


class _Condition:
    def __init__(self, expr):
        self.expr = expr

    def truth(self, values) -> bool:
        value = values[self.expr.name] if isinstance(self.expr, LaunchConfiguration) else self.expr
        value = str(value).strip().lower()
        assert value in ("true", "false", "1", "0"), value
        return value in ("true", "1")


class IfCondition(_Condition):
    def holds(self, values):
        return self.truth(values)


class UnlessCondition(_Condition):
    def holds(self, values):
        return not self.truth(values)


class DeclareLaunchArgument:
    def __init__(self, name, default_value=None, description="", choices=None):
        self.name, self.default_value, self.choices = name, default_value, choices


class Node:
    def __init__(self, *, executable, package=None, name=None, namespace=None, parameters=None,
                 remappings=None, condition=None, arguments=None, **_other):
        self.executable, self.package, self.name, self.namespace = executable, package, name, namespace
        self.arguments = arguments or []
        self.parameters, self.remappings, self.condition = parameters or [], remappings or [], condition

    def command(self, values) -> list[str]:
        """The command line launch_ros (>= Humble) builds for this node, with ``executable``
        as ros2 run would find it (here: its bare name). A dict of parameters, which
        launch_ros writes to a temporary file passed with --params-file at its place in
        the list, is given as the -p NAME:=VALUE of each entry: the same effect (a later
        value wins), a bool as launch_ros's YAML writes it (true, false)."""

        def sub(x):
            return values[x.name] if isinstance(x, LaunchConfiguration) else x

        def text(x):
            x = sub(x)
            return str(x).lower() if isinstance(x, bool) else x

        cmd = [self.executable, *(sub(a) for a in self.arguments), "--ros-args"]
        if self.name is not None:
            cmd += ["-r", f"__node:={sub(self.name)}"]
        if self.namespace is not None:
            ns = sub(self.namespace)
            cmd += ["-r", f"__ns:={ns if ns.startswith('/') else '/' + ns}"]
        for p in self.parameters:
            if isinstance(p, dict):
                for name, value in p.items():
                    cmd += ["-p", f"{name}:={text(value)}"]
            else:
                cmd += ["--params-file", sub(p)]
        for src, dst in self.remappings:
            cmd += ["-r", f"{sub(src)}:={sub(dst)}"]
        return cmd


class LifecycleNode(Node):
    def __init__(self, *, name, namespace, **kwargs):  # both mandatory, as in launch_ros
        super().__init__(name=name, namespace=namespace, **kwargs)


class LaunchDescription:
    def __init__(self, entities):
        self.entities = list(entities)


class OpaqueFunction:
    def __init__(self, *, function):
        self.function = function


class SetEnvironmentVariable:
    def __init__(self, name, value):
        self.name, self.value = name, value


def stand_in_modules(share: str = SHARE) -> dict[str, types.ModuleType]:
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    def get_package_share_directory(package):
        assert package == PACKAGE
        return share

    return {
        "launch": module("launch", LaunchDescription=LaunchDescription),
        "launch.actions": module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument,
                                 OpaqueFunction=OpaqueFunction,
                                 SetEnvironmentVariable=SetEnvironmentVariable),
        "launch.conditions": module("launch.conditions", IfCondition=IfCondition,
                                    UnlessCondition=UnlessCondition),
        "launch.substitutions": module("launch.substitutions",
                                       LaunchConfiguration=LaunchConfiguration),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=Node, LifecycleNode=LifecycleNode),
        "ament_index_python": module("ament_index_python"),
        "ament_index_python.packages": module(
            "ament_index_python.packages", get_package_share_directory=get_package_share_directory),
    }


def run_launch_file(monkeypatch, share: str = SHARE) -> LaunchDescription:
    for name, mod in stand_in_modules(share).items():
        monkeypatch.setitem(sys.modules, name, mod)
    ns = runpy.run_path(str(LAUNCH_FILE))
    ld = ns["generate_launch_description"]()
    assert isinstance(ld, LaunchDescription)
    return ld


@pytest.fixture
def description(monkeypatch) -> LaunchDescription:
    return run_launch_file(monkeypatch)


def argument_values(ld: LaunchDescription, **overrides) -> dict[str, str]:
    """The launch arguments' values: the defaults, ``overrides`` over them (each declared,
    within its choices)."""
    args = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    values = {a.name: a.default_value for a in args}
    unknown = set(overrides) - set(values)
    assert not unknown, f"not declared: {unknown}"
    values.update(overrides)
    for a in args:
        if a.choices is not None:
            assert values[a.name] in a.choices
    return values


def expanded(ld: LaunchDescription, values: dict[str, str]) -> list:
    """The entities in the order launch visits them, each OpaqueFunction replaced by the
    actions it returns for ``values``."""
    out: list = []
    for entity in ld.entities:
        out += entity.function(values) if isinstance(entity, OpaqueFunction) else [entity]
    return out


def started(ld: LaunchDescription, **overrides) -> tuple[list[Node], dict[str, str]]:
    values = argument_values(ld, **overrides)
    nodes = [e for e in expanded(ld, values) if isinstance(e, Node)
             and (e.condition is None or e.condition.holds(values))]
    return nodes, values


def test_default_params_file_is_the_installed_config(description):
    _, values = started(description)
    assert values["params_file"] == f"{SHARE}/config/irstd.yaml"
    assert values["image_topic"] == launch_args.IMAGE_INPUT


@pytest.mark.parametrize("use_lifecycle", ["false", "true"])
def test_exactly_one_node_per_use_lifecycle_value(description, use_lifecycle):
    nodes, _ = started(description, use_lifecycle=use_lifecycle)
    assert len(nodes) == 1
    node = nodes[0]
    assert node.package == PACKAGE and node.name == NODE_NAME
    assert node.executable == executable_for(use_lifecycle)
    assert isinstance(node, LifecycleNode) == (use_lifecycle == "true")


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"image_topic": "/cam0/image_raw", "namespace": "cam0", "params_file": "/tmp/p.yaml"},
        {"image_topic": "thermal/image", "namespace": "/robot/ir", "use_lifecycle": "true"},
        {"use_lifecycle": "true", "autostart": "true"},
        {"image_topic": "/cam0/image_raw", "image_transport": "compressed"},
        {"image_transport": "raw", "use_lifecycle": "true"},
        {"camera_info_topic": "/cam0/camera_info"},
        {"use_sim_time": "true"},
        {"use_sim_time": "False", "image_transport": "compressed", "use_lifecycle": "true"},
    ],
    ids=["defaults", "remapped", "lifecycle", "autostart", "compressed", "raw", "camera_info",
         "sim_time", "sim_time_off_compressed"],
)
def test_command_line_is_node_command(description, overrides):
    (node,), values = started(description, **overrides)
    expected = node_command(
        values["params_file"],
        image_topic=values["image_topic"],
        namespace=values["namespace"],
        executable=executable_for(values["use_lifecycle"]),
        camera_info_topic=values["camera_info_topic"],
        autostart=values["autostart"] if values["use_lifecycle"] == "true" else None,
        image_transport=values["image_transport"],
        use_sim_time=values["use_sim_time"],
    )
    assert node.command(values) == expected


@pytest.mark.parametrize("use_lifecycle", ["false", "true"])
def test_image_transport_is_set_over_the_params_file_only_when_given(description, use_lifecycle):
    """'' (the default) leaves the params file's input.transport, which a launch default
    of raw would override unseen; a value is passed after the file, so it wins."""
    (node,), values = started(description, use_lifecycle=use_lifecycle)
    assert len(node.parameters) == 1 and "-p" not in node.command(values)  # the file alone
    (node,), values = started(description, use_lifecycle=use_lifecycle, image_transport="compressed")
    assert node.parameters[1:] == [{TRANSPORT_PARAM: "compressed"}]
    cmd = node.command(values)
    assert cmd.index("-p") == cmd.index("--params-file") + 2
    assert cmd[cmd.index("-p") + 1] == "input.transport:=compressed"


@pytest.mark.parametrize("use_lifecycle", ["false", "true"])
def test_use_sim_time_is_set_over_the_params_file_only_when_given(description, use_lifecycle):
    """`ros2 launch irstd_ros irstd.launch.py use_sim_time:=true` (a bag played with --clock):
    before, the launch file declared no such argument and the node kept the system clock.
    '' (the default) leaves the params file's; a value goes after the file as a bool
    (launch_ros writes it to YAML as true/false: the string 'true' is no bool parameter),
    in any case a parent launch file passes it (str(True))."""
    (node,), values = started(description, use_lifecycle=use_lifecycle)
    assert SIM_TIME_PARAM not in " ".join(node.command(values))
    for given, want in (("true", True), ("True", True), ("false", False), ("1", True)):
        (node,), values = started(description, use_lifecycle=use_lifecycle, use_sim_time=given)
        assert node.parameters[1:] == [{SIM_TIME_PARAM: want}]
        cmd = node.command(values)
        assert cmd[cmd.index("--params-file") + 2:][:2] == ["-p", f"use_sim_time:={str(want).lower()}"]
    with pytest.raises(ValueError, match="use_sim_time must be true or false"):
        started(description, use_sim_time="sometimes")


def launched_environment(ld: LaunchDescription, **overrides) -> dict[str, str]:
    """The variables the launch sets (its OpaqueFunctions run on the argument values)."""
    values = argument_values(ld, **overrides)
    return {e.name: e.value for e in expanded(ld, values) if isinstance(e, SetEnvironmentVariable)}


# Fast DDS 3 (Kilted, the PyPI wheels): FASTDDS_..., and FASTRTPS_... emptied, since Kilted's
# rmw_fastrtps takes a stale FASTRTPS_... over it; Fast DDS 2 reads only FASTRTPS_...
FAST_DDS_3_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", {"FASTRTPS_DEFAULT_PROFILES_FILE": ""})
FAST_DDS_2_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", {})


@pytest.mark.parametrize(("distro", "variables"), [
    ("", FAST_DDS_3_ENV), ("kilted", FAST_DDS_3_ENV), ("humble", FAST_DDS_2_ENV), ("jazzy", FAST_DDS_2_ENV),
])
def test_dds_profile_sets_the_distributions_variable_before_the_node(monkeypatch, tmp_path, distro, variables):
    variable, emptied = variables
    monkeypatch.setenv("ROS_DISTRO", distro)
    ld = run_launch_file(monkeypatch, share=str(ROOT))  # the source tree has config/dds/
    shipped = (ROOT / "config" / "dds" / "fastdds_large_images.xml").resolve()
    assert launched_environment(ld) == {}  # default: the environment as it is
    assert launched_environment(ld, dds_profile="large_images") == {variable: str(shipped), **emptied}
    own = tmp_path / "mine.xml"
    own.write_text("<profiles/>")
    assert launched_environment(ld, dds_profile=str(own)) == {variable: str(own), **emptied}
    with pytest.raises(FileNotFoundError, match="dds_profile: no such file .*valid: ''"):
        launched_environment(ld, dds_profile=str(tmp_path / "absent.xml"))
    kinds = [type(e).__name__ for e in expanded(ld, argument_values(ld, dds_profile="large_images"))
             if not isinstance(e, DeclareLaunchArgument)]
    assert kinds.index("SetEnvironmentVariable") < kinds.index("Node")  # before any process starts
    assert kinds.index("SetEnvironmentVariable") < kinds.index("LifecycleNode")


# 3. package plumbing ---------------------------------------------------------------------


def test_package_installs_launch_config_and_executables():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for needle in ("launch config", "DESTINATION share/${PROJECT_NAME}", "scripts/irstd_node",
                   "scripts/irstd_lifecycle_node", "DESTINATION lib/${PROJECT_NAME}",
                   'DESTINATION "${PYTHON_INSTALL_DIR}/${PROJECT_NAME}"'):
        assert needle in cmake, needle
    assert "    scripts/irstd\n" in cmake  # the CLI, `ros2 run irstd_ros irstd`
    assert "ament_add_pytest_test(pytest test" in cmake  # `colcon test` runs the suite
    for script in ("irstd_node", "irstd_lifecycle_node", "irstd"):
        path = ROOT / "scripts" / script
        assert path.is_file() and path.stat().st_mode & 0o111, path
        assert path.read_text().startswith("#!/usr/bin/env python3")
    pkg = ET.parse(ROOT / "package.xml").getroot()
    assert pkg.get("format") == "3" and pkg.findtext("name") == PACKAGE
    assert pkg.find("export/build_type").text == "ament_cmake"
    exec_deps = {e.text for e in pkg.findall("exec_depend")}
    assert {"launch", "launch_ros", "ament_index_python", "rclpy", "vision_msgs"} <= exec_deps
    depends = exec_deps | {e.text for e in pkg.findall("depend")}
    assert {"rcl_interfaces", "sensor_msgs", "diagnostic_msgs", "lifecycle_msgs", "geometry_msgs",
            "std_msgs", "python3-numpy", "python3-scipy", "python3-yaml", "python3-pil",
            "python3-psutil"} <= depends


# The third-party modules the package imports, by how a ROS install gets them: a rosdep key
# that package.xml declares, or pip as package.xml's note says (the name the note gives).
ROSDEP_KEYS = {"numpy": "python3-numpy", "scipy": "python3-scipy", "yaml": "python3-yaml",
               "PIL": "python3-pil", "psutil": "python3-psutil",
               "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm"}
PIP_ONLY = {"torch": "torch", "triton": "torch", "safetensors": "safetensors",
            "rosbags": "rosbags", "imageio": "imageio[ffmpeg]", "imageio_ffmpeg": "imageio[ffmpeg]",
            "motmetrics": "motmetrics", "openvino": "openvino", "nncf": "nncf", "onnx": "onnx",
            "onnxruntime": "onnxruntime", "torch_tensorrt": "torch_tensorrt",
            "tensorrt": "torch_tensorrt"}
NOT_MODULES = {"_typeshed"}  # type checkers' only


def third_party_imports() -> set[str]:
    sources = [*(ROOT / PACKAGE).rglob("*.py"), LAUNCH_FILE]
    names = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - NOT_MODULES - {PACKAGE}


def pip_commands(text: str) -> list[list[str]]:
    """The arguments of every `pip install ...` quoted in ``text``."""
    return [cmd.split()[2:] for cmd in re.findall(r"`(pip install [^`]*)`", text)]


def test_every_import_is_a_dependency_rosdep_or_the_pip_note_installs():
    """tqdm (evaluation, training, bag tools) was in neither: `rosdep install` then
    `ros2 run irstd_ros irstd eval` failed on import."""
    pkg = ET.parse(ROOT / "package.xml").getroot()
    declared = {e.text for tag in ("depend", "exec_depend") for e in pkg.findall(tag)}
    notes = " ".join(re.findall(r"<!--(.*?)-->", (ROOT / "package.xml").read_text(), re.DOTALL))
    pip_named = set(re.split(r"[\s,;:`()]+", notes))
    for module in sorted(third_party_imports()):
        if module in declared:  # a ROS package (rclpy, vision_msgs, ...)
            continue
        if module in ROSDEP_KEYS:
            assert ROSDEP_KEYS[module] in declared, f"{module}: add <exec_depend>{ROSDEP_KEYS[module]}"
        else:
            assert module in PIP_ONLY, f"{module}: neither a declared dependency nor a known pip one"
            assert PIP_ONLY[module] in pip_named, f"{module}: package.xml's pip note omits {PIP_ONLY[module]}"


def test_the_pip_note_installs_nothing_rosdep_does():
    """It said `pip install -r requirements/base.txt`: the venv's pins (numpy 2.4, scipy 1.17)
    need Python 3.11 (Humble has 3.10), and elsewhere replace the distribution's numpy."""
    rosdep_pip_names = {"numpy", "scipy", "pyyaml", "pillow", "psutil", "matplotlib", "tqdm"}
    for source in ("package.xml", "CMakeLists.txt"):
        for args in pip_commands((ROOT / source).read_text()):
            assert "-r" not in args and not any(a.startswith("--requirement") for a in args), (source, args)
            assert not {a.lower() for a in args} & rosdep_pip_names, (source, args)


def test_executables_match_console_scripts():
    setup_py = (ROOT / "setup.py").read_text()
    for script, module in (("irstd_node", "irstd_ros.ros.node"),
                           ("irstd_lifecycle_node", "irstd_ros.ros.lifecycle_node"),
                           ("irstd", "irstd_ros.cli.main")):
        assert f"{script} = {module}:main" in setup_py
        assert f"from {module} import main" in (ROOT / "scripts" / script).read_text()


# 4. the real launch, where installed -------------------------------------------------------


def real_launch_available() -> bool:
    # In the venv the repository root is on sys.path, so `import launch` can find this
    # repository's launch/ folder as an empty namespace package: check for the real API.
    try:
        launch = importlib.import_module("launch")
        importlib.import_module("launch_ros.actions")
    except ImportError:
        return False
    return hasattr(launch, "LaunchDescription")


@pytest.mark.ros
@pytest.mark.skipif(not real_launch_available(), reason="launch/launch_ros not installed")
def test_real_launch_parses_the_file():
    from ament_index_python.packages import PackageNotFoundError
    from launch import LaunchContext
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    source = PythonLaunchDescriptionSource(str(LAUNCH_FILE))
    try:
        ld = source.get_launch_description(LaunchContext())
    except PackageNotFoundError:
        pytest.skip("irstd_ros is not installed in the sourced ROS workspace")
    names = {a.name for a in ld.get_launch_arguments()}
    assert names == set(LAUNCH_ARGUMENTS)

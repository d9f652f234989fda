"""``irstd_lifecycle_node``: the detection node as a managed (lifecycle) node.

A plain :class:`rclpy.lifecycle.LifecycleNode` (public API only) around the same
:class:`~irstd_ros.ros.pipeline.FramePipeline` and set-up steps as
:class:`~irstd_ros.ros.node.IrstdNode`; only the life cycle differs:

* ``configure``: read the parameters (declared when the node is made), load the model, create the
  lifecycle publishers, /diagnostics, the worker and the ``image`` subscription;
* ``activate``: outputs enabled, frames processed;
* ``deactivate``: the frames waiting are dropped (counted), the one in progress is
  answered, then outputs are disabled; frames received while inactive are ignored and
  counted (``ignored_inactive`` in /diagnostics);
* ``cleanup``: everything ``configure`` made is released, the model freed (and the
  device memory released, :func:`~irstd_ros.inference.resources.release_device_memory`);
* ``shutdown``: as cleanup, from any state.

The parameters the plain node reads once (``model.*``, ``qos.*``, ``input.transport``,
``diagnostics.period``; "restart" in the README) are settable here while the node is
unconfigured and read at the next ``configure``: cleanup, set ``model.path``, configure
swaps the model in one process.
While configured, changing one is refused with that reason; setting one to its value in
force is accepted (a whole parameters file loads with ``load_parameter_file_atomically``
in any state).

While configured, the node's clock is watched as the plain node's
(:func:`~irstd_ros.ros.node.watch_clock`): a clock going back restarts the stream. From
its making to its destruction the node's ROS log receives the package's Python log records
(:func:`~irstd_ros.ros.node.route_logs`): the backend choice at each ``configure``.

The node starts unconfigured, as managed nodes do; ``--autostart`` configures and
activates it at once (a configure failure is then one line on stderr and exit code 1).
The plain ``irstd_node`` remains the default of the launch file.
"""

from __future__ import annotations

import sys
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from irstd_ros.core.constants import DIAGNOSTICS_TOPIC
from irstd_ros.errors import IrstdError
from irstd_ros.ros.health import PipelineStats
from irstd_ros.ros.launch_args import AUTOSTART_FLAG, autostart_requested
from irstd_ros.ros.node import (
    build_detector,
    check_for_model,
    declare_parameters,
    log_ready,
    make_pipeline,
    parameter_values,
    read_parameters,
    restart_refusal,
    route_logs,
    run,
    stage_parameters,
    start_inputs,
    usage_text,
    warn_unknown_overrides,
    watch_clock,
)
from irstd_ros.ros.pipeline import OUTPUT_QOS_DEPTH, FramePipeline
from irstd_ros.tracking import CameraModel

if TYPE_CHECKING:
    from irstd_ros.inference.detector import Detector

NODE_NAME = "irstd_node"
PROG = "irstd_lifecycle_node"
# a "restart" parameter's: settable while unconfigured, its change refused while configured
RESTART_HINT = "read at configure: cleanup, set, configure again"


class IrstdLifecycleNode(LifecycleNode):
    """Managed variant of :class:`~irstd_ros.ros.node.IrstdNode`.

    ``detector_factory`` (tests) replaces loading the model from the parameters; it is
    called at every ``configure``.
    """

    def __init__(
        self,
        node_name: str = NODE_NAME,
        *,
        detector_factory: Callable[[], Detector] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._log_route = route_logs(self)
        self._detector_factory = detector_factory
        self.params: dict[str, Any] = {}
        self.pipeline: FramePipeline | None = None
        self.sub: Any = None
        self.camera_info_sub: Any = None
        self.diag_timer: Any = None
        self.diag_pub: Any = None
        self._clock_watch: Any = None  # the clock's jump callback while configured
        self._active = False
        self._state = "unconfigured"
        self.ignored_inactive = 0
        self.last_error = ""
        self._next_track_id = 1  # kept across cleanup: track ids are never reused by the node
        # declared now, so that they can be listed and set before the first configure (model,
        # QoS: set while unconfigured); an override of the wrong type keeps the default, and
        # configure fails naming it until it is set
        self.bad_overrides = declare_parameters(self, restart_hint=RESTART_HINT, lenient=True)
        for reason in self.bad_overrides.values():
            self.get_logger().error(f"{reason}; set it, then configure")
        warn_unknown_overrides(self)
        self.params = parameter_values(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def state_label(self) -> str:
        """Current lifecycle state: unconfigured, inactive, active or finalized."""
        return self._state

    @property
    def detector(self) -> Detector | None:
        return self.pipeline.detector if self.pipeline else None

    @property
    def stats(self) -> PipelineStats | None:
        return self.pipeline.stats if self.pipeline else None

    @property
    def camera(self) -> CameraModel | None:
        return self.pipeline.camera if self.pipeline else None

    # --- transitions ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        detector: Detector | None = None
        failure: str | None = None
        trace = ""
        try:
            if self.bad_overrides:
                raise IrstdError("; ".join(self.bad_overrides.values()) + " (set it, then configure again)")
            self.params = read_parameters(self)
            factory = self._detector_factory or (lambda: build_detector(self.params))
            detector = factory()
            check_for_model(self.params, detector.info)
        except IrstdError as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it without a word
            failure, trace = f"{type(exc).__name__}: {exc}", f"\n{traceback.format_exc()}"
        if failure is not None:
            self.last_error = failure
            self.get_logger().error(f"configure failed: {failure}{trace}")
            from irstd_ros.inference.resources import release_device_memory

            detector = None  # a model loaded before the failure: its device memory back too
            release_device_memory(collect=True)
            return TransitionCallbackReturn.FAILURE
        assert detector is not None
        self.ignored_inactive = 0
        self.pipeline = make_pipeline(
            self, detector, self.create_lifecycle_publisher, lambda: self.params,
            first_track_id=self._next_track_id,
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS_DEPTH)
        self.sub, self.camera_info_sub, self.diag_timer = start_inputs(
            self, self.pipeline, self.params, self._on_image, self._publish_diagnostics
        )
        self._clock_watch = watch_clock(self, lambda: self.pipeline)
        self._state = "inactive"
        log_ready(self, self.pipeline, self.params, self.sub.topic_name)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result == TransitionCallbackReturn.SUCCESS:
            self._active = True
            self._state = "active"
            self.get_logger().info("active: processing frames")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        if self.pipeline is not None:  # waiting frames dropped; the one in progress answered
            self.pipeline.discard_pending()  # before the publishers are disabled
        self._state = "inactive"
        self.get_logger().info("inactive: frames are ignored")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    # --- parameters, data path, health ------------------------------------------------------
    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        if self.pipeline is not None:  # configured: a "restart" one only at its value in force
            refused = restart_refusal(
                self.params, params, f"{RESTART_HINT} (the node is {self._state})"
            )
            if refused is not None:
                return refused
        model = self.pipeline.detector.info if self.pipeline and self.pipeline.detector else None
        staged, result = stage_parameters(self.params, params, model)
        if staged is not None:
            self.params = staged
            for p in params:  # a bad override replaced by a good value
                self.bad_overrides.pop(p.name, None)
            if self.pipeline is not None:
                self.pipeline.apply_params()
        return result

    def _on_image(self, msg: Image) -> None:
        if not self._active or self.pipeline is None:
            self.ignored_inactive += 1  # executor thread only
            return
        self.pipeline.submit(msg)

    def diagnostics(self) -> DiagnosticArray:
        """/diagnostics; a period without frames is a warning only while active (an inactive
        node ignores frames)."""
        assert self.pipeline is not None, "not configured"
        return self.pipeline.diagnostics(
            f"{self.get_fully_qualified_name()}: pipeline",
            {"state": "active" if self._active else "inactive",
             "ignored_inactive": self.ignored_inactive},
            expects_frames=self._active,
        )

    def _publish_diagnostics(self) -> None:
        self.diag_pub.publish(self.diagnostics())

    # --- teardown ---------------------------------------------------------------------------
    def _release(self) -> None:
        """Undo ``configure``: worker, subscription, timer, publishers, model. Idempotent."""
        self._active = False
        watch, self._clock_watch = self._clock_watch, None
        if watch is not None:
            watch.unregister()
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is None:
            return
        from irstd_ros.inference.resources import release_device_memory

        pipeline.release()
        self._next_track_id = pipeline.next_track_id
        self.destroy_subscription(self.sub)
        self.destroy_subscription(self.camera_info_sub)
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        for pub in pipeline.outputs.all():
            self.destroy_lifecycle_publisher(pub)  # type: ignore[arg-type]
        self.destroy_publisher(self.diag_pub)
        self.sub = self.camera_info_sub = self.diag_timer = self.diag_pub = None
        del pipeline
        release_device_memory(collect=True)  # collected first: most entities are gone by now
        forget_destroyed(self.default_callback_group)

    def close(self) -> None:
        """Release what ``configure`` made (whatever the state) and destroy the node."""
        self._release()
        self.destroy_node()

    def destroy_node(self) -> None:
        """Destroy the node; the package's log records no longer come to it."""
        self._log_route.close()
        super().destroy_node()


def forget_destroyed(group: Any) -> None:
    """Drop ``group``'s references to entities already destroyed: rclpy's callback groups
    keep a weak reference to every entity ever added (ros2/rclpy#1356), 21 per
    configure/cleanup cycle here, which a node swapping models for weeks would pile up (one
    still referenced now goes at the next cleanup)."""
    entities = getattr(group, "entities", None)
    if isinstance(entities, set):  # a copy first: the set may not change while it is read
        dead = [r for r in list(entities) if isinstance(r, weakref.ref) and r() is None]
        entities.difference_update(dead)


USAGE = f"""usage: {PROG} [{AUTOSTART_FLAG} [true|false]] [--ros-args --params-file config/irstd.yaml ...]

The managed (lifecycle) variant of irstd_node: starts unconfigured; configure loads the
model, activate starts processing, deactivate stops publishing, cleanup frees the model.
{AUTOSTART_FLAG}: configure and activate at once. Parameters:
"""


def _usage() -> str:
    return usage_text(USAGE)


def _make_node(user_args: list[str]) -> IrstdLifecycleNode:
    try:
        autostart = autostart_requested(user_args)
    except ValueError as exc:
        raise IrstdError(str(exc)) from None
    node = IrstdLifecycleNode()
    if autostart:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            reason = node.last_error or "configure failed"
            node.destroy_node()
            raise IrstdError(reason)
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.close()
            raise IrstdError("activate failed")
    return node


def main(args: Sequence[str] | None = None) -> int:
    return run(sys.argv if args is None else args, _make_node, prog=PROG, usage=_usage)


if __name__ == "__main__":
    sys.exit(main())

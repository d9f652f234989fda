"""``irstd_lifecycle_node``: the detection node as a managed (lifecycle) node.

Same pipeline as :class:`~irstd_ros.ros.node.IrstdNode` (its set-up steps, data path and
diagnostics are reused, not copied); only the life cycle differs:

* ``configure``: declare (once) and read the parameters, load the model, create the
  lifecycle publishers, /diagnostics, the worker and the ``image`` subscription;
* ``activate``: outputs enabled, frames processed;
* ``deactivate``: outputs disabled; frames received while inactive are ignored and
  counted (``ignored_inactive`` in /diagnostics);
* ``cleanup``: everything ``configure`` made is released, the model freed (and the
  CUDA cache emptied when CUDA is available);
* ``shutdown``: as cleanup, from any state.

The node starts unconfigured, as managed nodes do; ``--autostart`` configures and
activates it at once (a configure failure is then one line on stderr and exit code 1).
The plain ``irstd_node`` remains the default of the launch file.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from irstd_ros.core.constants import DIAGNOSTICS_TOPIC
from irstd_ros.errors import IrstdError
from irstd_ros.inference.detector import Detector
from irstd_ros.ros.node import OUTPUT_QOS_DEPTH, PARAMS, IrstdNode, run

NODE_NAME = "irstd_node"
PROG = "irstd_lifecycle_node"
AUTOSTART_FLAG = "--autostart"


class IrstdLifecycleNode(LifecycleNode, IrstdNode):
    """Managed variant of :class:`IrstdNode`.

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
        # LifecycleNode.__init__ initialises rclpy's Node and the state machine; IrstdNode's
        # own __init__ (which builds everything at once) is deliberately not run.
        LifecycleNode.__init__(self, node_name, **kwargs)
        self._detector_factory = detector_factory
        self.params: dict[str, Any] = {}
        self.detector: Detector | None = None
        self._configured = False
        self._active = False
        self.ignored_inactive = 0
        self.last_error = ""
        self._param_callback_added = False

    @property
    def state_label(self) -> str:
        """Current lifecycle state: unconfigured, inactive, active or finalized."""
        return str(self._state_machine.current_state[1])

    # --- transitions ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._declare_parameters()
            self.params = self._read_parameters()
            factory = self._detector_factory or self._build_detector
            self.detector = factory()
        except IrstdError as exc:
            self.last_error = str(exc)
            self.detector = None
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._apply_runtime_params()
        if not self._param_callback_added:
            self.add_on_set_parameters_callback(self._on_set_parameters)
            self._param_callback_added = True
        self._reset_pipeline()
        self.ignored_inactive = 0
        (
            self.mask_pub, self.det_pub, self.targets_pub, self.overlay_pub,
            self.tracks_pub, self.track_array_pub,
        ) = self._create_outputs(self.create_lifecycle_publisher)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS_DEPTH)
        self._start_worker()
        self.sub = self._create_input()
        self.camera_info_sub = self._create_camera_info_input()
        self.diag_timer = self._create_diag_timer()
        self._configured = True
        self._log_ready()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        self.get_logger().info("active: processing frames")
        return super().on_activate(state)  # enables the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        with self._cond:
            self._pending = None  # a frame waiting is not processed any more
        self.get_logger().info("inactive: frames are ignored")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    # --- data path --------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        if not self._active:
            self.ignored_inactive += 1  # executor thread only
            return
        super()._on_image(msg)

    def diagnostics(self) -> DiagnosticArray:
        msg = super().diagnostics()
        msg.status[0].values.extend(
            [
                KeyValue(key="state", value="active" if self._active else "inactive"),
                KeyValue(key="ignored_inactive", value=str(self.ignored_inactive)),
            ]
        )
        return msg

    # --- teardown ---------------------------------------------------------------------------
    def _release(self) -> None:
        """Undo ``configure``: worker, subscription, timer, publishers, model. Idempotent."""
        if not self._configured:
            return
        self._configured = False
        self._stop_worker()
        self.destroy_subscription(self.sub)
        self.destroy_subscription(self.camera_info_sub)
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        pubs = (
            self.mask_pub, self.det_pub, self.targets_pub, self.overlay_pub,
            self.tracks_pub, self.track_array_pub,
        )
        for pub in pubs:
            self.destroy_lifecycle_publisher(pub)
        self.destroy_publisher(self.diag_pub)
        self.sub = self.camera_info_sub = self.diag_timer = self.diag_pub = None
        self.mask_pub = self.det_pub = self.targets_pub = self.overlay_pub = None
        self.tracks_pub = self.track_array_pub = None
        self.tracker = None
        self.detector = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Release what ``configure`` made (whatever the state) and destroy the node."""
        self._active = False
        self._release()
        self.destroy_node()


USAGE = f"""usage: {PROG} [{AUTOSTART_FLAG}] [--ros-args --params-file config/irstd.yaml ...]

The managed (lifecycle) variant of irstd_node: starts unconfigured; configure loads the
model, activate starts processing, deactivate stops publishing, cleanup frees the model.
{AUTOSTART_FLAG}: configure and activate at once. Parameters:
"""


def _usage() -> str:
    rows = [f"  {p.name:28s} {p.default!r:>14}  {p.description}" for p in PARAMS]
    return USAGE + "\n".join(rows)


def _make_node(user_args: list[str]) -> IrstdLifecycleNode:
    node = IrstdLifecycleNode()
    if AUTOSTART_FLAG in user_args:
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

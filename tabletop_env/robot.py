"""Franka Panda arm with parallel gripper, driven by 6-D relative gripper actions through IK."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet

from tabletop_env.sim import Simulation


@dataclass(frozen=True)
class ControlConfig:
    """Limits of the 6-D action ``(dx, dy, dz, dyaw, dpitch, finger)`` in ``[-1, 1]``."""

    max_translation: float = 0.05  # metres per step for |a| = 1
    max_yaw: float = 0.25  # radians per step of wrist rotation
    max_pitch: float = 0.15  # radians per step of wrist tilt
    pitch_limit: float = 0.6  # |pitch| bound, radians away from pointing straight down
    yaw_limit: float = 1.6  # |yaw| bound, radians (the gripper is symmetric under half-turns)
    max_finger_opening: float = 0.08  # metres between the fingers at a = +1 (a = -1 closes)
    # The tool centre is pinned to the controller target by a constraint (a mocap-style weld, as
    # the paper's simulator does): it reaches the commanded pose within the step.
    hand_force: float = 300.0  # N, the most the pin may pull with (its stiffness: PhysicsConfig.constraint_erp)
    # The arm's links (not the fingers) weigh this share of the real Panda's: the pin then moves
    # the arm within the step with a modest force, which cannot crush a block into the table
    # (at full mass it needed 2,000 N, which pressed blocks 3.5 cm into it).
    arm_mass_scale: float = 0.1
    arm_force_scale: float = 0.2  # joint motors follow IK at this share of the Panda's torques
    motor_gain: float = 0.3  # position gain of the joint motors (PyBullet's default 0.1 tracks a moving target slowly)
    ik_iterations: int = 1  # IK iterations per step, from the current configuration (the motors only keep the posture)
    # Bounds of the gripper tip target (metres, world frame), kept above the table surface.
    workspace_low: tuple[float, float, float] = (-0.40, -0.38, 0.005)
    workspace_high: tuple[float, float, float] = (0.32, 0.38, 0.45)


class Panda:
    """The Panda from ``pybullet_data``; the tool centre is the ``panda_grasptarget`` link.

    The controller keeps a target pose (position xyz in m, yaw and pitch in rad, finger opening
    in m) that each action moves. A fixed constraint pins the tool centre to that pose, so the
    commanded displacement happens within the step and turning the wrist leaves the tool centre
    in place; weaker joint motors follow inverse kinematics of the same pose, which keeps the
    arm's posture (elbow, null space) from drifting. The fingers are position-controlled.
    """

    ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
    FINGER_JOINTS = (9, 10)
    MOVABLE_JOINTS = ARM_JOINTS + FINGER_JOINTS
    FINGER_LINKS = (9, 10)
    TOOL_LINK = 11
    HOME = np.array([0.0, -0.2, 0.0, -2.2, 0.0, 2.0, 0.785])  # joint positions, rad: gripper down
    ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)  # N m, the Panda's torque limits
    FINGER_FORCE = 40.0  # N per finger
    BASE_POSITION = (-0.6, 0.0, 0.0)
    CONTROLLER_SIZE = 6  # target x, y, z, yaw, pitch, finger opening

    def __init__(self, sim: Simulation, control: ControlConfig = ControlConfig()) -> None:
        self.sim = sim
        self.control = control
        self.client = sim.client
        self.body = sim.load_urdf("panda", "franka_panda/panda.urdf", self.BASE_POSITION, fixed=True)
        for link in self.FINGER_LINKS:
            sim.set_dynamics("panda", link, lateralFriction=1.5, spinningFriction=0.003)
        for link in range(pybullet.getNumJoints(self.body, physicsClientId=self.client)):
            mass, _, inertia = pybullet.getDynamicsInfo(self.body, link, physicsClientId=self.client)[:3]
            if mass > 0 and link not in self.FINGER_LINKS:
                sim.set_dynamics("panda", link, mass=mass * control.arm_mass_scale,
                                 localInertiaDiagonal=[v * control.arm_mass_scale for v in inertia])
        # The real Panda's fingers move together (one motor); without this coupling a grasped
        # block drifts towards the weaker finger.
        gear = pybullet.createConstraint(
            self.body, self.FINGER_JOINTS[0], self.body, self.FINGER_JOINTS[1], pybullet.JOINT_GEAR,
            (1, 0, 0), (0, 0, 0), (0, 0, 0), physicsClientId=self.client,
        )
        pybullet.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=self.client)
        info = [pybullet.getJointInfo(self.body, j, physicsClientId=self.client) for j in self.MOVABLE_JOINTS]
        self.lower = np.array([i[8] for i in info])
        self.upper = np.array([i[9] for i in info])
        self._gains = [control.motor_gain] * len(self.MOVABLE_JOINTS)
        self._low = tuple(control.workspace_low)
        self._high = tuple(control.workspace_high)
        self._lower_list, self._upper_list = self.lower.tolist(), self.upper.tolist()
        self._rest = list(self.HOME) + [0.04, 0.04]
        self._ranges = (self.upper - self.lower).tolist()
        self._forces = [f * control.arm_force_scale for f in self.ARM_FORCES] + [self.FINGER_FORCE] * 2
        self.target = [0.0] * self.CONTROLLER_SIZE  # controller state, see class docstring
        self.joint_targets = (0.0,) * len(self.MOVABLE_JOINTS)
        position, orientation = pybullet.getLinkState(self.body, self.TOOL_LINK, physicsClientId=self.client)[4:6]
        self._pin = pybullet.createConstraint(
            self.body, self.TOOL_LINK, -1, -1, pybullet.JOINT_FIXED, (0, 0, 0), (0, 0, 0), position,
            (0, 0, 0, 1), orientation, physicsClientId=self.client,
        )
        self.pin_target: tuple = (tuple(position), tuple(orientation))  # where the pin holds the tool
        # The pin's way through the coming step: from (x, y, z, yaw, pitch) to (x, y, z, yaw, pitch).
        self._pin_from: tuple = (*position, 0.0, 0.0)
        self._pin_to: tuple = self._pin_from

    # -- state --------------------------------------------------------------------------------
    def reset(self, joints: np.ndarray, finger_opening: float = 0.08) -> None:
        """Teleport to arm joint positions (7,) with the given opening; zero velocity."""
        positions = np.concatenate([joints, [finger_opening / 2] * 2])
        self.set_joint_state(positions, np.zeros_like(positions), positions)
        pos, yaw, pitch = self.tool_pose()
        self.reset_target([*pos, yaw, pitch, finger_opening])

    def solve_ik(self, position, yaw: float = 0.0, pitch: float = 0.0, rounds: int = 20) -> np.ndarray:
        """Arm joints (7,) that put the tool at ``position`` (m) with ``yaw``/``pitch`` (rad).

        Teleports the arm while iterating (use before an episode, not inside one).
        """
        orientation = pybullet.getQuaternionFromEuler((np.pi, pitch, yaw))
        joints = self.HOME.copy()
        for _ in range(rounds):
            for joint, q in zip(self.ARM_JOINTS, joints):
                pybullet.resetJointState(self.body, joint, q, physicsClientId=self.client)
            solution = pybullet.calculateInverseKinematics(
                self.body, self.TOOL_LINK, list(position), orientation,
                lowerLimits=self._lower_list, upperLimits=self._upper_list, jointRanges=self._ranges,
                restPoses=self._rest, maxNumIterations=50, physicsClientId=self.client,
            )
            joints = np.array(solution[:7])
        return joints

    def set_joint_state(self, positions: np.ndarray, velocities: np.ndarray, targets: np.ndarray) -> None:
        """Restore movable-joint positions/velocities (9,) and hold ``targets`` with the motors."""
        for joint, q, dq in zip(self.MOVABLE_JOINTS, positions, velocities):
            pybullet.resetJointState(self.body, joint, q, dq, physicsClientId=self.client)
        self._command(tuple(float(v) for v in targets))

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Movable-joint positions and velocities, each (9,)."""
        states = pybullet.getJointStates(self.body, self.MOVABLE_JOINTS, physicsClientId=self.client)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def tool_pose(self) -> tuple[np.ndarray, float, float]:
        """Tool-centre position (3,) in m, and its yaw and pitch in rad."""
        state = pybullet.getLinkState(self.body, self.TOOL_LINK, computeForwardKinematics=1, physicsClientId=self.client)
        _, pitch, yaw = pybullet.getEulerFromQuaternion(state[5])
        return np.array(state[4]), yaw, pitch

    # -- control ------------------------------------------------------------------------------
    def apply_action(self, action, tool_position) -> None:
        """Move the controller target by ``action`` (6 floats in [-1, 1]) and command the motors.

        The position target stays within one maximal step of the measured tool position
        (``tool_position``, 3 floats, m) so that a blocked arm does not wind up. Plain floats:
        this runs every step, where small numpy arrays cost more than the arithmetic.
        """
        c, t = self.control, self.target
        step = c.max_translation
        for k in range(3):
            value = t[k] + action[k] * step
            value = min(max(value, tool_position[k] - step), tool_position[k] + step)
            t[k] = min(max(value, self._low[k]), self._high[k])
        t[3] = min(max(t[3] + action[3] * c.max_yaw, -c.yaw_limit), c.yaw_limit)
        t[4] = min(max(t[4] + action[4] * c.max_pitch, -c.pitch_limit), c.pitch_limit)
        t[5] = (action[5] + 1.0) * 0.5 * c.max_finger_opening
        orientation = pybullet.getQuaternionFromEuler((np.pi, t[4], t[3]))
        solution = pybullet.calculateInverseKinematics(
            self.body,
            self.TOOL_LINK,
            t[:3],
            orientation,
            lowerLimits=self._lower_list,
            upperLimits=self._upper_list,
            jointRanges=self._ranges,
            restPoses=self._rest,
            maxNumIterations=c.ik_iterations,  # re-solved every step; the target is at most one step away
            physicsClientId=self.client,
        )
        finger = t[5] * 0.5
        self._command((*solution[:7], finger, finger))
        self._pin_from, self._pin_to = self._pin_to, (t[0], t[1], t[2], t[3], t[4])

    def move_pin(self, fraction: float) -> None:
        """Put the pin ``fraction`` (0-1) of the way through this step's move (called before each
        physics substep): the tool then moves at a steady speed, instead of jumping towards the
        new target in the first substeps (which hit blocks at several m/s)."""
        a, b = self._pin_from, self._pin_to
        if a == b:  # a still tool: the pin is already there
            return
        p = [a[k] + fraction * (b[k] - a[k]) for k in range(5)]
        turning = a[3] != b[3] or a[4] != b[4]
        self.pin_tool(p[:3], pybullet.getQuaternionFromEuler((np.pi, p[4], p[3])) if turning else self.pin_target[1])

    def reset_target(self, target) -> None:
        """Set the controller state (6 floats, see the class docstring); the tool is pinned there."""
        self.target = [float(v) for v in target]
        t = self.target
        self._pin_from = self._pin_to = (t[0], t[1], t[2], t[3], t[4])
        self.pin_tool(t[:3], pybullet.getQuaternionFromEuler((np.pi, t[4], t[3])))

    def pin_tool(self, position, orientation) -> None:
        """Move the constraint holding the tool centre to ``position`` (3, m) and
        ``orientation`` (quaternion xyzw)."""
        self.pin_target = (tuple(position), tuple(orientation))
        pybullet.changeConstraint(
            self._pin, jointChildPivot=position, jointChildFrameOrientation=orientation,
            maxForce=self.control.hand_force, physicsClientId=self.client,
        )

    def _command(self, targets: tuple[float, ...]) -> None:
        self.joint_targets = targets
        pybullet.setJointMotorControlArray(
            self.body,
            self.MOVABLE_JOINTS,
            pybullet.POSITION_CONTROL,
            targetPositions=self.joint_targets,
            forces=self._forces,
            positionGains=self._gains,
            physicsClientId=self.client,
        )

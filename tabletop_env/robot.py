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

    def within_workspace_xy(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(...) bool: which points of ``xy`` (..., 2), metres, lie inside the tool's x/y
        workspace shrunk by ``margin`` metres on every side."""
        low, high = np.array(self.workspace_low[:2]) + margin, np.array(self.workspace_high[:2]) - margin
        return np.all((xy >= low) & (xy <= high), axis=-1)


class Panda:
    """The Panda from ``pybullet_data``; the tool centre is its ``panda_grasptarget`` frame.

    The controller keeps a target pose (position xyz in m, yaw and pitch in rad, finger opening
    in m) that each action moves. A fixed constraint pins the tool centre to that pose, so the
    commanded displacement happens within the step and turning the wrist leaves the tool centre
    in place; weaker joint motors follow inverse kinematics of the same pose, which keeps the
    arm's posture (elbow, null space) from drifting. The fingers are position-controlled.
    """

    # Loaded with its fixed joints merged: panda_link7, panda_link8, the hand and the grasp target
    # are one rigid link (HAND_LINK), which makes a physics step about 20 % cheaper than twelve
    # links (benchmarks/RESULTS.md); the tool centre is a fixed frame on it (TOOL_OFFSET).
    ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
    FINGER_JOINTS = (7, 8)
    MOVABLE_JOINTS = ARM_JOINTS + FINGER_JOINTS
    FINGER_LINKS = (7, 8)
    HAND_LINK = 6
    # The grasp target in HAND_LINK's frame (the URDF's panda_joint8, panda_hand_joint and
    # panda_grasptarget_hand): 0.107 + 0.105 m along z, turned -45 degrees about z.
    TOOL_OFFSET = ((0.0, 0.0, 0.212), tuple(pybullet.getQuaternionFromEuler((0.0, 0.0, -np.pi / 4))))
    HOME = np.array([0.0, -0.2, 0.0, -2.2, 0.0, 2.0, 0.785])  # joint positions, rad: gripper down
    ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)  # N m, the Panda's torque limits
    FINGER_FORCE = 40.0  # N per finger
    BASE_POSITION = (-0.6, 0.0, 0.0)
    CONTROLLER_SIZE = 6  # target x, y, z, yaw, pitch, finger opening

    def __init__(self, sim: Simulation, control: ControlConfig = ControlConfig()) -> None:
        self.sim = sim
        self.control = control
        self.client = sim.client
        self.body = sim.load_urdf("panda", "franka_panda/panda.urdf", self.BASE_POSITION, fixed=True, merge_fixed_links=True)
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
        # the tool frame in the hand's centre-of-mass frame, where a constraint's parent frame lives
        com_position, com_orientation = pybullet.getDynamicsInfo(self.body, self.HAND_LINK, physicsClientId=self.client)[3:5]
        to_com = pybullet.invertTransform(com_position, com_orientation)
        pivot, pivot_orientation = pybullet.multiplyTransforms(*to_com, *self.TOOL_OFFSET)
        position, orientation, _ = self.tool_state()
        self._pin = pybullet.createConstraint(
            self.body, self.HAND_LINK, -1, -1, pybullet.JOINT_FIXED, (0, 0, 0), pivot, position,
            pivot_orientation, orientation, physicsClientId=self.client,
        )
        # IK moves the hand's frame: the tool's target pose, less the offset
        self._tool_to_hand = pybullet.invertTransform(*self.TOOL_OFFSET)
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
                self.body, self.HAND_LINK, *self._hand_target(position, orientation),
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

    def tool_state(self, velocity: bool = False) -> tuple[tuple, tuple, tuple | None]:
        """The tool centre's world position (m), orientation (quaternion xyzw) and, with
        ``velocity``, linear velocity (m/s); plain tuples (this runs every step)."""
        state = pybullet.getLinkState(self.body, self.HAND_LINK, computeLinkVelocity=int(velocity), computeForwardKinematics=1,
                                      physicsClientId=self.client)
        position, orientation = pybullet.multiplyTransforms(state[4], state[5], *self.TOOL_OFFSET)
        if not velocity:
            return position, orientation, None
        (vx, vy, vz), (wx, wy, wz), com = state[6], state[7], state[0]  # centre-of-mass velocities
        rx, ry, rz = position[0] - com[0], position[1] - com[1], position[2] - com[2]
        return position, orientation, (vx + wy * rz - wz * ry, vy + wz * rx - wx * rz, vz + wx * ry - wy * rx)

    def tool_pose(self) -> tuple[np.ndarray, float, float]:
        """Tool-centre position (3,) in m, and its yaw and pitch in rad."""
        position, orientation, _ = self.tool_state()
        _, pitch, yaw = pybullet.getEulerFromQuaternion(orientation)
        return np.array(position), yaw, pitch

    def _hand_target(self, position, orientation) -> tuple:
        """The hand link's frame (position, quaternion) that puts the tool at this pose."""
        return pybullet.multiplyTransforms(position, orientation, *self._tool_to_hand)

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
            self.HAND_LINK,
            *self._hand_target(t[:3], orientation),
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

"""The arm does what the action says within the step (the issue's control targets, fast version
of benchmarks/control_fidelity.py)."""

import gymnasium as gym
import numpy as np
import pytest

from tabletop_env.fidelity import Probe, measure


@pytest.fixture(scope="module")
def fidelity():
    env = gym.make("Tabletop/Push1-v0")
    yield measure(Probe.tabletop(env), "Push1", steps=300, seed=1)
    env.close()


def test_full_action_moves_the_tool_at_least_4_cm_per_step(fidelity):
    assert fidelity.full_action_m >= 0.04


def test_tool_displacement_follows_the_command(fidelity):
    assert fidelity.r2_xyz >= 0.9
    assert fidelity.r2_all >= 0.8


def test_an_action_acts_within_its_own_step(fidelity):
    assert abs(fidelity.lag1_xyz) <= 0.1
    assert abs(fidelity.lag1_all) <= 0.1


def test_wrist_rotation_and_tilt_leave_the_tool_centre_in_place(fidelity):
    assert fidelity.wrist_drift_m < 0.002  # m per step, against up to 5 cm for a translation


def test_a_blocked_tool_does_not_wind_up():
    """Pressing down on the table for a second, then lifting: the tool rises at once."""
    from tabletop_env import TabletopEnv

    env = TabletopEnv(task="Tabletop/Push1-v0", randomise_robot=False)
    env.reset(seed=0)
    down = np.array([0, 0, -1.0, 0, 0, 1.0])
    for _ in range(25):
        env.step(down)
    low = env.robot.tool_pose()[0][2]
    env.step(np.array([0, 0, 1.0, 0, 0, 1.0]))
    assert low > -0.005  # the pin cannot push the tool through the table
    assert env.robot.tool_pose()[0][2] - low > 0.03


def test_the_merged_hand_carries_the_urdfs_grasp_target_with_its_velocity(capfd):
    """The arm is loaded with its fixed links merged (a cheaper physics step): the tool frame
    and its velocity must be the unmerged URDF's ``panda_grasptarget`` link's, and the merge's
    link report must not reach stdout."""
    import pybullet
    import pybullet_data

    from tabletop_env.robot import Panda

    env = gym.make("Tabletop/Push1-v0")
    env.reset(seed=0)
    assert capfd.readouterr().out == ""
    robot = env.unwrapped.robot
    reference = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=reference)
        unmerged = pybullet.loadURDF("franka_panda/panda.urdf", Panda.BASE_POSITION, useFixedBase=True, physicsClientId=reference)
        grasp_target = [pybullet.getJointInfo(unmerged, j, physicsClientId=reference)[12] for j in range(12)].index(b"panda_grasptarget")
        rng = np.random.default_rng(0)
        for _ in range(5):
            env.step(rng.uniform(-1, 1, 6))
            positions, velocities = robot.joint_state()
            for joint, q, dq in zip((0, 1, 2, 3, 4, 5, 6), positions, velocities):
                pybullet.resetJointState(unmerged, joint, q, dq, physicsClientId=reference)
            position, orientation, velocity = robot.tool_state(velocity=True)
            expected = pybullet.getLinkState(unmerged, grasp_target, computeLinkVelocity=1, computeForwardKinematics=1,
                                             physicsClientId=reference)
            np.testing.assert_allclose(position, expected[4], atol=1e-6)
            assert abs(abs(np.dot(orientation, expected[5])) - 1) < 1e-6  # the same rotation (q or -q)
            np.testing.assert_allclose(velocity, expected[6], atol=1e-5)
            assert np.linalg.norm(velocity) > 1e-3  # the arm was moving: the velocity part was tested
    finally:
        pybullet.disconnect(reference)
        env.close()


def test_workspace_xy_test_honours_bounds_and_margin():
    from tabletop_env.robot import ControlConfig

    control = ControlConfig()
    (x_low, y_low), (x_high, y_high) = control.workspace_low[:2], control.workspace_high[:2]
    points = np.array([[0.0, 0.0], [x_high + 0.01, 0.0], [0.0, y_low - 0.01], [x_high - 0.02, y_high - 0.02]])
    assert control.within_workspace_xy(points).tolist() == [True, False, False, True]
    # 2 cm inside the edge is outside the workspace shrunk by 3 cm
    assert control.within_workspace_xy(points, margin=0.03).tolist() == [True, False, False, False]


def test_the_benchmark_runs_and_writes_its_table_without_the_reference(tmp_path):
    """benchmarks/control_fidelity.py on our env alone (panda-gym is an optional extra)."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    out = tmp_path / "control.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "control_fidelity.py"), "--steps", "100",
                           "--no-reference", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| Tabletop/Push1-v0 |" in out.read_text()

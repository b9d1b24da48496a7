"""A custom reward for the training tests. A random tiny model never writes an answer line, so the
built-in rewards are all 0 and GRPO gets no signal; this reward differs between any two different
completions, so every group has a spread and the policy gradient is not zero."""


def spread_reward(completions, **kwargs):
    """A deterministic score in [0, 1) from the completion's characters (meaningless, but varied)."""
    return [(sum(map(ord, c)) % 97) / 97 for c in completions]


def env_recording_reward(completions, **kwargs):
    """`spread_reward`, and the rank's launch environment written to $RLVR_TEST_ENV_DIR/rank-N.json:
    the multi-host container test checks what each rank was started with."""
    import json
    import os
    from pathlib import Path

    names = (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    )
    names += ("NCCL_SOCKET_IFNAME", "NCCL_PROTO", "FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "RDMAV_FORK_SAFE")
    target = Path(os.environ["RLVR_TEST_ENV_DIR"]) / f"rank-{os.environ.get('RANK', '0')}.json"
    target.write_text(json.dumps({name: os.environ.get(name) for name in names}))
    return spread_reward(completions)


def fails_on_rank_1(completions, **kwargs):
    """`spread_reward` on every rank but global rank 1, which fails as a real bug would."""
    import os

    if os.environ.get("RANK") == "1":
        raise RuntimeError("reward server unreachable from rank 1")
    return spread_reward(completions)

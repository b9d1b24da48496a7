"""A custom reward for the training tests. A random tiny model never writes an answer line, so the
built-in rewards are all 0 and GRPO gets no signal; this reward differs between any two different
completions, so every group has a spread and the policy gradient is not zero."""


def spread_reward(completions, **kwargs):
    """A deterministic score in [0, 1) from the completion's characters (meaningless, but varied)."""
    return [(sum(map(ord, c)) % 97) / 97 for c in completions]

"""The two errors of the reward layer.

- :class:`UnknownRewardError`: a reward spec names nothing that exists. Its message lists what
  does exist, so a typo is fixed from the message alone.
- :class:`RewardPluginError`: a reward exists but cannot be used: it fails to import or to be
  created, two plugins claim one name, or it raised or returned bad values while scoring. The
  message names the plugin; a bad value is never turned into a silent zero.
"""

from __future__ import annotations


class RewardPluginError(RuntimeError):
    """A reward plugin is broken or misused; the message names the plugin and what went wrong."""


class UnknownRewardError(LookupError):
    """No reward of that name; the message lists the built-in and installed reward names."""

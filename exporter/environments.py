"""Decisions about runtimes' environments: the discovery filter and the remediation guard.

Pure functions over what the fleet last read (the wire shapes are in `exporter.boomi.environments`):
whether a runtime passes `discovery.environment_classifications` and
`discovery.environment_name_pattern`, and why remediation must not act on a runtime given
`remediation.environment_classifications`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from exporter.boomi import Environment

# The name pattern that lets every runtime through, unattached ones too.
ANY_NAME = ".*"


def environment_filter_is_set(classifications: Collection[str], name_pattern: str) -> bool:
    """Whether discovery's environment keys restrict anything (their defaults do not)."""
    return bool(classifications) or name_pattern != ANY_NAME


def environment_matches(
    environment: Environment | None, classifications: Collection[str], name_pattern: str
) -> bool:
    """Whether a runtime attached to `environment` (None: unattached) passes the filter.

    `classifications` empty means any, unattached runtimes included. The pattern must match the
    whole environment name; an unattached runtime has no name, so it passes only `.*`.
    """
    if classifications and (
        environment is None or environment.classification not in classifications
    ):
        return False
    if name_pattern == ANY_NAME:
        return True
    return environment is not None and re.fullmatch(name_pattern, environment.name) is not None


def discovered_in_environments(
    container_ids: Collection[str],
    environments: Mapping[str, Environment] | None,
    classifications: Collection[str],
    name_pattern: str,
) -> set[str]:
    """The containers whose environment passes discovery's filter.

    `environments` is None while the account's environments have never been read: with a
    filter set, nothing is known to pass yet, so nothing is added until they are.
    """
    if not environment_filter_is_set(classifications, name_pattern):
        return set(container_ids)
    if environments is None:
        return set()
    return {
        container_id
        for container_id in container_ids
        if environment_matches(environments.get(container_id), classifications, name_pattern)
    }


def remediation_refusal(
    environment: Environment | None, known: bool, classifications: Collection[str]
) -> str:
    """Why remediation must not act on a runtime, or "" when it may.

    `classifications` is `remediation.environment_classifications`; empty means any runtime.
    Otherwise the runtime must be attached to an environment of one of them, and that must be
    known: an unknown environment is refused, as the alert may come from any runtime.
    """
    if not classifications:
        return ""
    allowed = ", ".join(classifications)
    if not known:
        return (
            "the runtime's environment is not known yet, and remediation is limited to"
            f" environment classifications {allowed}"
        )
    if environment is None:
        return (
            "the runtime is not attached to an environment, and remediation is limited to"
            f" environment classifications {allowed}"
        )
    if environment.classification not in classifications:
        return (
            f"the runtime is in environment {environment.name!r}"
            f" ({environment.classification or 'no classification'}), and remediation is"
            f" limited to environment classifications {allowed}"
        )
    return ""


def describe_environment(environment: Environment | None, known: bool) -> str:
    """A runtime's environment for people (landing page, `--once`): "Name (PROD)" and so on."""
    if not known:
        return "environment unknown"
    if environment is None:
        return "no environment"
    if environment.classification:
        return f"{environment.name} ({environment.classification})"
    return environment.name

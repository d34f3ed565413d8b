"""Binding a lane to an operator or a mode: the snapshot of their definitions a lane carries.

``operator_binding`` turns an operator plus inputs into the command, objective and ``OpBinding`` of a
lane (inputs validated before anything runs); ``mode_binding`` gives a plain lane a mode (``--mode``).
The snapshot is frozen into the lane spec, so a resumed lane is graded with the definitions it
started with even if ``.spine.yaml`` changed meanwhile (docs/adr/0040).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from spine.base.errors import UsageError
from spine.model.config import SpineConfig
from spine.model.modes import Mode, classify, mode_profile, parse_mode
from spine.model.operators import OpBinding, OperatorSpec, resolve_inputs, substitute

MODE_NAMES = ", ".join(m.value for m in Mode)


def find_operator(config: SpineConfig, op_id: str) -> OperatorSpec:
    """The configured operator ``op_id``, or a UsageError listing the ones there are."""
    op = config.operator(op_id)
    if op is None:
        known = ", ".join(o.id for o in config.operators)
        raise UsageError(
            f"no operator {op_id!r} in .spine.yaml",
            f"configured operators: {known}"
            if known
            else "declare one under operators: (see docs/operators.md)",
        )
    return op


def parse_mode_name(value: str, *, what: str = "--mode") -> Mode:
    """A Mode from user text, or a UsageError listing the modes."""
    try:
        return Mode(str(parse_mode(value)))
    except ValueError:
        raise UsageError(f"{what}: unknown mode {value!r}", f"modes: {MODE_NAMES} (or 'auto')") from None


def choose_mode(
    config: SpineConfig, objective: str, requested: str | Mode | None, legal: Sequence[Mode] | None = None
) -> tuple[Mode, str, str]:
    """Return (mode, source, reason) for a lane: an explicit request, else the classifier.

    ``legal`` limits the choice to an operator's modes; with one legal mode that mode is taken. With
    no request and no keyword match, an operator falls back to its first mode and a plain lane is an
    error (spine does not guess a mode silently).
    """
    if requested is not None and str(requested).lower() != "auto":
        mode = requested if isinstance(requested, Mode) else parse_mode_name(requested)
        if legal is not None and mode not in legal:
            raise UsageError(
                f"the operator is not legal in mode {mode.value}",
                f"it is legal in {', '.join(m.value for m in legal)}; pick one of those with --mode",
            )
        return mode, "flag", f"{mode.value}: chosen with --mode"
    if legal is not None and len(legal) == 1:
        return legal[0], "operator", f"{legal[0].value}: the only mode the operator is legal in"
    found = classify(objective, config.mode_settings(), among=legal)
    if found.mode is not None:
        return found.mode, "classifier", found.reason
    if legal:
        return legal[0], "operator", f"{legal[0].value}: {found.reason}; the operator's first mode"
    raise UsageError(
        f"cannot classify the objective {objective!r}: {found.reason}",
        f"name the mode with --mode ({MODE_NAMES}); `spine classify` shows the keywords",
    )


def mode_binding(config: SpineConfig, objective: str, requested: str) -> OpBinding:
    """The binding of a plain lane (no operator) run with ``--mode MODE`` or ``--mode auto``."""
    mode, source, reason = choose_mode(config, objective, requested)
    profile = mode_profile(mode, config.mode_settings())
    return OpBinding(
        mode=mode,
        mode_source=source,  # type: ignore[arg-type]
        mode_reason=reason,
        evidence=list(profile.evidence),
        stop_rule=profile.stop_rule,
        env={"SPINE_MODE": mode.value},
    )


def operator_binding(
    config: SpineConfig,
    op_id: str,
    inputs: Mapping[str, object],
    *,
    objective: str | None,
    mode: str | None,
    origin: str,
) -> dict[str, Any]:
    """What operator ``op_id`` brings to a lane: objective, command, binding, timebox, stall timeout,
    iterations and outputs (artifact globs). Inputs are validated here. Raises UsageError."""
    op = find_operator(config, op_id)
    try:
        values = resolve_inputs(op, dict(inputs))
    except UsageError as exc:
        if origin != "flag" and exc.hint and "--input" in exc.hint:
            hint = re.sub(
                r"pass it with --input (\w+)=VALUE",
                r"set it in the lane's `inputs:`, e.g. inputs: {\1: VALUE}",
                exc.hint,
            )
            raise UsageError(exc.message, hint) from None
        raise
    text = (objective or "").strip() or _default_objective(op, values)
    chosen, source, reason = choose_mode(config, text, mode, legal=op.modes)
    profile = mode_profile(chosen, config.mode_settings())
    extra_evidence = [
        rule.model_copy(update={"glob": [substitute(g, values, quote=False) for g in rule.glob]})
        for rule in op.evidence
    ]
    outputs = [substitute(g, values, quote=False) for g in op.outputs]
    binding_env = dict(op.env)
    binding_env.update({f"SPINE_INPUT_{name.upper()}": value for name, value in values.items()})
    binding_env.update({"SPINE_OPERATOR": op.id, "SPINE_MODE": chosen.value})
    binding = OpBinding(
        operator=op.id,
        mode=chosen,
        mode_source=source,  # type: ignore[arg-type]
        mode_reason=reason,
        inputs=values,
        acceptance=[
            check.model_copy(update={"command": substitute(check.command, values, quote=True)})
            for check in op.acceptance
        ],
        evidence=[*profile.evidence, *extra_evidence],
        outputs=outputs,
        failure_paths=op.failure_paths,
        next=op.next,
        stop_rule=profile.stop_rule,
        env=binding_env,
    )
    return {
        "objective": text,
        "command": op.script(values),
        "binding": binding.as_data(),
        "timebox": op.timebox,
        "stall_timeout": op.stall_timeout,
        "iterations": op.iterations,
        "outputs": outputs,
    }


def _default_objective(op: OperatorSpec, values: Mapping[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in values.items() if v)
    return f"{op.name} ({shown})" if shown else op.name

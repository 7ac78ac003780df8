"""A counter that changes whenever any Module switches between train() and eval().

Traced functions include it in their signature, so a mode switch retraces
instead of replaying a graph recorded in the other mode.
"""

training_state_version = 0


def bump() -> None:
    global training_state_version
    training_state_version += 1

//! TODO: written in its own step.

//! Vigil's rule engine: pure evaluation of readings into alarm changes, with injected time.

//! Vigil's simulator: fleets of realistic elevators publishing over MQTT, with injected faults.

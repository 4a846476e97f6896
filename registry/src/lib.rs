//! Vigil's registry: equipment, owners, maintainers and devices, their persistence and HTTP API.

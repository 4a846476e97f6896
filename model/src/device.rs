//! What the registry says about a device, in the form the pipeline needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::reading::Binding;

/// Everything ingest and rules need to know about one enabled device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceContext {
    pub binding: Binding,
    /// `device` kind in the registry: `elevator`, `ride`, `video`, `filling`.
    pub kind: String,
    /// Seconds between idle reports; `device.offline` fires after 3 × this.
    pub report_interval_s: u32,
    /// The equipment's `params` from the registry (`rated_speed_mps`,
    /// `floors`, `wind_limit_mps`, …), read by rules by those names.
    /// Shared: a reader that keeps the `Arc` it saw last knows the params
    /// are unchanged when it gets the same one again, without comparing
    /// them (the rule engine does, on every reading).
    #[serde(with = "shared_map")]
    pub params: Arc<Map<String, Value>>,
    /// Where the rule engine evaluating the device noted its place in that
    /// engine: the registry hands out one context per device, kept while
    /// the device and its equipment are unchanged, so the next reading
    /// finds the device's rule state without a lookup by id (a cache miss
    /// in a large table). Not data: not serialized, not compared.
    #[serde(skip)]
    pub engine_slot: EngineSlot,
}

/// See [`DeviceContext::engine_slot`]. Empty at first. An engine checks a
/// place it finds here against the reading's device, so a slot naming
/// another device (or a place in another engine) costs only the lookup.
#[derive(Default)]
pub struct EngineSlot(AtomicU32);

impl EngineSlot {
    /// The place noted, if any.
    pub fn get(&self) -> Option<u32> {
        // Kept as place + 1, so that 0 is empty.
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Notes `place` (a place past `u32::MAX - 1` is not kept).
    pub fn set(&self, place: u32) {
        if let Some(kept) = place.checked_add(1) {
            self.0.store(kept, Ordering::Relaxed);
        }
    }
}

impl Clone for EngineSlot {
    fn clone(&self) -> Self {
        EngineSlot(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

/// Not data: any two slots are equal, so contexts compare by what the
/// registry says.
impl PartialEq for EngineSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for EngineSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EngineSlot({:?})", self.get())
    }
}

/// Shared `params` as a plain JSON object on the wire (serde's `Arc`
/// support is a crate feature the workspace leaves off): `#[serde(with =
/// "vigil_model::device::shared_map")]`.
pub mod shared_map {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(
        params: &Arc<Map<String, Value>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        params.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<Map<String, Value>>, D::Error> {
        Map::deserialize(d).map(Arc::new)
    }
}

impl DeviceContext {
    pub fn param_f64(&self, name: &str) -> Option<f64> {
        self.params.get(name).and_then(Value::as_f64)
    }

    /// `floors: [lowest, highest]`.
    pub fn floor_range(&self) -> Option<(i16, i16)> {
        floor_range(&self.params)
    }
}

/// `floors: [lowest, highest]` of an equipment's registry `params`, for
/// readers that keep the params apart from a [`DeviceContext`].
pub fn floor_range(params: &Map<String, Value>) -> Option<(i16, i16)> {
    let range = params.get("floors")?.as_array()?;
    let lo = i16::try_from(range.first()?.as_i64()?).ok()?;
    let hi = i16::try_from(range.get(1)?.as_i64()?).ok()?;
    (lo <= hi).then_some((lo, hi))
}

/// The registry's answer for a device id.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Unknown,
    Disabled,
    Active(Arc<DeviceContext>),
}

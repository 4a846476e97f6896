//! Equipment categories (registry.md), written once: the registry checks
//! equipment against them, rules check category overrides against them,
//! and a device's binding carries one (or `filling_station`).

use crate::reading::Stream;

word_enum!(
    /// Equipment category; the binding's `category` for equipment.
    Category {
        Elevator = "elevator",
        Escalator = "escalator",
        AmusementRide = "amusement_ride",
        PassengerRopeway = "passenger_ropeway",
        Boiler = "boiler",
        PressureVessel = "pressure_vessel",
        PressurePiping = "pressure_piping",
        LiftingMachinery = "lifting_machinery",
        InPlantVehicle = "in_plant_vehicle",
    }
);

/// The binding category of a device bound to a filling station (filling
/// scales are bound to stations, not equipment).
pub const FILLING_STATION_CATEGORY: &str = "filling_station";

/// Every category a binding can carry: the equipment categories, then
/// [`FILLING_STATION_CATEGORY`].
pub const BINDING_CATEGORIES: [&str; Category::WORDS.len() + 1] = {
    let mut out = [FILLING_STATION_CATEGORY; Category::WORDS.len() + 1];
    let mut i = 0;
    while i < Category::WORDS.len() {
        out[i] = Category::WORDS[i];
        i += 1;
    }
    out
};

impl Category {
    /// Rides carry passengers on a ride cycle (ride rules apply).
    pub const RIDES: [Category; 2] = [Category::AmusementRide, Category::PassengerRopeway];

    /// The stream a unit of this category reports its samples on, if Vigil
    /// watches it yet: lifts on `elevator`, rides on `ride`.
    pub fn sample_stream(self) -> Option<Stream> {
        match self {
            Category::Elevator | Category::Escalator => Some(Stream::Elevator),
            c if Category::RIDES.contains(&c) => Some(Stream::Ride),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_categories_are_the_equipment_ones_and_filling_stations() {
        assert_eq!(BINDING_CATEGORIES.len(), 10);
        assert_eq!(BINDING_CATEGORIES[0], "elevator");
        assert_eq!(BINDING_CATEGORIES[9], "filling_station");
        for word in Category::WORDS {
            assert_eq!(Category::parse(word).map(Category::as_str), Some(*word));
        }
        assert_eq!(Category::parse("filling_station"), None);
    }
}

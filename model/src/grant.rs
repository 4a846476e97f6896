//! Who may see what: the one access rule behind REST, the SSE feed, the
//! MQTT alarm feed and SQL scoping. A grant is everything, some regions
//! (each with its sub-regions), or one owner's equipment. It borrows from
//! whoever holds the principal, so checking it costs nothing per row.

use crate::alarm::Alarm;
use crate::ids::{OwnerId, Region};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// Everything (the admin).
    All,
    /// These regions and their sub-regions (supervisors, analysts).
    Regions(&'a [Region]),
    /// One owner's equipment, wherever it is.
    Owner(&'a OwnerId),
}

impl<'a> Grant<'a> {
    /// Whether a region-scoped grant covers `region`. Owners are not
    /// region-scoped: always false for them (see [`Grant::sees`]).
    pub fn sees_region(&self, region: &Region) -> bool {
        match self {
            Grant::All => true,
            Grant::Regions(grants) => grants.iter().any(|g| g.covers(region)),
            Grant::Owner(_) => false,
        }
    }

    /// Whether this grant may read equipment of `owner` in `region` (and
    /// its devices, readings and alarms).
    pub fn sees(&self, owner: &OwnerId, region: &Region) -> bool {
        match self {
            Grant::Owner(o) => *o == owner,
            _ => self.sees_region(region),
        }
    }

    pub fn sees_alarm(&self, alarm: &Alarm) -> bool {
        self.sees(&alarm.owner_id, &alarm.region)
    }

    /// The regions a region-scoped reader is limited to (`None`: all).
    pub fn regions(&self) -> Option<&'a [Region]> {
        match self {
            Grant::Regions(r) => Some(r),
            _ => None,
        }
    }

    /// The owner an owner's grant is limited to.
    pub fn owner(&self) -> Option<&'a OwnerId> {
        match self {
            Grant::Owner(o) => Some(o),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_sub_regions_and_owners_see_only_their_own() {
        let (r703, r106) = (
            Region::new("440703").unwrap(),
            Region::new("440106").unwrap(),
        );
        let (own, other) = (OwnerId::new("O1").unwrap(), OwnerId::new("O2").unwrap());
        let cities = [Region::new("440700").unwrap()];
        let city = Grant::Regions(&cities);
        assert!(city.sees(&other, &r703) && !city.sees(&own, &r106));
        let owner = Grant::Owner(&own);
        assert!(owner.sees(&own, &r106) && !owner.sees(&other, &r703));
        assert!(!owner.sees_region(&r703));
        assert!(Grant::All.sees(&other, &r106));
    }
}

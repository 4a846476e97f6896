//! What the registry says of a filling record's cylinder and operator, for
//! the filling rules (which do no lookups of their own). Dates become the
//! start of their day in the registry's local time, as for the
//! registry-time rules.

use chrono::{FixedOffset, Months, NaiveDate};
use vigil_model::reading::FillingRecord;
use vigil_registry::{CylinderStatus, Registry};
use vigil_rules::{CertificateFacts, CylinderFacts, FillingFacts, OperatorFacts};

use crate::schedule::day_start;

pub(crate) fn facts(
    registry: &Registry,
    record: &FillingRecord,
    offset: FixedOffset,
) -> FillingFacts {
    let cylinder = registry.cylinder(&record.cylinder_code).map(|c| {
        let end_of_life = end_of_life(c.made_on, c.design_life_years);
        CylinderFacts {
            station_id: c.station_id.as_str().to_owned(),
            model: c.model,
            max_fill_kg: Some(c.max_fill_kg),
            working_pressure_mpa: c.working_pressure_mpa,
            next_inspection: day_start(c.next_inspection, offset),
            next_inspection_date: c.next_inspection.to_string(),
            scrapped: c.status == CylinderStatus::Scrapped,
            end_of_life: day_start(end_of_life, offset),
            end_of_life_date: end_of_life.to_string(),
        }
    });
    let operator = registry.person(&record.operator_id).map(|p| OperatorFacts {
        certificates: p
            .certificates
            .into_iter()
            .map(|c| CertificateFacts {
                expires: day_start(c.expires, offset),
                expires_date: c.expires.to_string(),
                kind: c.kind,
                number: c.number,
            })
            .collect(),
    });
    FillingFacts { cylinder, operator }
}

/// The day a cylinder's design life is complete: its anniversary after
/// `years` (29 February falls back to 28 February).
fn end_of_life(made_on: NaiveDate, years: u32) -> NaiveDate {
    made_on
        .checked_add_months(Months::new(years.saturating_mul(12)))
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_life_ends_on_the_anniversary() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(end_of_life(d(2010, 5, 1), 8), d(2018, 5, 1));
        assert_eq!(end_of_life(d(2012, 2, 29), 1), d(2013, 2, 28));
    }
}

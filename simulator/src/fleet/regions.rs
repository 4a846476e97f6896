//! Where a fleet's equipment stands: the counties of the configured region.
//!
//! A few Guangdong cities are known by name and centre (so addresses and
//! map positions look right in the demo); any other valid code gets
//! plausible county codes under it and no coordinates.

use vigil_model::Region;

/// One county (or district) that equipment can stand in.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub code: String,
    /// `江门市` for a known county, empty otherwise.
    pub city: &'static str,
    /// `江门市蓬江区` for a known county, empty otherwise.
    pub name: String,
    /// Latitude and longitude of the city centre, when known.
    pub centre: Option<(f64, f64)>,
}

struct City {
    code: &'static str,
    name: &'static str,
    centre: (f64, f64),
    counties: &'static [(&'static str, &'static str)],
}

const CITIES: &[City] = &[
    City {
        code: "440100",
        name: "广州市",
        centre: (23.129, 113.264),
        counties: &[
            ("440103", "荔湾区"),
            ("440104", "越秀区"),
            ("440105", "海珠区"),
            ("440106", "天河区"),
            ("440111", "白云区"),
            ("440112", "黄埔区"),
            ("440113", "番禺区"),
            ("440114", "花都区"),
            ("440115", "南沙区"),
            ("440117", "从化区"),
            ("440118", "增城区"),
        ],
    },
    City {
        code: "440300",
        name: "深圳市",
        centre: (22.543, 114.058),
        counties: &[
            ("440303", "罗湖区"),
            ("440304", "福田区"),
            ("440305", "南山区"),
            ("440306", "宝安区"),
            ("440307", "龙岗区"),
            ("440308", "盐田区"),
            ("440309", "龙华区"),
            ("440310", "坪山区"),
            ("440311", "光明区"),
        ],
    },
    City {
        code: "440700",
        name: "江门市",
        centre: (22.579, 113.081),
        counties: &[
            ("440703", "蓬江区"),
            ("440704", "江海区"),
            ("440705", "新会区"),
            ("440781", "台山市"),
            ("440783", "开平市"),
            ("440784", "鹤山市"),
            ("440785", "恩平市"),
        ],
    },
];

fn known(city: &City) -> impl Iterator<Item = Place> + '_ {
    city.counties.iter().map(|(code, name)| Place {
        code: (*code).to_owned(),
        city: city.name,
        name: format!("{}{}", city.name, name),
        centre: Some(city.centre),
    })
}

fn unnamed(code: String) -> Place {
    Place {
        code,
        city: "",
        name: String::new(),
        centre: None,
    }
}

/// The counties under `region`: itself for a county, its districts for a
/// city, a few districts of a few cities for a province. Never empty.
pub(super) fn counties(region: &Region) -> Vec<Place> {
    let code = region.as_str();
    if code.ends_with("0000") {
        let in_province: Vec<Place> = CITIES
            .iter()
            .filter(|c| c.code.starts_with(&code[..2]))
            .flat_map(known)
            .collect();
        if !in_province.is_empty() {
            return in_province;
        }
        let p = &code[..2];
        return ["0102", "0103", "0104", "0202", "0203"]
            .iter()
            .map(|s| unnamed(format!("{p}{s}")))
            .collect();
    }
    if code.ends_with("00") {
        if let Some(city) = CITIES.iter().find(|c| c.code == code) {
            return known(city).collect();
        }
        return (2..=6)
            .map(|n| unnamed(format!("{}{n:02}", &code[..4])))
            .collect();
    }
    CITIES
        .iter()
        .flat_map(known)
        .find(|p| p.code == code)
        .map_or_else(|| vec![unnamed(code.to_owned())], |p| vec![p])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(region: &str) -> Vec<String> {
        counties(&Region::new(region).unwrap())
            .into_iter()
            .map(|p| p.code)
            .collect()
    }

    #[test]
    fn every_county_lies_inside_the_region() {
        for region in ["440700", "440000", "440703", "510100", "510000", "510104"] {
            let r = Region::new(region).unwrap();
            let list = codes(region);
            assert!(!list.is_empty(), "{region}");
            for c in list {
                let county = Region::new(&c).unwrap();
                assert!(r.covers(&county), "{region} does not cover {c}");
                assert!(!c.ends_with("00"), "{c} is not a county code");
            }
        }
        assert_eq!(codes("440700").len(), 7);
        assert_eq!(codes("440703"), vec!["440703"]);
    }
}

//! Unified social credit codes (统一社会信用代码, GB 32100-2015), with both
//! check characters right, so a registry that validates them accepts ours.

use rand::Rng;

/// The code's alphabet: digits and capitals without I, O, Z, S, V.
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weight of position i is 3^i mod 31.
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
/// The embedded organisation code (GB 11714) has its own mod-11 check.
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// An 18-character code for an enterprise (`9` industry and commerce, `1`
/// company) registered in `county` (6 digits).
pub(super) fn enterprise_code(rng: &mut impl Rng, county: &str) -> String {
    let mut code = String::with_capacity(18);
    code.push_str("91");
    code.push_str(county);
    let org: String = (0..8)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    code.push_str(&org);
    code.push(org_check(&org));
    code.push(check_char(&code));
    code
}

fn org_check(body: &str) -> char {
    let sum: u32 = body
        .bytes()
        .zip(ORG_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        c => char::from(b'0' + c as u8),
    }
}

/// The 18th character over the first 17.
fn check_char(first17: &str) -> char {
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u32 * w)
        .sum();
    char::from(ALPHABET[((31 - sum % 31) % 31) as usize])
}

/// Whether `code` is a well-formed code with a correct check character.
#[cfg(test)]
pub(crate) fn is_valid(code: &str) -> bool {
    code.len() == 18
        && code.bytes().all(|b| ALPHABET.contains(&b))
        && code[8..16].bytes().all(|b| b.is_ascii_digit())
        && code[16..17].starts_with(org_check(&code[8..16]))
        && code[17..].starts_with(check_char(&code[..17]))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn check_character_matches_the_standards_worked_example() {
        // The example code printed in GB 32100-2015.
        assert_eq!(check_char("91350100M000100Y4"), '3');
        assert_eq!(org_check("12345678"), '8');
    }

    #[test]
    fn generated_codes_are_valid() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let code = enterprise_code(&mut rng, "440703");
            assert!(is_valid(&code), "{code}");
            assert!(code.starts_with("91440703"));
        }
    }
}

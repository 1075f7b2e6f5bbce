//! The emulator's deterministic "database": a made-up company profile per name.

use serde::Serialize;
use serde_json::Value;

/// Deterministic answer the emulator gives for a company, so tests can compute expected output.
///
/// Rules (all derived from the *normalised* name: lowercased, trimmed, inner whitespace
/// collapsed to one space; `h` is its FNV-1a 64-bit hash, stable across Rust versions):
/// - `None` ("Not Enriched") when the normalised name is empty or contains `"unknown"`,
///   or when `h % 10 == 7` (unless the name contains one of the test markers `"fuzzy"` or
///   `"formula"`, which always enrich so those cases stay testable).
/// - Otherwise a company object:
///   - `ug_company_id` and `ls_id`: `"LS"` + 10 upper-case hex digits (low 40 bits of `h`);
///   - `name`: the input trimmed with whitespace collapsed, plus `" Inc."` unless its last word
///     already is a corporate suffix (Inc, LLC, Ltd, Corp, GmbH, PLC, ...). When the normalised
///     name contains `"formula"`, the name is a spreadsheet formula starting with `=`
///     (`=HYPERLINK("https://example.invalid","<name>")`) to exercise CSV-injection handling;
///   - `original_name`: the input verbatim;
///   - `website`: the given website lowercased without scheme, `www.` or trailing `/`; when
///     none (or blank) is given, `<slug>.com` where slug is the name's alphanumeric runs
///     joined by `-`;
///   - `phone` `"+1-555-dddd"`, `industry`/`sub_industry` from a 6-row table, `sic` (4 digits),
///     `naics` (6 digits), `linkedin_profile` `https://www.linkedin.com/company/<slug>`;
///   - `address {country, state, city, address, zipcode}` from a 6-row table;
///   - `employees {exact, range}` and `revenue_dollar {exact, range}` from the same size band,
///     `exact` always inside `range`;
///   - `matching_confidence.level`: `"VERY LOW"` if the name contains `"fuzzy"` or
///     `h % 10 == 5`; `"LOW"` if `h % 10 == 3`; `"MEDIUM"` if `h % 10 == 1`; else `"HIGH"`;
///   - fields clients must merely tolerate: `description`, `family_tree {companies: [{type:
///     "GU", name, ls_id}]}`, `signals {fortune_500_rank: null}`, `specialties [..]`.
pub fn firmographics_for(name: &str, website: Option<&str>) -> Option<Value> {
    // Serialising these plain structs cannot fail.
    profile_for(name, website).and_then(|profile| serde_json::to_value(profile).ok())
}

/// The profile behind `firmographics_for`, as a typed struct: the bulk endpoint serialises
/// hundreds of thousands of them, and building a `Value` tree first cost more than the rest of
/// the emulator together. Field order is the order of the documented object.
#[derive(Serialize)]
pub(crate) struct Profile<'a> {
    ug_company_id: String,
    ls_id: String,
    name: String,
    original_name: &'a str,
    description: String,
    website: String,
    phone: String,
    industry: &'static str,
    sub_industry: &'static str,
    sic: String,
    naics: String,
    linkedin_profile: String,
    address: Address,
    employees: Measure,
    revenue_dollar: Measure,
    matching_confidence: Confidence,
    family_tree: FamilyTree,
    signals: Signals,
    specialties: [&'static str; 2],
}

#[derive(Serialize)]
struct Address {
    country: &'static str,
    state: &'static str,
    city: &'static str,
    address: &'static str,
    zipcode: &'static str,
}

#[derive(Serialize)]
struct Measure {
    exact: u64,
    range: &'static str,
}

#[derive(Serialize)]
struct Confidence {
    level: &'static str,
}

#[derive(Serialize)]
struct FamilyTree {
    companies: [FamilyMember; 1],
}

#[derive(Serialize)]
struct FamilyMember {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    ls_id: String,
}

#[derive(Serialize)]
struct Signals {
    fortune_500_rank: Option<u32>,
}

/// `firmographics_for` without the `Value`: `None` when the company is "Not Enriched".
pub(crate) fn profile_for<'a>(name: &'a str, website: Option<&str>) -> Option<Profile<'a>> {
    let norm = normalise(name);
    let h = fnv1a64(norm.as_bytes());
    let marker = norm.contains("fuzzy") || norm.contains("formula");
    if norm.is_empty() || norm.contains("unknown") || (h % 10 == 7 && !marker) {
        return None;
    }

    let id = format!("LS{:010X}", h & 0xFF_FFFF_FFFF);
    let display = collapse(name);
    let slug = slug(&display);
    let mut legal_name = if has_corporate_suffix(&display) { display.clone() } else { format!("{display} Inc.") };
    if norm.contains("formula") {
        legal_name = format!("=HYPERLINK(\"https://example.invalid\",\"{legal_name}\")");
    }
    let website = match website.map(clean_website) {
        Some(w) if !w.is_empty() => w,
        _ => format!("{slug}.com"),
    };
    let (industry, sub_industry) = INDUSTRIES[pick(h, 16, INDUSTRIES.len())];
    let (country, state, city, street, zipcode) = LOCATIONS[pick(h, 28, LOCATIONS.len())];
    let band = pick(h, 32, SIZE_BANDS.len());
    let (emp_lo, emp_hi, emp_range, rev_lo, rev_hi, rev_range) = SIZE_BANDS[band];
    let employees = emp_lo + (h >> 36) % (emp_hi - emp_lo + 1);
    let revenue = rev_lo + (h >> 40) % (rev_hi - rev_lo + 1);
    let level = if norm.contains("fuzzy") {
        "VERY LOW"
    } else {
        match h % 10 {
            5 => "VERY LOW",
            3 => "LOW",
            1 => "MEDIUM",
            _ => "HIGH",
        }
    };

    Some(Profile {
        ug_company_id: id.clone(),
        ls_id: id.clone(),
        family_tree: FamilyTree { companies: [FamilyMember { kind: "GU", name: legal_name.clone(), ls_id: id }] },
        name: legal_name,
        original_name: name,
        description: format!("{display} is a {industry} company headquartered in {city}."),
        website,
        phone: format!("+1-555-{:04}", (h >> 8) % 10_000),
        industry,
        sub_industry,
        sic: format!("{:04}", 1000 + (h >> 20) % 9000),
        naics: format!("{:06}", 100_000 + (h >> 24) % 900_000),
        linkedin_profile: format!("https://www.linkedin.com/company/{slug}"),
        address: Address { country, state, city, address: street, zipcode },
        employees: Measure { exact: employees, range: emp_range },
        revenue_dollar: Measure { exact: revenue, range: rev_range },
        matching_confidence: Confidence { level },
        signals: Signals { fortune_500_rank: None },
        specialties: [sub_industry, "B2B"],
    })
}

/// FNV-1a, 64 bit: tiny, and unlike `DefaultHasher` guaranteed stable forever.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn normalise(name: &str) -> String {
    collapse(name).to_lowercase()
}

/// Trims and collapses inner whitespace runs to one space.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Alphanumeric runs of the lowercased name joined by `-` ("company" if there are none).
fn slug(name: &str) -> String {
    let lower = name.to_lowercase();
    let parts: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() { "company".to_owned() } else { parts.join("-") }
}

fn has_corporate_suffix(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "inc",
        "llc",
        "ltd",
        "limited",
        "corp",
        "corporation",
        "co",
        "company",
        "gmbh",
        "plc",
        "ag",
        "sa",
        "bv",
        "nv",
        "srl",
        "pty",
        "lp",
        "llp",
    ];
    name.rsplit(' ')
        .next()
        .map(|w| w.trim_end_matches(['.', ',']).to_lowercase())
        .is_some_and(|w| SUFFIXES.contains(&w.as_str()))
}

fn clean_website(w: &str) -> String {
    let w = w.trim().to_lowercase();
    let w = w.strip_prefix("https://").or_else(|| w.strip_prefix("http://")).unwrap_or(&w);
    let w = w.strip_prefix("www.").unwrap_or(w);
    w.trim_end_matches('/').to_owned()
}

/// Picks a table row from a slice of the hash's bits, so different fields vary independently.
fn pick(h: u64, shift: u32, len: usize) -> usize {
    // `len` is a small table length, so the casts cannot truncate.
    ((h >> shift) % len as u64) as usize
}

const INDUSTRIES: &[(&str, &str)] = &[
    ("Software", "Enterprise Software"),
    ("Manufacturing", "Industrial Machinery"),
    ("Financial Services", "Banking"),
    ("Healthcare", "Medical Devices"),
    ("Retail", "E-commerce"),
    ("Telecommunications", "Wireless Carriers"),
];

/// (country, state, city, street address, zipcode)
const LOCATIONS: &[(&str, &str, &str, &str, &str)] = &[
    ("US", "CA", "San Francisco", "1 Market St", "94105"),
    ("US", "NY", "New York", "350 5th Ave", "10118"),
    ("US", "TX", "Austin", "500 W 2nd St", "78701"),
    ("US", "WA", "Seattle", "400 Broad St", "98109"),
    ("GB", "England", "London", "1 Canada Square", "E14 5AB"),
    ("DE", "Berlin", "Berlin", "Alexanderplatz 1", "10178"),
];

/// (employees min, max, range label, revenue min, max, range label); one band drives both so
/// the two stay plausible together.
const SIZE_BANDS: &[(u64, u64, &str, u64, u64, &str)] = &[
    (1, 10, "1-10", 50_000, 999_999, "$0-$1M"),
    (11, 50, "11-50", 1_000_000, 9_999_999, "$1M-$10M"),
    (51, 200, "51-200", 10_000_000, 49_999_999, "$10M-$50M"),
    (201, 500, "201-500", 50_000_000, 99_999_999, "$50M-$100M"),
    (501, 1000, "501-1000", 100_000_000, 499_999_999, "$100M-$500M"),
    (1001, 5000, "1001-5000", 500_000_000, 999_999_999, "$500M-$1B"),
    (5001, 10_000, "5001-10000", 1_000_000_000, 9_999_999_999, "$1B+"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn deterministic_and_normalised() {
        let a = firmographics_for("Acme Widgets", None);
        assert_eq!(a, firmographics_for("Acme Widgets", None));
        // Same normalised name, same profile apart from the verbatim original_name.
        let mut b = firmographics_for("  ACME   widgets ", None);
        if let (Some(a), Some(b)) = (&a, &mut b) {
            assert_eq!(a["ug_company_id"], b["ug_company_id"]);
            assert_eq!(b["original_name"], "  ACME   widgets ");
        } else {
            assert_eq!(a.is_some(), b.is_some());
        }
    }

    #[test]
    fn unknown_and_blank_are_not_enriched() {
        assert_eq!(firmographics_for("Totally Unknown LLC", None), None);
        assert_eq!(firmographics_for("   ", None), None);
    }

    #[test]
    fn hash_rule_decides_enrichment_and_confidence() {
        for i in 0..200 {
            let name = format!("Company {i}");
            let h = fnv1a64(normalise(&name).as_bytes());
            let got = firmographics_for(&name, None);
            if h % 10 == 7 {
                assert!(got.is_none(), "{name}");
                continue;
            }
            let c = got.unwrap_or_default();
            let want = match h % 10 {
                5 => "VERY LOW",
                3 => "LOW",
                1 => "MEDIUM",
                _ => "HIGH",
            };
            assert_eq!(c["matching_confidence"]["level"], want, "{name}");
            let id = c["ug_company_id"].as_str().unwrap_or_default();
            assert_eq!(id.len(), 12);
            assert_eq!(c["ls_id"], c["ug_company_id"]);
            // employees.exact lies inside employees.range
            let range = c["employees"]["range"].as_str().unwrap_or_default();
            let (lo, hi) = range.split_once('-').unwrap_or_default();
            let exact = c["employees"]["exact"].as_u64().unwrap_or_default();
            assert!(lo.parse::<u64>().is_ok_and(|lo| lo <= exact), "{range} {exact}");
            assert!(hi.parse::<u64>().is_ok_and(|hi| exact <= hi), "{range} {exact}");
            assert_eq!(c["sic"].as_str().map(str::len), Some(4));
            assert_eq!(c["naics"].as_str().map(str::len), Some(6));
        }
    }

    #[test]
    fn markers_fuzzy_and_formula() {
        for i in 0..20 {
            let fuzzy = firmographics_for(&format!("Fuzzy Match {i}"), None);
            let fuzzy = fuzzy.unwrap_or_default();
            assert_eq!(fuzzy["matching_confidence"]["level"], "VERY LOW");
            let formula = firmographics_for(&format!("Formula Labs {i}"), None);
            let name = formula.unwrap_or_default()["name"].as_str().map(str::to_owned);
            assert!(name.is_some_and(|n| n.starts_with('=')));
        }
    }

    #[test]
    fn names_websites_and_slugs() {
        let c = firmographics_for("Acme  Widgets", Some("HTTPS://www.Acme.com/")).expect("Acme Widgets is enriched");
        assert_eq!(c["name"], "Acme Widgets Inc.");
        assert_eq!(c["website"], "acme.com");
        assert_eq!(c["linkedin_profile"], "https://www.linkedin.com/company/acme-widgets");
        assert_eq!(clean_website("http://example.org//"), "example.org");
        assert_eq!(slug("O'Reilly & Sons"), "o-reilly-sons");
        assert!(has_corporate_suffix("Contoso Ltd."));
        assert!(has_corporate_suffix("Initech, LLC"));
        assert!(!has_corporate_suffix("Globex"));
    }
}

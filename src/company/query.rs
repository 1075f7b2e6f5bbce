//! A company as Leadspace is asked about it: the mapped fields of a row, cleaned, and the match
//! key that makes two rows the same question (so that each company is paid for once).

use std::borrow::Cow;

use crate::leadspace::model::{AddressInput, CompanyInput, EnrichRequest};

/// Separate and mark the fields of a packed query: control characters, which `clean` removes
/// from every value.
const PACK_SEPARATOR: char = '\u{1f}';
const PACK_PRESENT: char = '\u{1e}';

/// What is sent to Leadspace for one company: the mapped fields, cleaned, and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyQuery {
    pub name: String,
    pub website: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
    pub city: Option<String>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
}

impl CompanyQuery {
    /// Empties every field but keeps the buffers (an optional field is left `Some("")`):
    /// `ResolvedMapping::query_into` refills them, then calls `drop_empty`.
    pub fn clear(&mut self) {
        self.name.clear();
        for value in self.optional_fields().into_iter().flatten() {
            value.clear();
        }
    }

    /// Every optional field that is `Some("")` becomes `None`.
    pub fn drop_empty(&mut self) {
        for field in self.optional_fields() {
            if field.as_deref() == Some("") {
                *field = None;
            }
        }
    }

    fn optional_fields(&mut self) -> [&mut Option<String>; 6] {
        [&mut self.website, &mut self.country, &mut self.state, &mut self.city, &mut self.street, &mut self.postal_code]
    }

    /// Two rows with the same key are the same question to Leadspace and are sent once.
    /// Case and whitespace never change the answer; a website's scheme, `www.` and path don't
    /// either.
    pub fn key(&self) -> String {
        let mut bytes = Vec::with_capacity(self.name.len() + 16);
        self.feed_key(&mut |chunk: &[u8]| bytes.extend_from_slice(chunk));
        // The chunks are whole characters of valid text, so this never replaces anything.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The bytes of `key()`, lower-cased as they go through a stack buffer, so that hashing a
    /// key (once per row, in pass 1) builds no `String`.
    fn feed_key(&self, feed: &mut impl FnMut(&[u8])) {
        let website = self.website.as_deref().map(website_host);
        let parts = [
            Some(self.name.as_str()),
            website.as_deref(),
            self.country.as_deref(),
            self.state.as_deref(),
            self.city.as_deref(),
            self.street.as_deref(),
            self.postal_code.as_deref(),
        ];
        let mut buffer = LowercaseBuffer::default();
        for part in parts {
            buffer.push_lowercase(part.unwrap_or(""), feed);
            buffer.push_char('\u{1f}', feed);
        }
        buffer.flush(feed);
    }

    /// A 128-bit digest of `key()` (SipHash-1-3 with a 128-bit output, one pass). Two distinct
    /// companies in one file share it with a probability near 2^-128 times the pairs. It names
    /// a company in the answer journal, in the answers kept for the next version of a file, and
    /// in the external_id sent to Leadspace: changing it changes `journal::FORMAT`, so that
    /// older records are ignored rather than misread.
    ///
    /// The bytes hashed are exactly those of `key()`, fed without building it.
    pub fn key_digest(&self) -> u128 {
        use siphasher::sip128::{Hasher128, SipHasher13};
        use std::hash::Hasher;
        let mut hasher = SipHasher13::new_with_keys(1, 2);
        self.feed_key(&mut |bytes: &[u8]| hasher.write(bytes));
        hasher.finish128().as_u128()
    }

    /// Appends the query to `packed` as one string, fields separated by U+001F (which `clean`
    /// never leaves in a value); `unpack` reads it back.
    pub fn pack_into(&self, packed: &mut String) {
        let fields = [
            Some(self.name.as_str()),
            self.website.as_deref(),
            self.country.as_deref(),
            self.state.as_deref(),
            self.city.as_deref(),
            self.street.as_deref(),
            self.postal_code.as_deref(),
        ];
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                packed.push(PACK_SEPARATOR);
            }
            if let Some(value) = field {
                packed.push(PACK_PRESENT);
                packed.push_str(value);
            }
        }
    }

    pub fn unpack(packed: &str) -> CompanyQuery {
        let mut fields = packed.split(PACK_SEPARATOR).map(|f| f.strip_prefix(PACK_PRESENT).map(str::to_string));
        let mut next = || fields.next().flatten();
        CompanyQuery {
            name: next().unwrap_or_default(),
            website: next(),
            country: next(),
            state: next(),
            city: next(),
            street: next(),
            postal_code: next(),
        }
    }

    pub fn to_request(&self, external_id: String) -> EnrichRequest {
        let address = AddressInput {
            country: self.country.clone(),
            state: self.state.clone(),
            city: self.city.clone(),
            street: self.street.clone(),
            postalcode: self.postal_code.clone(),
        };
        let address = (address != AddressInput::default()).then_some(address);
        EnrichRequest {
            external_id,
            company: CompanyInput { name: self.name.clone(), website: self.website.clone(), address },
        }
    }
}

/// Bytes on their way to a hasher, lower-cased as `char::to_lowercase` does.
struct LowercaseBuffer {
    bytes: [u8; 256],
    len: usize,
}

impl Default for LowercaseBuffer {
    fn default() -> Self {
        LowercaseBuffer { bytes: [0; 256], len: 0 }
    }
}

impl LowercaseBuffer {
    fn push_lowercase(&mut self, text: &str, feed: &mut impl FnMut(&[u8])) {
        if text.is_ascii() {
            // Copied a buffer's worth at a time and lower-cased in place: byte by byte cost
            // pass 1 a bounds check and a branch for every byte of every key.
            let mut rest = text.as_bytes();
            while !rest.is_empty() {
                if self.len == self.bytes.len() {
                    self.flush(feed);
                }
                let take = rest.len().min(self.bytes.len() - self.len);
                let room = &mut self.bytes[self.len..self.len + take];
                room.copy_from_slice(&rest[..take]);
                room.make_ascii_lowercase();
                self.len += take;
                rest = &rest[take..];
            }
        } else {
            for c in text.chars().flat_map(char::to_lowercase) {
                self.push_char(c, feed);
            }
        }
    }

    fn push_char(&mut self, c: char, feed: &mut impl FnMut(&[u8])) {
        if self.len + c.len_utf8() > self.bytes.len() {
            self.flush(feed);
        }
        self.len += c.encode_utf8(&mut self.bytes[self.len..]).len();
    }

    fn flush(&mut self, feed: &mut impl FnMut(&[u8])) {
        feed(&self.bytes[..self.len]);
        self.len = 0;
    }
}

/// `website_key` without its allocations for ASCII websites (nearly all of them): the host,
/// not yet lower-cased, which the key does next. Lower-casing ASCII moves no separator and
/// `www.` is matched in any case, so the result lower-cases to `website_key`'s.
fn website_host(website: &str) -> Cow<'_, str> {
    if !website.is_ascii() {
        return Cow::Owned(website_key(website));
    }
    let trimmed = website.trim();
    // `split_once("://")` and `split(['/', '?', '#'])`, found with memchr: pattern searchers
    // set up for every row cost pass 1 more than hashing the key.
    let bytes = trimmed.as_bytes();
    let scheme_end = memchr::memchr_iter(b':', bytes).find(|&colon| bytes[colon + 1..].starts_with(b"//"));
    let without_scheme = scheme_end.map_or(trimmed, |colon| &trimmed[colon + 3..]);
    let host_end = memchr::memchr3(b'/', b'?', b'#', without_scheme.as_bytes()).unwrap_or(without_scheme.len());
    let host = &without_scheme[..host_end];
    match host.get(..4) {
        Some(www) if www.eq_ignore_ascii_case("www.") => Cow::Borrowed(&host[4..]),
        _ => Cow::Borrowed(host),
    }
}

fn website_key(website: &str) -> String {
    let lower = website.trim().to_lowercase();
    let without_scheme = lower.split_once("://").map_or(lower.as_str(), |(_, rest)| rest);
    let host = without_scheme.split(['/', '?', '#']).next().unwrap_or("");
    host.strip_prefix("www.").unwrap_or(host).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_hashes_exactly_the_key() {
        fn digest_of(key: &str) -> u128 {
            use siphasher::sip128::SipHasher13;
            SipHasher13::new_with_keys(1, 2).hash(key.as_bytes()).as_u128()
        }
        let long = "Ünïcödé Straße ".repeat(40);
        let websites = [
            None,
            Some("HTTPS://WWW.Contoso.COM/About?x#y"),
            Some("  www.fabrikam.com "),
            Some("Www.x.org"),
            Some("wwwx.org"),
            Some("ftp://WWW.ÉCOLE.fr/path"),
            Some("\u{212A}elvin.example"),
            Some(""),
        ];
        for website in websites {
            for name in ["Contoso", "İstanbul Çay A.Ş.", long.as_str(), "ΣΊΣΥΦΟΣ"] {
                let query = CompanyQuery {
                    name: name.into(),
                    website: website.map(str::to_string),
                    country: Some("DE".into()),
                    city: Some("München".into()),
                    ..Default::default()
                };
                assert_eq!(query.key_digest(), digest_of(&query.key()), "{name:?} {website:?}");
            }
        }
    }

    proptest::proptest! {
        /// The host found without allocating is the one the key takes, whatever the scheme,
        /// path, port or spacing around it.
        #[test]
        fn a_websites_host_is_found_as_the_key_finds_it(
            website in "[ ]?(https?|ftp|HTTP)?[:]{0,2}[/]{0,3}([wW]{3}[.])?[a-cW:./?#]{0,12}[ ]?",
        ) {
            proptest::prop_assert_eq!(website_host(&website).to_lowercase(), website_key(&website));
        }
    }
}
